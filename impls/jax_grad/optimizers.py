"""The seven update rules as Optax GradientTransformations.

One builder per optimizer type, `def <type>(optimizer, native)`, with the same name,
signature, order and first docstring line (the canonical rule) as in the other three
folders. Aligned (the default): each Optax alias below was checked against the canonical rule
(PyTorch's, written out in numpy_manual/optimizers.py) and is given the arguments that
make it compute the same math; Adagrad needs a transformation of its own. Coupled
`weight_decay` (g += wd * p, as torch.optim) is optax.add_decayed_weights chained before
the rule; AdamW's decoupled decay is part of optax.adamw.

Native: the same aliases with Optax's defaults for every setting the spec did not write
and Optax's own forms, each switched by the pitfall it names (impls/README.md, "Native
defaults"); Optax's other defaults (Adam's betas and eps, RMSprop's eps) are the spec's.
"""
import inspect
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..canonical import native_on, slot_key, slots_of
from .model import canonical, pytree

__all__ = ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad", "OPTIMIZERS",
           "build_optimizer", "get_optimizer_state", "set_optimizer_state"]


def setting(cfg, native, pitfall, key, alias, arg):
    """The spec's value of `key`; the default of the Optax `alias` for `arg` (its signature,
    never a copy) when the user did not write it and `pitfall` is on."""
    if key not in cfg["explicit"] and native_on(native, pitfall):
        return inspect.signature(alias).parameters[arg].default
    return cfg[key]


def sgd(optimizer, native):
    """p -= lr g, g = dL/dp + wd p

    optax.sgd.
    """
    return optax.sgd(optimizer["lr"])


def momentum(optimizer, native):
    """v = mu v + g; p -= lr v, g = dL/dp + wd p

    optax.sgd with momentum: optax.trace keeps t = mu t + g and steps along t, PyTorch's
    form (optax/transforms/_accumulation.py). mu is always passed, even in native mode:
    it defines the rule.
    """
    return optax.sgd(optimizer["lr"], momentum=optimizer["momentum"], nesterov=False)


def nesterov(optimizer, native):
    """v = mu v + g; p -= lr (g + mu v), g = dL/dp + wd p

    optax.sgd with momentum and nesterov=True: optax.trace steps along g + mu t.
    """
    return optax.sgd(optimizer["lr"], momentum=optimizer["momentum"], nesterov=True)


def adam(optimizer, native):
    """m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr m_hat / (sqrt(v_hat) + eps), g = dL/dp + wd p

    optax.adam: eps outside the root and eps_root=0, PyTorch's Adam.
    """
    return optax.adam(optimizer["lr"], b1=optimizer["beta1"], b2=optimizer["beta2"],
                      eps=optimizer["eps"])


def adamw(optimizer, native):
    """p *= 1 - lr wd; then m, v and p -= lr m_hat / (sqrt(v_hat) + eps) as Adam's, with g = dL/dp

    optax.adamw adds wd * p to the Adam step and scales the sum by lr:
    p - lr (step + wd p) = p (1 - lr wd) - lr step, PyTorch's decay-then-step. Optax's
    default weight_decay is 1e-4, PyTorch's 1e-2 (optax.adamw_default_weight_decay).
    """
    decay = setting(optimizer, native, "optax.adamw_default_weight_decay", "weight_decay",
                    optax.adamw, "weight_decay")
    return optax.adamw(optimizer["lr"], b1=optimizer["beta1"], b2=optimizer["beta2"],
                       eps=optimizer["eps"], weight_decay=decay)


def rmsprop(optimizer, native):
    """v = rho v + (1-rho) g^2; p -= lr g / (sqrt(v) + eps), g = dL/dp + wd p

    optax.rmsprop. Optax's defaults put eps inside the root (optax.rmsprop_eps_in_sqrt) and
    decay 0.9 (optax.rmsprop_default_decay); PyTorch uses sqrt(v) + eps and alpha 0.99.
    Both start the average at 0 (initial_scale=0).
    """
    decay = setting(optimizer, native, "optax.rmsprop_default_decay", "rho", optax.rmsprop,
                    "decay")
    return optax.rmsprop(optimizer["lr"], decay=decay, eps=optimizer["eps"],
                         eps_in_sqrt=native_on(native, "optax.rmsprop_eps_in_sqrt"))


