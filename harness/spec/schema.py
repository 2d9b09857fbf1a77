"""The JSON Schema of a spec, derived from the code that validates specs.

Every section parser (the layer catalog, data sources, loss, optimizers, train) reads
its keys through a `Table`; here each one is run once against a `Recorder`, a Table that
answers every question with a plausible value and writes the question down as a JSON
Schema property (type, bounds, choices, default, required). So the schema lists exactly
the keys the validation accepts, and a key added to a parser is in the next schema.
The published file, schemas/spec.schema.json, is this output
(`python -m crossgrad.harness.spec.schema > harness/spec/schemas/spec.schema.json`);
tests/test_schemas.py checks that it is current. Plugin layer types are open: any
other `type` is allowed, with any keys (the plugin's `keys` decide at load time).
"""
import json

from ..errors import InputError
from .catalog import PARSERS
from .data import SOURCES, parse_data
from .initializers import INITIALIZERS
from .imported import FRAMEWORKS as ORIGINAL_FRAMEWORKS, SHA256
from .parse import (ALL_DTYPES, LOSSES, NAME, OPTIMIZERS, TOP_KEYS, _parse_loss, _parse_optimizer,
                    _parse_train)
from .table import Table

DRAFT = "https://json-schema.org/draft/2020-12/schema"
INIT = {"$ref": "#/$defs/initializer"}
PADDING = {"$ref": "#/$defs/padding"}
# the parsers check a hyperparameter against the spec's dtype (Table.float's `held`): the
# schema is derived with one, and says what each dtype takes
SOME_DTYPE = "float64"
HELD = ("where positive, a normal number of the spec's dtype: float64 from 2.2e-308 to 1.8e308, "
        "float32 from 1.2e-38 to 3.4e38 (a positive value rounding to 0 or to a subnormal "
        "number, or beyond the range, is refused; bfloat16 and float16 are not checked)")


