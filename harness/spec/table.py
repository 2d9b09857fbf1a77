"""Typed access to one table of a spec, so every error names its file and field.

A `Table` wraps a dict read from TOML/JSON with the path that leads to it
(`layers[2]`, `optimizer`, ...). Each accessor checks type and range, records
which keys the user wrote, and `finish()` refuses keys nobody asked for.
"""
import math

from ..errors import InputError
from .precision import hyperparameter_problem


def _type_name(value):
    """In the spec's own words: a JSON spec's `null` is no Python NoneType to its author."""
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a table", type(None): "null"}.get(type(value),
                                                                     type(value).__name__)


class Table:
    def __init__(self, file, path, data):
        if not isinstance(data, dict):
            raise InputError(file, path or None, f"must be a table, got {_type_name(data)}")
        self.file, self.path, self.data = file, path, data
        self.used = set()

    def field(self, key):
        return f"{self.path}.{key}" if self.path else key

    def error(self, key, message):
        return InputError(self.file, self.field(key), message)

    def has(self, key):
        return key in self.data

    def explicit(self):
        """Keys the user wrote (the rest took the spec's documented defaults)."""
        return sorted(k for k in self.data if k in self.used)

    def raw(self, key, default=None, required=False):
        self.used.add(key)
        if key not in self.data:
            if required:
                raise self.error(key, "is required")
            return default
        return self.data[key]

    def str(self, key, default=None, required=False, choices=None):
        value = self.raw(key, default, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {_type_name(value)}")
        if choices is not None and value not in choices:
            raise self.error(key, f"unknown value {value!r}; expected one of: {', '.join(choices)}")
        return value

    def bool(self, key, default=None):
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {_type_name(value)}")
        return value

    def int(self, key, default=None, required=False, min=None, max=None):
        value = self.raw(key, default, required)
        if value is None:
            return None
        return check_int(value, min, lambda m: self.error(key, m), max)

    def float(self, key, default=None, required=False, min=None, max=None, below=None,
              above=None, held=None):
        """A number within the bounds; `held`: the dtype the frameworks compute with it in,
        which must hold it as a normal number or 0 (precision.hyperparameter_problem)."""
        value = self.raw(key, default, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"must be a number, got {_type_name(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise self.error(key, f"must be a finite number, got {value}")
        for bound, ok, word in ((min, lambda b: value >= b, ">="), (max, lambda b: value <= b, "<="),
                                (above, lambda b: value > b, ">"), (below, lambda b: value < b, "<")):
            if bound is not None and not ok(bound):
                raise self.error(key, f"must be {word} {bound}, got {value}")
        problem = held and hyperparameter_problem(value, held)
        if problem:
            raise self.error(key, problem)
        return value

    def ints(self, key, length=None, default=None, required=False, min=1, max=None):
        """An integer or a list of integers; a single integer is repeated to `length`."""
        value = self.raw(key, default, required)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and length:
            value = [value] * length
        if not isinstance(value, list) or (length and len(value) != length):
            shape = f"a list of {length} integers" if length else "a list of integers"
            raise self.error(key, f"must be {shape}, got {value!r}")
        return [check_int(v, min, lambda m, i=i: self.error(f"{key}[{i}]", m), max)
                for i, v in enumerate(value)]

    def table(self, key, required=False):
        value = self.raw(key, None, required)
        return None if value is None else Table(self.file, self.field(key), value)

    def tables(self, key, required=False):
        value = self.raw(key, None, required)
        if value is None:
            return []
        if not isinstance(value, list) or not value:
            raise self.error(key, "must be a non-empty list of tables")
        return [Table(self.file, f"{self.field(key)}[{i}]", v) for i, v in enumerate(value)]

    def finish(self):
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.error(unknown[0], "unknown key")


def check_int(value, min, make_error, max=None):
    if isinstance(value, bool) or not isinstance(value, int):
        raise make_error(f"must be an integer, got {_type_name(value)}")
    if min is not None and value < min:
        word = "positive" if min == 1 else f">= {min}"
        raise make_error(f"must be {word}, got {value}")
    if max is not None and value > max:
        raise make_error(f"must be at most {max:,}, got {value:,}")
    return value
