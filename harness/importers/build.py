"""`crossgrad import`: a model -> an Imported (its Spec, the spec's TOML text, its weights).

Nothing is written here: commands.py writes the two files, crossgrad.from_torch and
from_keras return the Spec. Every problem is an InputError naming the model (the file,
or the module path inside it) before anything is written.
"""
import math
import numbers
import os
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..spec import parse_spec
from ..spec.data import SOURCES
from ..spec.params_file import digest as params_digest
from .pieces import NCHW, NotMapped, canonical_shape, canonical_weights, walk
from .spec_text import data_table, spec_dict, toml_text

DATA = [s for s in SOURCES if s != "mnist"]  # mnist needs a path: write it in the spec


@dataclass
class Imported:
    spec: object          # the Spec, its weights in spec.initial, the model in spec.original
    text: str             # the spec as TOML, naming `params_file`
    arrays: dict          # canonical name -> array: the params file's content
    params_file: str      # "my_model.params.npz", beside the TOML


def parse_factory(ref):
    """"path/my_model.py:build" -> (Path, "build"), or InputError."""
    path, sep, factory = str(ref).rpartition(":")
    if not sep or not path.endswith(".py") or not factory.isidentifier():
        raise InputError(ref, None, "expected FILE.py:FACTORY, a Python file and the name of "
                                    "a function in it that returns the nn.Module")
    return Path(path), factory


def spec_base(out):
    """"dir/m.toml" -> "m": what the spec's name and its weights file ("m.params.npz") are
    made of; InputError for a file name with nothing before .toml (".toml" would write
    ".params.npz", a hidden file, beside a spec naming another)."""
    base = Path(out).name.removesuffix(".toml")
    if not base:
        raise InputError("--out", out, "has nothing before .toml; name the spec, e.g. "
                                       "model.toml")
    return base


def params_name(out):
    """The weights file written beside the spec `out`."""
    return f"{spec_base(out)}.params.npz"


@contextmanager
def quiet_frameworks():
    """While the model is loaded and probed, the frameworks' warnings (an LSTM with a
    projection, padding='same' with an even kernel, a pickle protocol) are not printed:
    bad input is one line, and a model that imports prints only what crossgrad says."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.filterwarnings("default", module=r"crossgrad\.")  # crossgrad's own, if any
        yield


def import_torch(source, input_shape, loss, weights=None, data=None, out=None, command=None,
                 shape_flag="--input-shape"):
    """`source`: "FILE.py:FACTORY" or an nn.Module; `input_shape`: per example, in the
    model's own layout (C, H, W for an image), named `shape_flag` when refused."""
    input_shape = _input_shape(input_shape, shape_flag)
    with quiet_frameworks():
        return _import_torch(source, input_shape, loss, weights, data, out, command)


def _input_shape(shape, flag):
    """One example's shape as a list of sizes, or InputError naming `flag`: positive
    integers, at most limits.AXES of them, whose example batch (the trace runs the model on
    EXAMPLES examples) fits in memory: checked before torch is asked to allocate it."""
    from ..spec.limits import AXES
    from ..spec.sizes import default_limit, gb
    from .torch_graph import EXAMPLES
    sizes = list(shape) if isinstance(shape, (list, tuple)) else None
    if not sizes or len(sizes) > AXES or not all(
            isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1
            for n in sizes):
        raise InputError(flag, None, f"expected one example's shape, 1 to {AXES} positive "
                                     f"integers like (1, 28, 28), got {shape!r}"[:300])
    sizes = [int(n) for n in sizes]
    need, limit = EXAMPLES * math.prod(sizes) * 8, default_limit()  # float64 or int64 values
    if need > limit:
        raise InputError(flag, None, f"{tuple(sizes)} per example: the {EXAMPLES} examples the "
                                     f"import runs the model on need {gb(need)}, over the limit "
                                     f"of {gb(limit)} (half of this machine's memory)")
    return sizes


def _import_torch(source, input_shape, loss, weights, data, out, command):
    from . import torch_graph
    if isinstance(source, (str, os.PathLike)):
        path, factory = parse_factory(source)
        original = {"framework": "torch", "path": str(path.resolve()), "factory": factory}
        try:
            model = torch_graph.load_factory(path, factory)
            original["sha256"] = torch_graph.sha256(path)
            original["helpers"] = [{"path": f, "sha256": digest} for f, digest
                                   in torch_graph.helper_files(path).items()]
        except ValueError as err:
            raise InputError(source, None, str(err)) from None
        name = path.stem
    else:
        model, original, name, source = source, None, type(source).__name__.lower(), "model"
    if weights is not None:
        try:
            torch_graph.load_weights(model, weights)
        except ValueError as err:
            raise InputError(weights, None, str(err)) from None
    try:
        pieces, layout, _, tokens = torch_graph.chain(model, input_shape)
        if weights is not None:
            _finite_weights(weights, model, pieces)
        arrays = canonical_weights(pieces, torch_graph.read_native(model))
    except NotMapped as err:
        raise err.input_error(source) from None
    shape = canonical_shape(tuple(input_shape), layout)
    note = (f"the model takes (C, H, W) = {tuple(input_shape)} per example (NCHW); "
            "crossgrad's images are (H, W, C): the original gets them permuted") \
        if layout == NCHW else ""
    return _finish(name, pieces, shape, arrays, original, str(source), loss, data, out,
                   command, tokens, note)


def _finite_weights(weights, model, pieces):
    """A NaN or an infinity the state_dict brought: the weights file's, named by its key."""
    from .torch_graph import first_non_finite
    key = first_non_finite(model, pieces)
    if key is not None:
        raise InputError(weights, key, "holds non-finite values (nan or inf)")


