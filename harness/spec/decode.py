"""A spec file's bytes -> the plain dict they hold: UTF-8 text, then TOML or JSON.

Everything the decoders would accept silently, or fail on with a traceback, is one line
naming the file and where: a byte that is not UTF-8 (by its offset), a syntax error (by
line and column, also at the end of the file), a key given twice in a JSON object (JSON
keeps the last; TOML refuses it itself), a JSON `null` (TOML has none), an integer longer
than Python reads (4300 digits: a ValueError from inside the decoder), tables and lists
nested too deep.
"""
import json
import re
import sys
import tomllib

from ..errors import InputError
from .limits import NESTING


def decode_spec(data, path):
    """The spec file `path`'s bytes -> its top-level value (a dict, unless the file is bad)."""
    text = _utf8(data, path)
    if not text.strip():
        raise InputError(path, None, "the file is empty")
    is_json = path.suffix == ".json" or (path.suffix != ".toml" and text.lstrip().startswith("{"))
    raw = _json(text, path) if is_json else _toml(text, path)
    _check_nesting(raw, path)
    return raw


def _utf8(data, path):
    """Strict: a byte read as U+FFFD would make a key or a name silently another one. A byte
    order mark in front (Notepad saves UTF-8 with one) is no part of the spec: dropped."""
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise InputError(path, f"byte {err.start} (line {line})",
                         f"not UTF-8 ({err.reason}, byte 0x{data[err.start]:02x}); save the "
                         f"spec as UTF-8") from None


# ---- JSON ----------------------------------------------------------------------------------------

class _Marked(dict):
    """A JSON object that names a key twice, kept until the walk finds where it is."""
    repeated = None


class _LongInt:
    """An integer literal longer than Python reads, kept until the walk finds its field."""

    def __init__(self, digits):
        self.digits = digits


class _Marks:
    """json.loads hooks that mark what must be refused rather than raise: the decoder
    knows no field, the walk after it does."""

    def __init__(self):
        self.found = False

    def pairs(self, items):
        obj = dict(items)
        if len(obj) < len(items):
            obj, self.found = _Marked(obj), True
            obj.repeated = _first_repeated(k for k, _ in items)
        return obj

    def integer(self, literal):
        digits = len(literal.lstrip("-"))
        limit = sys.get_int_max_str_digits()  # 0: no limit
        if limit and digits > limit:
            self.found = True
            return _LongInt(digits)
        return int(literal)


def _first_repeated(keys):
    seen = set()
    for key in keys:
        if key in seen:
            return key
        seen.add(key)
    return None


def _json(text, path):
    marks = _Marks()
    try:
        raw = json.loads(text, object_pairs_hook=marks.pairs, parse_int=marks.integer)
    except RecursionError:
        raise _too_deep(path) from None
    except json.JSONDecodeError as err:
        raise InputError(path, f"line {err.lineno}, column {err.colno}",
                         f"JSON syntax error: {err.msg}") from None
    if marks.found:
        raise _marked_error(raw, path)
    _refuse_null(raw, path)
    return raw


def _refuse_null(raw, path):
    """A `null` inside a JSON spec: TOML has none, and the checks would take it for a key
    never written (its default, or a traceback further on). The whole document's null is
    left to the checks, which say it is no table."""
    for field, value in _fields(raw):
        if value is None and field:
            where = "leave the key out for its default, or give a value" \
                if not field.endswith("]") else "give a value"
            raise InputError(path, field, f"is null; {where}")


def _marked_error(raw, path):
    """The first marked value in the document's order, named by its field."""
    for field, value in _fields(raw):
        if isinstance(value, _Marked):
            key = f"{field}.{value.repeated}" if field else value.repeated
            return InputError(path, key, "is given twice in one object; JSON would keep the "
                                         "last silently: give it once")
        if isinstance(value, _LongInt):
            return _long_int_error(path, field, value.digits)
    return InputError(path, None, "holds a key given twice or an integer too long to read")


