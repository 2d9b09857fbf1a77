"""The mistakes gallery: wrong backward formulas and wrong framework idioms, each caught.

The mistakes are teaching material, one folder per kind under mistakes/:

- formulas/: layers written as plugins (`@crossgrad.layer`, README "Your own layer"). In
  each file a layer with its right NumPy backward, and subclasses that override the
  backward with a wrong formula, saying which layer of the file's NETWORK they replace
  (`at`) and `why` the formula is wrong. Both forms run through `check`, so NumPy's
  gradient meets finite differences of its own (right) forward and the gradients PyTorch,
  TensorFlow and JAX take of the same forward.
- idioms/: framework code that takes gradients itself, `wrong(params, x, y)` and
  `right(params, x, y)` -> {param: gradient}, run here, in this process, on the initial
  weights and first batch of the file's NETWORK (after STEPS - 1 steps of SGD at LR, for
  a training loop); `check` of that network gives the references: every framework's
  gradient and the finite differences of its loss.

A form passes when it agrees with every reference within the tolerances of `check`;
a mistake is caught when its wrong form fails and its right form passes.
"""
import contextlib
import copy
import importlib.util
import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import api, registry
from ..switches import keras_floatx
from ..compare import finite_diff
from ..compare.pairwise import PAIRWISE, max_errors
from ..report.mistakes import FD
from ..run.jobs import Inputs
from ..spec import examples, parse_spec, plugins, zoo_names, zoo_spec
from . import source

FOLDER = Path(__file__).parent / "mistakes"
DTYPE = "float64"  # finite differences need it


@dataclass
class Mistake:
    name: str            # the wrong plugin type, or the idiom file's name
    kind: str            # "formula" (a NumPy backward) or "idiom" (a framework's gradient code)
    framework: str       # whose code is wrong
    title: str           # the mistake in one line
    why: str             # one sentence
    path: Path
    network: object      # a zoo or example spec name, or a spec dict
    wrong: object        # formula: the plugin class; idiom: the function
    right: object
    at: int = None       # formula: the index of the layer the plugin takes the place of
    steps: int = 1       # idiom: the step whose gradient is measured
    lr: float = None     # idiom: SGD's learning rate, for steps > 1
    module: object = field(default=None, repr=False)


# ---- finding the mistakes ---------------------------------------------------------------------

def discover():
    """Every mistake in mistakes/: the formulas (the dense layer's first, then by file),
    then the idioms by framework."""
    idioms = [m for path in sorted((FOLDER / "idioms").glob("*.py")) for m in _idioms(path)]
    idioms.sort(key=lambda m: registry.ORDER.index(m.framework))
    files = sorted((FOLDER / "formulas").glob("*.py"), key=lambda p: (p.stem != "dense", p.stem))
    return [m for path in files for m in _formulas(path)] + idioms


def _formulas(path):
    types, _ = plugins.load({"path": str(path.resolve())})
    type_of = {cls: t for t, cls in types.items()}
    found = []
    for t, cls in types.items():
        if "why" not in vars(cls):
            continue
        right = next(c for c in cls.__mro__[1:] if c in type_of)
        module = sys.modules[cls.__module__]
        found.append(Mistake(t, "formula", "numpy", _first_line(cls.__doc__), cls.why, path,
                             module.NETWORK, cls, right, at=cls.at, module=module))
    return found


def _idioms(path):
    spec = importlib.util.spec_from_file_location(f"crossgrad_mistake_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [Mistake(path.stem, "idiom", module.FRAMEWORK, _first_line(module.__doc__),
                    module.WHY, path, module.NETWORK, module.wrong, module.right,
                    steps=getattr(module, "STEPS", 1), lr=getattr(module, "LR", None),
                    module=module)]


def _first_line(doc):
    return (doc or "").strip().splitlines()[0]


def type_of(plugin_class):
    return next(t for t, c in plugins.REGISTERED if c is plugin_class)


# ---- the code of each form, from the files ----------------------------------------------------

def code(m):
    """(wrong snippets, right snippets, snippets both use), read from the mistake's file."""
    if m.kind == "formula":
        methods = [name for name, value in vars(m.wrong).items() if callable(value)]
        return ([source.members(m.path, m.wrong.__name__)],
                [source.members(m.path, m.right.__name__, methods)], [])
    wrong = source.definitions(m.path, ["wrong"])
    right = source.definitions(m.path, ["right"])
    shared = [s for s in wrong if s in right]
    return ([s for s in wrong if s not in shared], [s for s in right if s not in shared],
            shared)


