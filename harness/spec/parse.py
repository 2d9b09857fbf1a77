"""The spec: one network, its data, loss, optimizer and training settings.

`load_spec(path)` reads TOML or JSON, `zoo_spec(name)` a built-in one; both
validate everything up front and raise InputError naming the file and field.
`Spec.for_impls()` is the plain dict every implementation receives.
"""
import copy
import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .data import CLASSIFICATION, data_digest, first_batch, parse_data
from ..errors import InputError
from .decode import decode_spec
from .limits import AXES, NAME_CHARS, SPEC_BYTES, STEPS
from .catalog import parse_layers, walk
from .files import kind_of, read_bounded
from .imported import parse_original, parse_params
from .params_file import digest as params_digest
from .plugins import load_plugins
from .precision import ALL as ALL_DTYPES, DTYPES, available  # noqa: F401  (DTYPES re-exported)
from .table import Table

LOSSES = ("mse", "half_squared_error", "binary_cross_entropy",
          "binary_cross_entropy_with_logits", "softmax_cross_entropy")
REDUCTIONS = ("mean", "sum")

# type -> keys with the spec's defaults (PyTorch's values; the rules are PyTorch's too)
OPTIMIZERS = {
    "sgd": {"weight_decay": 0.0},
    "momentum": {"momentum": 0.9, "weight_decay": 0.0},
    "nesterov": {"momentum": 0.9, "weight_decay": 0.0},
    "adam": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
    "adamw": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01},
    "rmsprop": {"rho": 0.99, "eps": 1e-8, "weight_decay": 0.0},
    "adagrad": {"eps": 1e-10, "weight_decay": 0.0},
}
TOP_KEYS = ("name", "description", "reproduces", "dtype", "seed", "input_shape", "data",
            "layers", "loss", "optimizer", "train", "plugins", "params", "params_sha256",
            "original")
ZOO = __package__ + ".zoo"  # the built-in specs, package data
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # whole string (fullmatch): no "a\n"


@dataclass
class Spec:
    name: str
    file: str
    dtype: str
    seed: int
    input_shape: list
    data: dict
    layers: list
    loss: dict
    optimizer: dict
    train: dict
    description: str = ""
    reproduces: str = ""
    raw: dict = field(default_factory=dict, repr=False)
    plugins: list = field(default_factory=list)  # sources of plugin layers (spec/plugins.py)
    initial: dict = None    # `params`: canonical name -> initial array, instead of initializers
    original: dict = None   # `[original]`: the model it was imported from (spec/imported.py)

    def param_specs(self):
        """canonical name -> {shape, init, fan_in, fan_out}, in spec order."""
        return {f"{layer['name']}.{local}": p
                for layer in walk(self.layers) for local, p in layer["params"].items()}

    def state_specs(self):
        return {f"{layer['name']}.{local}": s
                for layer in walk(self.layers) for local, s in layer["state"].items()}

    def dropout_layers(self):
        return [layer for layer in walk(self.layers) if layer["type"] == "dropout"]

    @property
    def out_shape(self):
        return self.layers[-1]["out_shape"]

    def for_impls(self):
        """The plain, JSON-able description every implementation builds its network from."""
        return json.loads(json.dumps({
            "name": self.name, "dtype": self.dtype, "input_shape": self.input_shape,
            "input": self.data["input"], "layers": _strip_init(self.layers),
            "loss": self.loss, "optimizer": self.optimizer, "train": self.train}))

    @property
    def hash(self):
        """sha256 of everything that determines the numbers (not the file name or comments)
        but the parameters' initializers, which init_hash holds: reports made before it
        existed keep comparing with `crossgrad diff` for every spec."""
        body = dict(self.for_impls(), seed=self.seed, data=self.data)
        if self.data_sha256 is not None:  # a file's data: the path says where, not what
            body["data_sha256"] = self.data_sha256
        if self.plugins:  # the plugins' code determines the numbers too
            body["plugins"] = [source["sha256"] for source in self.plugins]
        if self.initial is not None:  # so do the weights of a `params` file
            body["params"] = params_digest(self.initial)
        return _sha256_of(body)

    @property
    def init_hash(self):
        """sha256 of how the initial values are made: each parameter's initializer as read
        (defaults filled in, so `init = "he_normal"` and `init = { type = "he_normal" }` are
        the same), or the values of a `params` file, which replace them."""
        if self.initial is not None:
            body = {"params": params_digest(self.initial)}
        else:
            body = {name: p["init"] for name, p in self.param_specs().items()}
        return _sha256_of(body)

    @functools.cached_property
    def data_sha256(self):
        """The sha256 of the data in the file(s) the spec reads (spec.data.data_digest), or None:
        read once per Spec, as the hash is asked for by every job and report."""
        return data_digest(self.data, self.file)

    def with_overrides(self, **overrides):
        """The same spec with keys replaced (`dtype=`, `train.steps=`), validated again."""
        spec = parse_spec(_override(self.raw, overrides), self.file, self.name)
        if "params" not in self.raw and self.initial is not None:  # weights given in memory
            spec.initial, spec.original = self.initial, self.original
        return spec