def adagrad(optimizer, native):
    """s += g^2; p -= lr g / (sqrt(s) + eps), g = dL/dp + wd p

    optax.adagrad starts the sum at 0.1 (optax.adagrad_initial_accumulator) and puts eps
    (1e-7, optax.adagrad_default_eps) inside the root (optax.adagrad_eps_in_sqrt), and no
    argument turns the latter off: the canonical rule is scale_by_adagrad below.
    """
    eps = setting(optimizer, native, "optax.adagrad_default_eps", "eps", optax.adagrad, "eps")
    start = inspect.signature(optax.adagrad).parameters["initial_accumulator_value"].default \
        if native_on(native, "optax.adagrad_initial_accumulator") else 0.0
    if native_on(native, "optax.adagrad_eps_in_sqrt"):
        return optax.adagrad(optimizer["lr"], initial_accumulator_value=start, eps=eps)
    return optax.chain(scale_by_adagrad(eps, start), optax.scale_by_learning_rate(optimizer["lr"]))


class AdagradState(NamedTuple):
    sum_of_squares: optax.Updates


def scale_by_adagrad(eps, start=0.0):
    """s += g^2; g / (sqrt(s) + eps), s starting at 0: PyTorch's Adagrad, before the lr."""

    def init(params):
        return AdagradState(jax.tree.map(lambda p: jnp.full_like(p, start), params))

    def update(updates, state, params=None):
        s = jax.tree.map(lambda s, g: s + g * g, state.sum_of_squares, updates)
        updates = jax.tree.map(lambda g, s: g / (jnp.sqrt(s) + eps), updates, s)
        return updates, AdagradState(s)
    return optax.GradientTransformation(init, update)


OPTIMIZERS = {builder.__name__: builder for builder in (  # type -> builder of the same name
    sgd, momentum, nesterov, adam, adamw, rmsprop, adagrad)}


def build_optimizer(optimizer, native):
    """The optax.GradientTransformation for the spec's optimizer section; coupled weight
    decay is optax.add_decayed_weights chained before the rule."""
    rule = OPTIMIZERS[optimizer["type"]](optimizer, native)
    if optimizer["weight_decay"] and optimizer["type"] != "adamw":
        return optax.chain(optax.add_decayed_weights(optimizer["weight_decay"]), rule)
    return rule


# ---- the state in canonical form (impls/README.md, "Optimizer state") --------------------------

# An Optax state is a value: a chain's is the tuple of its transformations' states. The
# NamedTuple fields holding a params-shaped tree (or the count) are the canonical slots:
# ScaleByAdamState(count, mu, nu), TraceState(trace), ScaleByRmsState(nu),
# ScaleByRssState(sum_of_squares) (optax/_src/transform.py) and AdagradState above.
FIELDS = {"mu": "m", "nu": "v", "trace": "v", "sum_of_squares": "s", "count": "step"}


def named_states(opt_state):
    """Every NamedTuple state inside a (nested) chain's state, in order."""
    if isinstance(opt_state, tuple) and hasattr(opt_state, "_fields"):
        return [opt_state]
    if isinstance(opt_state, tuple):
        return [s for part in opt_state for s in named_states(part)]
    return []


def get_optimizer_state(optimizer, model):
    """The optimizer's state, canonical: {"step": updates so far, "<param>/<slot>": array}.

    `optimizer` is the Optax state (in JAX the optimizer's state is a value, apart from the
    GradientTransformation); its trees have the params' structure and layouts, so the
    model's canonical() reads them like the parameters.
    """
    out = {}
    for state in named_states(optimizer):
        for field, value in zip(state._fields, state):
            slot = FIELDS.get(field)
            if slot == "step":
                out["step"] = int(value)
            elif slot is not None:
                out.update({slot_key(k, slot): v for k, v in canonical(model, value).items()})
    return out


def set_optimizer_state(optimizer, model, state):
    """Set the optimizer's state from canonical form; returns the optimizer.

    Returns a new Optax state: `optimizer`'s (a template, e.g. optimizer.init(params))
    with every slot tree rebuilt from canonical values in the params' layouts (model.pytree,
    as set_params builds the params) and the count replaced.
    """
    def rebuilt(node):
        if isinstance(node, tuple) and hasattr(node, "_fields"):
            return node._replace(**{field: value_of(FIELDS[field], old)
                                    for field, old in zip(node._fields, node) if field in FIELDS})
        if isinstance(node, tuple):
            return tuple(rebuilt(part) for part in node)
        return node

    def value_of(slot, old):  # NumPy copies, as model.set_params keeps them
        if slot == "step":
            return np.array(state["step"], old.dtype)
        return pytree(model, slots_of(state, slot))
    return rebuilt(optimizer)
