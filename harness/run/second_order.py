"""The worker side of `check --order 2`: Hessian-vector products along the probe directions.

For every finite-difference probe direction v (spec/probes.py), a worker computes
  - H v with its implementation's `hessian_vector_product` (autodiff, or NumPy's hand
    R-operator; a NumPy model with a layer it has no R-operator for raises
    NotImplementedError, and its H v is then the differences below), and
  - differences of its own gradient along v, g(p + t v) at the probe steps t = +-h0/4^k,
    extrapolated to t -> 0 by Ridders' method over the window of steps with the smallest
    error estimate, as compare/finite_diff.py does for the loss, here for whole vectors
    (errors are max-abs over the entries). The one-sided (forward and backward)
    extrapolations come along, so that a probe across a kink is told apart.

Everything is reduced here, in the worker: the 22 gradients of a probe never cross the
pipe, only H v, the extrapolated difference and four numbers. compare/hvp.py judges.
"""

import numpy as np

from ..spec.probes import H0, LEVELS, RATIO, ridders, steps

WINDOW = 4          # Ridders runs on every 4 consecutive steps; the best error wins
EPS = np.finfo(np.float64).eps
DIFFERENCES = "gradient differences"   # the method label of H v taken from the gradient


def probe_all(impl, model, job):
    """One entry per probe: {"hvp", "method", "differences", "differences_err",
    "one_sided_gap", "one_sided_err"} (H v and the differences as {name: array})."""
    x, y, masks = job["x"], job["y"], job["masks"]
    params, state = job["params"], job["state"]
    out = []
    for name, direction in job["probes"]:
        vector = {k: np.zeros_like(p) for k, p in params.items()}
        vector[name] = direction
        impl.model.set_params(model, params, state)
        try:
            hv, method = impl.model.hessian_vector_product(model, x, y, masks, vector)
            hv = {k: np.asarray(v) for k, v in hv.items()}
        except NotImplementedError as err:  # NumPy without an R-operator for some layer
            hv, method, why = None, DIFFERENCES, str(err)
        entry = differences(lambda moved: gradient(impl, model, job, moved), params, name,
                            direction)
        if hv is None:
            entry.update(hvp=entry["differences"], method=method, why=why)
        else:
            entry.update(hvp=hv, method=method)
        out.append(entry)
    impl.model.set_params(model, params, state)
    return out


def gradient(impl, model, job, moved):
    impl.model.set_params(model, moved, job["state"])
    return impl.model.loss_and_gradients(model, job["x"], job["y"], job["masks"])[1]


def differences(grad_at, params, name, direction):
    """Ridders' extrapolation of (g(p + t v) - g(p - t v)) / 2t, and of the one-sided
    differences, over the probe steps t = h0/4^k."""
    names = list(params)
    flat = lambda g: np.concatenate([np.asarray(g[k], np.float64).ravel() for k in names])  # noqa: E731
    g0 = flat(grad_at(params))
    values = [flat(grad_at(dict(params, **{name: params[name] + t * direction})))
              for t in steps()]
    plus, minus = values[0::2], values[1::2]
    hs = H0 / RATIO ** np.arange(LEVELS)
    size = max(np.abs(g0).max(initial=0.0), max(np.abs(v).max(initial=0.0) for v in values))
    noise = 4 * EPS * size / hs  # rounding of a gradient entry, amplified by 1/h
    central, err = extrapolate([(p - m) / (2 * h) for p, m, h in zip(plus, minus, hs)], 2,
                               noise / 2)
    forward, f_err = extrapolate([(p - g0) / h for p, h in zip(plus, hs)], 1, noise)
    backward, b_err = extrapolate([(g0 - m) / h for m, h in zip(minus, hs)], 1, noise)
    return {"differences": unflatten(central, params, names), "differences_err": err,
            "one_sided_gap": float(np.abs(forward - backward).max(initial=0.0)),
            "one_sided_err": f_err + b_err}


def unflatten(vector, params, names):
    out, at = {}, 0
    for k in names:
        size = params[k].size
        out[k] = vector[at:at + size].reshape(params[k].shape)
        at += size
    return out


def extrapolate(estimates, power, noise):
    """Ridders on every window of consecutive steps; -> (vector, error estimate) of the
    window whose error plus rounding noise is smallest."""
    runs = []
    for s in range(len(estimates) - WINDOW + 1):
        value, err = ridders(estimates[s:s + WINDOW], power)
        runs.append((value, err + noise[s + WINDOW - 1]))
    return min(runs, key=lambda r: r[1])