def _sha256_of(body):
    """sha256 of a JSON-able body, its keys sorted: the same body, the same hash."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _override(raw, overrides):
    """A copy of `raw` with {"key" or "section.key": value} applied; None means keep."""
    raw = copy.deepcopy(raw)
    for key, value in overrides.items():
        if value is not None:
            section, _, sub = key.partition(".")
            if sub:
                raw.setdefault(section, {})[sub] = value
            else:
                raw[key] = value
    return raw


def _strip_init(layers):
    """Implementations get parameter shapes only: initial values come from the harness."""
    out = []
    for layer in layers:
        layer = dict(layer)
        layer["params"] = {k: p["shape"] for k, p in layer["params"].items()}
        layer["state"] = {k: s["shape"] for k, s in layer["state"].items()}
        if "layers" in layer:
            layer["layers"] = _strip_init(layer["layers"])
        out.append(layer)
    return out


# ---- reading files -----------------------------------------------------------------------------

def load_spec(path, **overrides):
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        raise InputError(path, None, "no such spec file")
    kind, _ = kind_of(path)
    if kind != "file":
        raise InputError(path, None, f"is {kind}, expected a spec file (.toml or .json)")
    raw = decode_spec(read_bounded(path, SPEC_BYTES, "a spec file"), path)
    return parse_spec(_override(raw, overrides), str(path), path.stem)


def zoo_names():
    return sorted(p.name[:-5] for p in resources.files(ZOO).iterdir()
                  if p.name.endswith(".toml"))


def zoo_spec(name, **overrides):
    if name not in zoo_names():
        raise InputError("--zoo", name, f"no such zoo model; known: {', '.join(zoo_names())}")
    with resources.as_file(resources.files(ZOO) / f"{name}.toml") as path:
        return load_spec(path, **overrides)


# ---- validation ----------------------------------------------------------------------------------

def parse_spec(raw, file, default_name):
    top = Table(file, "", raw)
    name = _parse_name(top, default_name)
    description = top.str("description", "")
    reproduces = top.str("reproduces", "")
    dtype = top.str("dtype", "float64", choices=ALL_DTYPES)
    if dtype == "bfloat16" and not available(dtype):  # registers its name with NumPy
        raise top.error("dtype", "bfloat16 needs the ml_dtypes package (JAX installs it)")
    seed = top.int("seed", 0, min=0)
    input_shape = top.ints("input_shape", required=True)
    if not input_shape or len(input_shape) > AXES:
        raise top.error("input_shape", f"must have 1 to {AXES} axes, "
                                       f"got {len(input_shape)}")
    data = parse_data(top.table("data", required=True), input_shape)
    plugins, plugin_parsers = load_plugins(top)
    ctx = {"input": data["input"], "vocab": data.get("vocab"), "dtype": dtype,
           "batch": first_batch(data, file), "plugins": plugin_parsers}
    layers, out_shape = parse_layers(top.tables("layers", required=True), input_shape, "", ctx)
    loss = _parse_loss(top.table("loss", required=True), data, out_shape)
    optimizer = _parse_optimizer(top.table("optimizer") or Table(file, "optimizer", {}), dtype)
    train = _parse_train(top.table("train") or Table(file, "train", {}), dtype)
    spec = Spec(name, file, dtype, seed, input_shape, data, layers, loss, optimizer, train,
                description, reproduces, raw, plugins)
    if not spec.param_specs():
        raise top.error("layers", "have no parameters: there is no gradient to compare and "
                                  "nothing to train (add a dense layer, or a plugin's params)")
    spec.initial = parse_params(top, spec.param_specs(), spec.state_specs())
    spec.original = parse_original(top)
    top.finish()
    return spec


def _parse_name(top, default_name):
    """The model's name: it becomes folder and file names, CSV cells and report headings."""
    name = top.str("name", default_name)
    where = "" if top.has("name") else " (from the file name; set name = \"...\")"
    control = next((c for c in name if ord(c) < 32 or ord(c) == 127), None)
    if control is not None:
        raise top.error("name", f"must not contain control characters, found {control!r} "
                                f"in {name!r}{where}")
    if len(name) > NAME_CHARS:
        raise top.error("name", f"is {len(name)} characters long, at most "
                                f"{NAME_CHARS}{where}")
    if not NAME.fullmatch(name):
        raise top.error("name", f"must be letters, digits, '_', '-' or '.', got {name!r}{where}")
    return name