def network_name(m):
    return m.network if isinstance(m.network, str) else m.network["name"]


def network_raw(network):
    """A spec dict for a zoo name, an example name (harness/spec/examples.py) or a dict."""
    if isinstance(network, dict):
        return copy.deepcopy(network)
    if network in zoo_names():
        return copy.deepcopy(zoo_spec(network).raw)
    return copy.deepcopy(examples.LAYERS[network])


def formula_spec(m, plugin_class, form):
    """The network with the plugin (right or wrong form) in place of layer `at`."""
    raw = network_raw(m.network)
    replaced = raw["layers"][m.at]
    keys = {k: v for k, v in replaced.items() if k in getattr(plugin_class, "keys", {})}
    raw["layers"][m.at] = {"type": type_of(plugin_class), **keys}
    raw.update(name=f"{m.name}-{form}", dtype=DTYPE, plugins=[str(m.path.resolve())])
    return parse_spec(raw, str(m.path), raw["name"])


def network_spec(m):
    raw = dict(network_raw(m.network), dtype=DTYPE)
    return parse_spec(raw, network_name(m), raw.get("name", network_name(m)))


# ---- measuring --------------------------------------------------------------------------------

def measure(mistakes, frameworks=None, executor=None, on_result=None):
    """One JSON-able entry per mistake: each form against every reference, and whether the
    mistake is caught. Formula checks and the idioms' reference checks run as one batch."""
    formulas = [m for m in mistakes if m.kind == "formula"]
    idioms = [m for m in mistakes if m.kind == "idiom"]
    specs = [formula_spec(m, cls, form) for m in formulas
             for form, cls in (("wrong", m.wrong), ("right", m.right))]
    networks = {network_name(m): network_spec(m) for m in idioms}
    prepared = api.prepare(specs + list(networks.values()))
    checked = api.check([p[0] for p in prepared], frameworks=frameworks, executor=executor,
                        on_result=on_result, prepared=prepared)
    entries = {m["name"]: m for m in checked.models}
    out = []
    for m in formulas:
        forms = {form: formula_form(entries[f"{m.name}-{form}"]) for form in ("wrong", "right")}
        out.append(entry(m, forms))
    for m in idioms:
        spec = networks[network_name(m)]
        start, results = checked.saved[(spec.name, spec.dtype)]
        inputs, results = after_steps(spec, start, results, m, frameworks, executor)
        forms = {form: idiom_form(fn, m.framework, start.params, inputs, results)
                 for form, fn in (("wrong", m.wrong), ("right", m.right))}
        out.append(entry(m, forms))
    return out


def entry(m, forms):
    return {"name": m.name, "kind": m.kind, "framework": m.framework, "title": m.title,
            "why": m.why, "network": network_name(m), "file": source.shown_path(m.path),
            "wrong": forms["wrong"], "right": forms["right"],
            "caught": (not forms["wrong"]["passed"]) and forms["right"]["passed"]}


def formula_form(model):
    """NumPy's gradient in a check entry against finite differences and the other frameworks."""
    against = []
    fd = [r for r in model["finite_difference"] if r["framework"] == "numpy"]
    if fd:
        against.append(_worst(FD, [(r["param"], r["rel_err"], r["passed"]) for r in fd]))
    for fw, info in model["frameworks"].items():
        if fw == "numpy" or info["status"] != "ok":
            continue
        rows = [c for c in model["comparisons"] if c["a"] == "numpy" and c["b"] == fw]
        against.append(_worst(fw, [(c["param"], c["rel_err"], c["passed"]) for c in rows]))
    numpy = model["frameworks"].get("numpy", {})
    form = {"against": against, "missing": []}
    if numpy.get("status") != "ok":
        form["error"] = numpy.get("error") or "NumPy did not run"
    form["passed"] = "error" not in form and bool(against) and all(a["passed"] for a in against)
    parting = [p for p in model.get("first_parting", []) if p["pair"][0] == "numpy"]
    if parting:
        form["first_parting"] = parting[0]
    return form