class Recorder(Table):
    """A Table that records each key asked for as a JSON Schema property."""

    def __init__(self, path, data=None):
        super().__init__("<schema>", path, dict(data or {}))
        self.properties, self.required = {}, []

    def ask(self, key, schema, default=None, required=False, value=None):
        self.used.add(key)
        if default is not None and not isinstance(default, dict):
            schema = dict(schema, default=default)
        self.properties.setdefault(key, schema)
        if required and key not in self.required:
            self.required.append(key)
        return self.data.get(key, default if default is not None else value)

    def raw(self, key, default=None, required=False):
        if key == "init" or key.endswith("_init") or key.startswith("init_"):
            schema = INIT
        elif key == "padding":
            schema = PADDING
        else:
            schema = {}
        return self.ask(key, schema, default, required)

    def str(self, key, default=None, required=False, choices=None):
        schema = {"type": "string", **({"enum": list(choices)} if choices else {})}
        return self.ask(key, schema, default, required, choices[0] if choices else "x")

    def bool(self, key, default=None):
        return self.ask(key, {"type": "boolean"}, default, False, False)

    def int(self, key, default=None, required=False, min=None, max=None):
        return self.ask(key, integer(min, max), default, required, plausible(min, max))

    def float(self, key, default=None, required=False, min=None, max=None, below=None,
              above=None, held=None):
        bounds = {"minimum": min, "maximum": max, "exclusiveMaximum": below,
                  "exclusiveMinimum": above}
        schema = {"type": "number", **{k: v for k, v in bounds.items() if v is not None}}
        if held:  # a bound of the spec's dtype, which one schema cannot follow
            schema["description"] = HELD
        inside = next(v for v in (0.5, 1.0, 2.0) if (min is None or v >= min) and
                      (max is None or v <= max) and (below is None or v < below) and
                      (above is None or v > above))
        return self.ask(key, schema, default, required, inside)

    def ints(self, key, length=None, default=None, required=False, min=1, max=None):
        item = integer(min, max)
        listed = {"type": "array", "items": item,
                  **({"minItems": length, "maxItems": length} if length else {})}
        schema = {"anyOf": [item, listed]} if length else listed
        value = self.ask(key, schema, default, required, [plausible(min, max)] * (length or 1))
        return [value] * length if isinstance(value, int) and length else value  # as Table.ints

    def table(self, key, required=False):
        self.ask(key, {"type": "object"}, None, required)
        return None

    def tables(self, key, required=False):
        items = {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/layer"}}
        self.ask(key, items, None, required)
        return []

    def finish(self):
        pass

    def schema(self, const=None, key="type"):
        """The object schema of what was asked; `const`: the value of `key` it is for."""
        props = dict(self.properties)
        if const is not None:
            props[key] = {"const": const}
        out = {"type": "object", "properties": props, "additionalProperties": False}
        return dict(out, required=self.required) if self.required else out


def integer(low, high):
    bounds = {"minimum": low, "maximum": high}
    return {"type": "integer", **{k: v for k, v in bounds.items() if v is not None}}


def plausible(low, high):
    """An integer the bounds accept, small enough for any shape check."""
    value = max(low or 0, 2)
    return value if high is None else min(value, high)


# ---- one schema per section ------------------------------------------------------------------

def layer_schema(kind):
    """Run the catalog's parser for `kind` on an input shape it accepts."""
    for in_shape in ([8, 8, 3], [6, 4], [6]):
        t = Recorder("layers[0]", {"type": kind})
        layer = {"type": kind, "name": "0", "in_shape": in_shape, "params": {}, "state": {}}
        try:
            PARSERS[kind](t, layer, {"input": "tokens" if kind == "embedding" else "float",
                                     "dtype": SOME_DTYPE})
        except InputError:  # this shape is not one the layer takes: try the next
            continue
        t.str("type", required=True)
        return t.schema(kind)
    raise AssertionError(f"no input shape satisfies the {kind} parser")


def data_schema(source):
    shapes = SOURCES[source][0]
    in_shape = shapes[0] if isinstance(shapes, list) else {
        "sequence": [6, 4], "tokens": [6]}.get(shapes, [4])
    t = Recorder("data", {"source": source})
    parse_data(t, in_shape)
    return t.schema(source, key="source")


def optimizer_schema(kind):
    t = Recorder("optimizer", {"type": kind})
    _parse_optimizer(t, SOME_DTYPE)
    return t.schema(kind)


def initializer_schema():
    names = list(INITIALIZERS)
    tables = []
    for name, (keys, _) in INITIALIZERS.items():
        props = {"type": {"const": name}, **{k: dict({"type": "number"}, **(
            {"default": v} if v is not None else {})) for k, v in keys.items()}}
        required = ["type"] + [k for k, v in keys.items() if v is None]
        tables.append({"type": "object", "properties": props, "required": required,
                       "additionalProperties": False})
    return {"anyOf": [{"enum": names}, *tables],
            "description": "an initializer name, or a table with its type and keys"}


def by_type(key, schemas, open_=False, default=None):
    """One of several object schemas chosen by the value of `key` (if/then per value);
    without the key, the `default` one (or the key is required)."""
    choices = list(schemas)
    kinds = {"enum": choices} if not open_ else {
        "anyOf": [{"enum": choices}, {"type": "string", "description": "a plugin layer type"}]}
    rules = [{"if": {"properties": {key: {"const": c}}, **({} if c == default else {
        "required": [key]})}, "then": s} for c, s in schemas.items()]
    required = {} if default else {"required": [key]}
    if default:
        kinds = dict(kinds, default=default)
    return {"type": "object", **required, "properties": {key: kinds}, "allOf": rules}


def spec_schema():
    """The whole spec: top-level keys, and every section by its type."""
    loss = Recorder("loss", {"type": LOSSES[0]})
    _parse_loss(loss, {"task": "regression", "source": "random_regression",
                             "outputs": 1}, [1])
    train = Recorder("train")
    _parse_train(train, SOME_DTYPE)
    top = {
        "name": {"type": "string", "pattern": NAME.pattern},
        "description": {"type": "string"}, "reproduces": {"type": "string"},
        "dtype": {"enum": list(ALL_DTYPES), "default": "float64"},
        "seed": {"type": "integer", "minimum": 0, "default": 0},
        "input_shape": {"type": "array", "items": {"type": "integer", "minimum": 1},
                        "minItems": 1},
        "plugins": {"type": "array", "items": {"type": "string"},
                    "description": "files (.py, relative to the spec) or module names that "
                                   "declare layer types with @crossgrad.layer"},
        "params": {"type": "string",
                   "description": "an .npz of initial weights by canonical name (relative to "
                                  "the spec), instead of the initializers"},
        "params_sha256": {"type": "string", "pattern": f"^{SHA256.pattern}$",
                          "description": "the digest of the weights `params` held when the "
                                         "spec was written (crossgrad import): another "
                                         "file's is an error"},
        "original": {"type": "object", "additionalProperties": False,
                     "required": ["framework", "file", "sha256"],
                     "description": "the model the spec was imported from (crossgrad import); "
                                    "check and train run it as the participant 'original'",
                     "properties": {"framework": {"enum": list(ORIGINAL_FRAMEWORKS)},
                                    "file": {"type": "string"}, "factory": {"type": "string"},
                                    "sha256": {"type": "string",
                                               "pattern": f"^{SHA256.pattern}$"},
                                    "helpers": {
                                        "type": "array",
                                        "description": "torch: the modules of your own the "
                                                       "model file imports (from its folder), "
                                                       "each file (relative to the spec) and "
                                                       "sha256 at the import",
                                        "items": {"type": "object",
                                                  "additionalProperties": False,
                                                  "required": ["file", "sha256"],
                                                  "properties": {
                                                      "file": {"type": "string"},
                                                      "sha256": {"type": "string",
                                                                 "pattern":
                                                                 f"^{SHA256.pattern}$"}}}}}},
        "data": {"$ref": "#/$defs/data"},
        "layers": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/layer"}},
        "loss": loss.schema(), "optimizer": {"$ref": "#/$defs/optimizer"},
        "train": train.schema(),
    }
    missing = set(TOP_KEYS) - set(top)
    assert not missing, f"spec keys without a schema: {sorted(missing)}"
    return {
        "$schema": DRAFT, "title": "crossgrad spec",
        "description": "A network, its data, loss, optimizer and training settings "
                       "(README, 'Writing a spec').",
        "type": "object", "required": ["input_shape", "data", "layers", "loss"],
        "properties": top, "additionalProperties": False,
        "$defs": {
            "layer": by_type("type", {k: layer_schema(k) for k in PARSERS}, open_=True),
            "data": by_type("source", {s: data_schema(s) for s in SOURCES}),
            "optimizer": by_type("type", {k: optimizer_schema(k) for k in OPTIMIZERS},
                                 default="sgd"),
            "initializer": initializer_schema(),
            "padding": {"anyOf": [{"enum": ["valid", "same"]}, {
                "type": "array", "items": {"type": "integer", "minimum": 0},
                "minItems": 2, "maxItems": 2}]},
        },
    }


def dumps(schema):
    return json.dumps(schema, indent=1) + "\n"


if __name__ == "__main__":
    print(dumps(spec_schema()), end="")