def import_keras(source, loss, data=None, out=None, command=None):
    """`source`: a .keras file or a keras.Model."""
    with quiet_frameworks():
        return _import_keras(source, loss, data, out, command)


def _import_keras(source, loss, data, out, command):
    from . import keras_graph
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            model = keras_graph.load(path)
        except ValueError as err:
            raise InputError(source, None, str(err)) from None
        original = {"framework": "keras", "path": str(path.resolve()),
                    "sha256": keras_graph.sha256(path)}
        name = path.stem
    else:
        model, original, name, source = source, None, source.name, "model"
    try:
        pieces, layout, input_shape, tokens = keras_graph.chain(model)
        arrays = canonical_weights(pieces, keras_graph.read_native)
    except NotMapped as err:
        raise err.input_error(source) from None
    shape = canonical_shape(tuple(input_shape), layout)
    note = (f"the model takes (C, H, W) = {tuple(input_shape)} per example (channels_first); "
            "crossgrad's images are (H, W, C): the original gets them permuted") \
        if layout == NCHW else ""
    return _finish(name, pieces, shape, arrays, original, str(source), loss, data, out,
                   command, tokens, note)


def _finish(name, pieces, input_shape, arrays, original, source, loss, data, out, command,
            tokens, input_note):
    """The spec, validated like any spec file, its shapes and weights checked against the
    model's, and its text."""
    if data is not None and data not in DATA:
        raise InputError("--data", data, f"choose from {', '.join(DATA)} (mnist needs a path: "
                                         "write it in the spec)")
    if out is not None:
        name = spec_base(out)
    outputs = pieces[-1].shape[-1]
    vocab = pieces[0].table.get("vocab")
    raw = spec_dict(_safe_name(name), pieces, input_shape,
                    data_table(data, loss, outputs, tokens, vocab), loss)
    spec = _parsed(raw, source, pieces)
    _check_shapes(pieces, spec.layers)
    _check_weights(arrays, spec, source, pieces)
    spec.initial = {k: np.asarray(v, np.float64) for k, v in arrays.items()}
    params_file = params_name(out) if out else f"{raw['name']}.params.npz"
    # the file's keys (the Spec holds the weights in memory), and what the file holds: the
    # two files cannot be renamed into place at once, and a spec beside other weights says so
    raw = dict(raw, params=params_file, params_sha256=params_digest(spec.initial))
    if original is not None:
        helpers = [dict(h, file=_relative(h["path"], out)) for h in original.get("helpers", ())]
        spec.original = dict(original, file=_relative(original["path"], out), helpers=helpers)
        raw["original"] = {k: spec.original[k] for k in ("framework", "file", "factory", "sha256")
                           if spec.original.get(k) is not None}
        if helpers:
            raw["original"]["helpers"] = [{"file": h["file"], "sha256": h["sha256"]}
                                          for h in helpers]
    header = [f"Imported from {source}" + (f" by `{command}`." if command else "."),
              f"The weights are in {params_file} (canonical names and layouts); "
              "`crossgrad check` on this", "file also runs the original model, as the "
              "participant \"original\"."]
    return Imported(spec, toml_text(raw, pieces, header, input_note), arrays, params_file)


LAYER_FIELD = re.compile(r"((?:layers\[\d+\]\.?)+)(.*)")  # "layers[3].layers[1].units"


def _parsed(raw, source, pieces):
    """parse_spec of the import's spec. A value the model has that a spec layer cannot take
    (nn.LeakyReLU(-0.1): alpha < 0) is the model's module, named as the model names it, not
    a field of a spec the user never wrote."""
    try:
        return parse_spec(raw, source, raw["name"])
    except InputError as err:
        found = LAYER_FIELD.fullmatch(str(err.field or ""))
        if found is None:
            raise
        piece = None
        for index in map(int, re.findall(r"\d+", found.group(1))):
            piece = (piece.layers if piece else pieces)[index]
        raise InputError(source, piece.where, f"{piece.kind} maps to crossgrad's "
                                              f"{piece.table['type']} layer, whose "
                                              f"{found.group(2) or 'table'} {err.message}") \
            from None


def _safe_name(name):
    cleaned = "".join(c if c.isalnum() or c in "_.-" else "_" for c in name)[:100]
    return cleaned if cleaned and cleaned[0] not in ".-" else f"m{cleaned}"[:100]


def _relative(path, out):
    folder = Path(out).resolve().parent if out else Path.cwd()
    return os.path.relpath(path, folder)


def _check_shapes(pieces, layers):
    """Each layer's canonical output shape is the model's (converted): a guard against a
    mapping that would compute something else."""
    for piece, layer in zip(pieces, layers):
        mine = canonical_shape(piece.shape, piece.out_layout)
        if tuple(layer["out_shape"]) != mine:
            raise InputError("model", piece.where, f"{piece.kind} gives {piece.shape} per "
                                                   f"example, crossgrad's {layer['type']} "
                                                   f"{tuple(layer['out_shape'])}")
        if piece.layers:
            _check_shapes(piece.layers, layer["layers"])


def _check_weights(arrays, spec, source, pieces):
    wanted = {**spec.param_specs(), **spec.state_specs()}
    where = {f"{name}.{local}": p.where for name, p in walk(pieces) for local in p.links}
    for name, spec_entry in wanted.items():
        got = arrays.get(name)
        if got is None or tuple(got.shape) != tuple(spec_entry["shape"]):
            raise InputError(source, where.get(name, name),
                             f"{name}: the model gives {None if got is None else got.shape}, "
                             f"crossgrad's layer needs {tuple(spec_entry['shape'])}")
        if not np.all(np.isfinite(got)):
            raise InputError(source, where[name], f"{name} holds non-finite values")