def _parse_loss(t, data, out_shape):
    kind = t.str("type", required=True, choices=LOSSES)
    reduction = t.str("reduction", "mean", choices=REDUCTIONS)
    loss = {"type": kind, "reduction": reduction, "explicit": t.explicit()}
    t.finish()
    _check_outputs(t, kind, data, out_shape)
    return loss


def _check_outputs(t, kind, data, out_shape):
    """The final layer must produce what the loss compares with the data's labels."""
    shown = tuple(out_shape)
    if len(out_shape) != 1:
        raise t.error("type", f"the final layer must output one vector per example, "
                              f"it outputs {shown}; add flatten or sequence_mean")
    k = out_shape[0]
    if data["task"] == CLASSIFICATION:
        classes = data["classes"]
        if kind == "softmax_cross_entropy" and k != classes:
            raise t.error("type", f"softmax_cross_entropy needs {classes} outputs (one per "
                                  f"class of {data['source']}), the final layer has {k}")
        if kind != "softmax_cross_entropy" and k not in (classes, 1 if classes == 2 else classes):
            raise t.error("type", f"{kind} on {classes} classes needs {classes} outputs "
                                  f"(one-hot){' or 1' if classes == 2 else ''}, the final layer has {k}")
    else:
        if kind in ("softmax_cross_entropy", "binary_cross_entropy",
                    "binary_cross_entropy_with_logits"):
            raise t.error("type", f"{kind} needs class labels; {data['source']} gives "
                                  f"real-valued targets (use mse or half_squared_error)")
        if k != data["outputs"]:
            raise t.error("type", f"{data['source']} has {data['outputs']} outputs, "
                                  f"the final layer has {k}")


def _parse_optimizer(t, dtype):
    """Each number is one the frameworks compute with in `dtype` (Table.float's `held`)."""
    kind = t.str("type", "sgd", choices=list(OPTIMIZERS))
    opt = {"type": kind, "lr": t.float("lr", 0.01, above=0.0, held=dtype)}
    for key, default in OPTIMIZERS[kind].items():
        if key == "momentum":
            opt[key] = _momentum(t, default, dtype)
        elif key in ("beta1", "beta2", "rho"):
            opt[key] = t.float(key, default, min=0.0, below=1.0, held=dtype)
        elif key == "eps":
            opt[key] = t.float(key, default, above=0.0, held=dtype)
        else:
            opt[key] = t.float(key, default, min=0.0, held=dtype)
    opt["explicit"] = t.explicit()
    t.finish()
    return opt


def _momentum(t, default, dtype):
    """The momentum of "momentum" and "nesterov", in (0, 1). Momentum 0 is plain SGD with
    a velocity that is only ever the gradient: PyTorch refuses it under Nesterov and keeps
    no velocity at all for it under momentum, so neither would be the optimizer the spec
    names; the one it means is type = "sgd"."""
    value = t.data.get("momentum")  # as written, before the bounds' generic message
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0:
        raise t.error("momentum", f'is 0, which is plain SGD: write type = "sgd" instead of '
                                  f'type = "{t.data.get("type")}"')
    return t.float("momentum", default, above=0.0, below=1.0, held=dtype)


def _parse_train(t, dtype):
    train = {"steps": t.int("steps", 100, min=1, max=STEPS),
             "l1": t.float("l1", 0.0, min=0.0, held=dtype),
             "l2": t.float("l2", 0.0, min=0.0, held=dtype),
             "clip_norm": t.float("clip_norm", None, above=0.0, held=dtype)}
    t.finish()
    return train