def idiom_form(fn, framework, start, inputs, results):
    """Run one form in this process from the weights `start` on the first batch; compare
    the gradient it returns with the references, taken at `inputs.params` (the weights
    of the form's last step)."""
    x, y, _ = inputs.first_batch()
    params = {k: v.copy() for k, v in start.items()}
    try:
        with float64(framework):
            got = fn(params, x.copy(), y.copy())
        grads = {k: None if g is None else np.asarray(g, np.float64) for k, g in got.items()}
    except Exception as err:  # the form itself broke: a finding, shown as such
        frame = traceback.extract_tb(err.__traceback__)[-1]
        return {"passed": False, "against": [], "missing": [],
                "error": f"{type(err).__name__}: {err} (line {frame.lineno})"}
    missing = sorted(k for k in inputs.params if grads.get(k) is None)
    filled = {k: np.zeros_like(p) if grads.get(k) is None else grads[k]
              for k, p in inputs.params.items()}  # a None gradient is measured as zeros
    against = []
    donor = next((fw for fw in registry.ORDER if results.get(fw, {}).get("status") == "ok"
                  and results[fw].get("fd_values") is not None), None)
    if donor and inputs.probes:
        r = results[donor]
        rows = [finite_diff.check(name, d, filled[name], r["loss"], values)
                for (name, d), values in zip(inputs.probes, r["fd_values"])]
        against.append(_worst(FD, [(row["param"], row["rel_err"], row["status"] != "mismatch")
                                   for row in rows]))
    for fw in registry.ORDER:
        r = results.get(fw, {})
        if r.get("status") != "ok":
            continue
        errs = [(k, max_errors(r["grads"][k], filled[k])[1]) for k in inputs.params]
        against.append(_worst(fw, [(k, e, e <= PAIRWISE[DTYPE]) for k, e in errs]))
    passed = bool(against) and all(a["passed"] for a in against) and not missing
    return {"passed": passed, "against": against, "missing": missing}


def _worst(reference, rows):
    """rows of (param, rel_err, passed) -> the reference's verdict and its worst tensor."""
    worst = max(rows, key=lambda r: (not r[2], _finite(r[1])))
    return {"reference": reference, "param": worst[0], "rel_err": worst[1],
            "passed": all(r[2] for r in rows)}


def _finite(x):
    return x if x == x else float("inf")  # nan sorts as the worst


def after_steps(spec, inputs, results, m, frameworks, executor):
    """The references at the weights after steps - 1 SGD steps of the reference framework's
    gradient on the same batch: what a training loop sees at its last step (for one
    step: the references as they are)."""
    for _ in range(m.steps - 1):
        ref = next(fw for fw in registry.ORDER if results.get(fw, {}).get("status") == "ok")
        stepped = Inputs(spec)
        stepped.params = {k: p - m.lr * results[ref]["grads"][k] for k, p in inputs.params.items()}
        checked = api.check([spec], frameworks=frameworks, executor=executor,
                            prepared=[(spec, stepped)])
        inputs, results = checked.saved[(spec.name, spec.dtype)]
    return inputs, results


def worker_environment(framework):
    """Before this process first imports the framework: the settings a worker pins
    (registry.py: one thread, TensorFlow's oneDNN reordering off and its start-up chatter
    quiet), where the user has not set them."""
    if registry.FRAMEWORKS[framework].module in sys.modules:
        return
    pins = registry.FRAMEWORKS[framework].environment or (lambda threads, env: {})
    for name, value in pins(1, dict(os.environ)).items():
        os.environ.setdefault(name, value)


@contextlib.contextmanager
def float64(framework):
    """The framework's float64 switch, set for the call and put back: JAX's x64 mode
    (without it JAX computes in float32), Keras' floatx and its global dtype policy (its
    layers and losses follow them; the policy, once read, no longer follows floatx, so a
    process that used Keras before would compute the gallery's Keras forms in float32),
    torch's default dtype (a tensor made from a Python float follows it)."""
    worker_environment(framework)
    if framework == "jax":
        import jax
        with jax.enable_x64(True):
            yield
    elif framework == "tensorflow":
        with keras_floatx("float64"):  # crossgrad.compare's switch
            yield
    elif framework == "torch":
        import torch
        found = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            yield
        finally:
            torch.set_default_dtype(found)
    else:
        yield
