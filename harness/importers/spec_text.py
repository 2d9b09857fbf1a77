"""An imported model's spec: the plain dict parse_spec validates, and its TOML text.

The text says where every layer came from (a comment above each: the module path and
class, and what the import converted), so the spec reads as a port of the model.
"""
import json
import math

from ..spec.data import SOURCES

CLASSIFYING = ("softmax_cross_entropy", "binary_cross_entropy",
               "binary_cross_entropy_with_logits")
BATCH = 32
EXAMPLES = 256


def layer_table(piece):
    table = dict(piece.table)
    if piece.layers is not None:
        table["layers"] = [layer_table(p) for p in piece.layers]
    return table


def data_table(source, loss, outputs, tokens, vocab):
    """--data (default: random data of the model's input shape; token ids if it starts with
    an embedding), with the classes or outputs the model's last layer gives."""
    classes = 2 if outputs == 1 else outputs
    if source is None:
        source = ("random_tokens" if tokens else
                  "random_classification" if loss in CLASSIFYING else "random_regression")
    table = {"source": source}
    keys = SOURCES.get(source, (None, {}))[1]
    if "classes" in keys:
        table["classes"] = classes
    if "outputs" in keys:
        table["outputs"] = outputs
    if "vocab" in keys and vocab:
        table["vocab"] = vocab
    if "examples" in keys and source.startswith("random"):
        table["examples"] = EXAMPLES
    table["batch_size"] = 4 if source == "xor" else BATCH
    return table


def spec_dict(name, pieces, input_shape, data, loss):
    """What parse_spec reads (params and original are added when the files exist)."""
    return {"name": name, "dtype": "float64", "seed": 0, "input_shape": list(input_shape),
            "data": data, "layers": [layer_table(p) for p in pieces],
            "loss": {"type": loss}, "optimizer": {"type": "sgd", "lr": 0.01},
            "train": {"steps": 100}}


def toml_text(raw, pieces, header, input_note):
    """The spec as TOML, `header` lines on top, a comment per layer."""
    lines = [f"# {line}" for line in header] + [""]
    for key in ("name", "dtype", "seed", "input_shape", "params", "params_sha256"):
        if key in raw:
            if key == "input_shape" and input_note:
                lines.append(f"# {input_note}")
            lines.append(f"{key} = {value(raw[key])}")
    if "original" in raw:
        lines += ["", "[original]                  # the model imported: `check` and `train` "
                      "run it too, as \"original\""]
        lines += [f"{k} = {value(v)}" for k, v in raw["original"].items()]
    lines += ["", "[data]"] + [f"{k} = {value(v)}" for k, v in raw["data"].items()]
    for piece, table in zip(pieces, raw["layers"]):
        lines += ["", "[[layers]]"] + [f"# {c}" for c in comments(piece)]
        for k, v in table.items():
            if k == "layers":
                lines += ["layers = ["] + [
                    line for sub, t in zip(piece.layers, v)
                    for line in [f"  # {c}" for c in comments(sub)] + [f"  {value(t)},"]] + ["]"]
            else:
                lines.append(f"{k} = {value(v)}")
    lines += ["", "[loss]"] + [f"{k} = {value(v)}" for k, v in raw["loss"].items()]
    lines += ["", "[optimizer]                 # for `crossgrad train`: set yours"]
    lines += [f"{k} = {value(v)}" for k, v in raw["optimizer"].items()]
    lines += ["", "[train]"] + [f"{k} = {value(v)}" for k, v in raw["train"].items()]
    return "\n".join(lines) + "\n"


def comments(piece):
    return [f"{piece.where}: {piece.kind}"] + [n for n in piece.notes if n]


def value(v):
    """A TOML value: strings as JSON writes them (valid TOML), inline tables on one line."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        assert math.isfinite(v), v
        return repr(v)
    if isinstance(v, (int, str)):
        return json.dumps(v) if isinstance(v, str) else str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(x) for x in v) + "]"
    return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
