"""crossgrad.compare: your own loss function, written once per framework, checked like a spec.

    res = crossgrad.compare(params={"W": w, "b": b}, inputs=(x, y),
                            torch=lambda p, x, y: ..., jax=lambda p, x, y: ..., dtype="float64")

Every function receives the same values: `params` as its framework's differentiable
tensors (a dict by the same names), NumPy arrays among `inputs` as its framework's
tensors (floating ones in `dtype`), anything else in `inputs` unchanged. Gradients come
from each framework's own AD (autodiff.py); NumPy's function returns its loss and
hand-written gradients. Every pair is compared tensor by tensor with the project's
measure and tolerances (compare/pairwise.py), and in float64 each function's own loss is
probed along the harness's finite-difference directions (spec/probes.py,
compare/finite_diff.py). It all runs in this process: closures do not travel to workers.
"""
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import autodiff, messages
from .harness import registry
from .harness.compare.finite_diff import finite_differences
from .harness.compare.pairwise import PAIRWISE, tensor_errors
from .harness.spec import probes

__all__ = ["compare", "Comparison", "CompareError"]

COLUMNS = ["param", "kind", "a", "b", "max_abs_err", "rel_err", "cosine", "passed"]
FD_COLUMNS = ["framework", "param", "direction", "analytic", "numeric", "numeric_err",
              "forward", "backward", "rel_err", "status", "passed"]
SEED = 0  # the probe directions: fixed, so a comparison repeats exactly


class CompareError(ValueError):
    """Arguments compare cannot use; the message names the framework and the parameter."""


@dataclass
class Comparison:
    """What compare() found. `comparisons` and `finite_difference` are DataFrames."""
    dtype: str
    frameworks: list                               # in the project's order: numpy, torch, ...
    losses: dict                                   # framework -> loss
    gradients: dict                                # framework -> {param: gradient}
    rows: list = field(repr=False)                 # pairwise rows (COLUMNS)
    probe_rows: list = field(repr=False)           # finite-difference rows (FD_COLUMNS)

    @property
    def passed(self):
        return all(r["passed"] for r in self.rows + self.probe_rows)

    @property
    def not_finite(self):
        """Why nothing can be compared, or None: the loss is nan or inf in every function (every
        pair then "disagrees" on nan; check's NOT FINITE)."""
        if any(math.isfinite(loss) for loss in self.losses.values()):
            return None
        values = " or ".join(sorted({str(float(loss)) for loss in self.losses.values()}))
        return (f"the loss is {values} in every framework ({', '.join(self.frameworks)}): "
                "nothing can be compared at these params")

    @property
    def comparisons(self):
        """One row per (pair of frameworks, tensor): the loss, then each parameter's gradient."""
        return pd.DataFrame(self.rows, columns=COLUMNS)

    @property
    def finite_difference(self):
        """One row per (framework, probe), float64 only; status ok, kink or mismatch."""
        return pd.DataFrame(self.probe_rows, columns=FD_COLUMNS)

    def assert_close(self):
        """AssertionError listing the worst tensors, pairs and values, unless all agree."""
        __tracebackhide__ = True  # pytest: show the caller's line
        if not self.passed:
            raise AssertionError(self.report())

    def report(self):
        if self.not_finite:
            return f"Loss not finite: {self.not_finite}"
        verdict = "Gradients agree" if self.passed else "Gradients disagree"
        return messages.message(
            f"{verdict} ({', '.join(self.frameworks)}; {messages.tolerances([self.dtype])})",
            [messages.counts(self.rows, self.probe_rows), messages.worst_pairs(self.rows),
             messages.worst_probes(self.probe_rows)])

    def __repr__(self):
        verdict = "NOT FINITE" if self.not_finite else "passed" if self.passed else "FAILED"
        return (f"Comparison({self.dtype}, {'/'.join(self.frameworks)}: {verdict}; "
                f"{messages.counts(self.rows, self.probe_rows)})")


def compare(params, inputs=(), *, torch=None, tensorflow=None, jax=None, numpy=None,
            dtype="float64"):
    """Gradients of the same loss written in two or more frameworks, compared -> Comparison."""
    functions = _functions(numpy=numpy, torch=torch, tensorflow=tensorflow, jax=jax)
    if dtype not in PAIRWISE:
        raise CompareError(f"dtype must be one of {', '.join(PAIRWISE)}, got {dtype!r}")
    params, inputs = _params(params, dtype), _inputs(inputs, dtype)
    losses, gradients = {}, {}
    for fw, fn in functions.items():
        losses[fw], gradients[fw] = _run(fw, "gradients", fn, params, inputs, dtype)
        _check_gradients(fw, gradients[fw], params, dtype)
    rows = _pairwise(list(functions), losses, gradients, params, dtype)
    finite = any(np.isfinite(loss) for loss in losses.values())  # else nothing to probe
    fd = _probe(functions, params, inputs, losses, gradients) if dtype == "float64" and finite \
        else []
    return Comparison(dtype, list(functions), losses, gradients, rows, fd)