def _fields(raw):
    """(field, value) of every value in document order, fields named as Table names them
    (`layers[0].units`); iterative, as the nesting is checked only after decoding."""
    stack = [("", raw)]
    while stack:
        field, value = stack.pop()
        yield field, value
        if isinstance(value, dict):
            stack += reversed([(f"{field}.{k}" if field else str(k), v)
                               for k, v in value.items()])
        elif isinstance(value, list):
            stack += reversed([(f"{field}[{i}]", v) for i, v in enumerate(value)])


# ---- TOML ----------------------------------------------------------------------------------------

def _toml(text, path):
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise _too_deep(path) from None
    except tomllib.TOMLDecodeError as err:
        raise _toml_syntax(text, path, str(err)) from None
    except ValueError as err:  # int() inside tomllib: an integer longer than Python reads
        raise _toml_long_int(text, path, err) from None


def _toml_syntax(text, path, msg):
    """tomllib says `(at line L, column C)`, or `(at end of document)`: both as a place."""
    where = re.search(r"\(at (line \d+, column \d+)\)", msg)
    if where:
        where = where.group(1)
    elif msg.endswith("(at end of document)"):
        where = f"{_line_column(text, len(text))} (the end of the file)"
    msg = re.sub(r"\s*\(at .*\)$", "", msg)
    return InputError(path, where, f"TOML syntax error: {msg}")


def _toml_long_int(text, path, err):
    """Where the over-long integer is: its field, found by decoding the file with such
    literals replaced by marker strings one at a time (a run of digits inside a string
    breaks the syntax when replaced, and is left be), else its line and column."""
    limit = sys.get_int_max_str_digits()
    if not limit:  # no limit: the ValueError is something else, said as the decoder said it
        return InputError(path, None, f"cannot be read: {err}")
    literals = re.finditer(r"(?<![\w.+-])[+-]?\d(?:_?\d){%d,}(?![\w.])" % limit, text)
    kept = []
    for m in list(literals)[:LOCATE_TRIES]:
        try:
            raw = tomllib.loads(_with_markers(text, kept + [m]))
        except tomllib.TOMLDecodeError:
            continue  # inside a string: not the integer
        except (ValueError, RecursionError):
            kept.append(m)  # another one is still there
            continue
        kept.append(m)
        markers = {f"{MARKER}{i}": literal for i, literal in enumerate(kept)}
        for field, value in _fields(raw):
            if isinstance(value, str) and value in markers:
                literal = markers[value]
                return _long_int_error(path, field, _digits(literal),
                                       _line_column(text, literal.start()))
        break
    if not kept:  # not ours to explain: say what the decoder said
        return InputError(path, None, f"cannot be read: {err}")
    return _long_int_error(path, _line_column(text, kept[0].start()), _digits(kept[0]))


LOCATE_TRIES = 8  # decodes of the file at most, to find the field (1 MiB: a second or so)
MARKER = "crossgrad-long-integer-"


def _with_markers(text, literals):
    parts, end = [], 0
    for i, m in enumerate(literals):
        parts += [text[end:m.start()], f'"{MARKER}{i}"']
        end = m.end()
    return "".join(parts) + text[end:]


def _digits(literal):
    return sum(c.isdigit() for c in literal.group())


def _long_int_error(path, where, digits, place=None):
    at = f" (at {place})" if place else ""
    return InputError(path, where, f"is an integer of {digits:,} digits{at}; Python reads "
                                   f"integers of at most {sys.get_int_max_str_digits():,}")


def _line_column(text, offset):
    line = text.count("\n", 0, offset) + 1
    return f"line {line}, column {offset - (text.rfind(chr(10), 0, offset) + 1) + 1}"


# ---- nesting -------------------------------------------------------------------------------------

def _check_nesting(raw, path):
    """Tables and lists at most NESTING deep, measured without recursion."""
    stack = [(raw, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > NESTING:
            raise _too_deep(path)
        children = value.values() if isinstance(value, dict) else \
            value if isinstance(value, list) else ()
        stack += [(v, depth + 1) for v in children if isinstance(v, (dict, list))]


def _too_deep(path):
    return InputError(path, None, f"tables and lists nest deeper than {NESTING} levels")