# ---- arguments ---------------------------------------------------------------------------------

def _functions(**given):
    functions = {fw: given[fw] for fw in registry.ORDER if given.get(fw) is not None}
    if len(functions) < 2:
        raise CompareError(f"compare needs functions from two or more of "
                           f"{', '.join(registry.ORDER)}; got {', '.join(functions) or 'none'}")
    for fw, fn in functions.items():
        if not callable(fn):
            raise CompareError(f"{fw}: must be a function (p, *inputs) -> loss, "
                               f"got {type(fn).__name__}")
        if not registry.installed(fw):
            raise CompareError(f"{fw}: not installed (pip install -c constraints.txt "
                               f"-e '.[{registry.FRAMEWORKS[fw].extra}]')")
    return functions


def _params(params, dtype):
    """{name: array} -> private {name: ndarray in dtype}, every value real and finite."""
    if not isinstance(params, dict) or not params:
        raise CompareError("params must be a non-empty dict of name -> array")
    out = {}
    for name, value in params.items():
        if not isinstance(name, str):
            raise CompareError(f"params: names must be strings, got {name!r}")
        try:
            if np.iscomplexobj(value):
                raise TypeError("complex")
            array = np.array(value, dtype=dtype)   # a copy: the caller's array is never touched
        except Exception as err:  # any object NumPy cannot take (a tensor that requires grad)
            raise CompareError(f"params[{name!r}]: not an array of real numbers "
                               f"({type(err).__name__}: {err})") from None
        if not np.isfinite(array).all():
            raise CompareError(f"params[{name!r}]: must be real and finite")
        out[name] = array
    return out


def _inputs(inputs, dtype):
    """NumPy arrays copied (floating ones to dtype); anything else is passed as it is."""
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    return tuple(np.array(a, dtype=dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
                 else np.array(a) if isinstance(a, np.ndarray) else a for a in inputs)


def _fresh(arrays):
    """A copy for one call: a function that writes into its arguments changes nothing else,
    nor an array of the caller's inside a dict, list or tuple it was given (other objects
    pass as they are)."""
    if isinstance(arrays, np.ndarray):
        return arrays.copy()
    if type(arrays) is dict:
        return {k: _fresh(v) for k, v in arrays.items()}
    if type(arrays) in (list, tuple):
        return type(arrays)(_fresh(a) for a in arrays)
    return arrays


def _run(fw, what, fn, params, inputs, dtype):
    """autodiff.<fw>_gradients or <fw>_loss, its complaints prefixed with the framework."""
    try:
        return getattr(autodiff, f"{fw}_{what}")(fn, _fresh(params), _fresh(inputs), dtype)
    except autodiff.FunctionError as err:
        raise CompareError(f"{fw}: {err}") from err.__cause__


def _check_gradients(fw, grads, params, dtype):
    for name in params:
        if name not in grads:
            raise CompareError(f"{fw}: no gradient for param {name!r}")
    for name, g in grads.items():
        if name not in params:
            raise CompareError(f"{fw}: a gradient for {name!r}, which is not in params")
        if g.shape != params[name].shape:
            raise CompareError(f"{fw}: the gradient of {name!r} has shape {g.shape}, "
                               f"the param {params[name].shape}")
        if g.dtype != np.dtype(dtype):
            raise CompareError(f"{fw}: the gradient of {name!r} is {g.dtype}, expected {dtype}")


# ---- comparing ---------------------------------------------------------------------------------

def _pairwise(fws, losses, gradients, params, dtype):
    """The loss and every gradient, for every pair (a before b in the project's order)."""
    rows, tol = [], PAIRWISE[dtype]
    for i, a in enumerate(fws):
        for b in fws[i + 1:]:
            tensors = [("loss", "loss", losses[a], losses[b])]
            tensors += [(k, "grad", gradients[a][k], gradients[b][k]) for k in params]
            for name, kind, ta, tb in tensors:
                max_abs, rel, cosine = tensor_errors(ta, tb)
                rows.append({"param": name, "kind": kind, "a": a, "b": b, "max_abs_err": max_abs,
                             "rel_err": rel, "cosine": None if kind == "loss" else cosine,
                             "passed": bool(rel <= tol)})
    return rows


def _probe(functions, params, inputs, losses, gradients):
    """Each function's own loss at p + t d along the harness's probes (float64)."""
    directions = probes.probes({k: v.shape for k, v in params.items()}, SEED)
    results = {}
    for fw, fn in functions.items():
        values = [[_run(fw, "loss", fn, dict(params, **{name: params[name] + t * d}), inputs,
                        "float64") for t in probes.steps()] for name, d in directions]
        results[fw] = {"status": "ok", "loss": losses[fw], "grads": gradients[fw],
                       "fd_values": np.asarray(values)}
    return finite_differences(results, directions)
