"""The seven update rules as Optax GradientTransformations.

Aligned (the default): each Optax alias below was checked against the canonical rule
(PyTorch's, written out in numpy_manual/optimizers.py) and is given the arguments that
make it compute the same math; Adagrad needs a transformation of its own. Coupled
`weight_decay` (g += wd * p, as torch.optim) is optax.add_decayed_weights chained before
the rule; AdamW's decoupled decay is part of optax.adamw.

Native: the same aliases with Optax's defaults for every setting the spec did not write.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["build_optimizer"]


def chosen(cfg, native, **names):
    """{optax argument: spec value}; native mode passes only the values the user wrote."""
    return {arg: cfg[key] for arg, key in names.items() if not native or key in cfg["explicit"]}


def sgd(cfg, native):
    return optax.sgd(cfg["lr"])


def momentum(cfg, native):
    """optax.trace keeps t = mu t + g and steps along t, or along g + mu t with nesterov:
    PyTorch's forms (optax/transforms/_accumulation.py). mu is always passed, even in
    native mode: it defines the rule."""
    return optax.sgd(cfg["lr"], momentum=cfg["momentum"], nesterov=cfg["type"] == "nesterov")


def adam(cfg, native):
    """m_hat / (sqrt(v_hat) + eps), eps outside the root and eps_root=0: PyTorch's Adam."""
    return optax.adam(cfg["lr"], **chosen(cfg, native, b1="beta1", b2="beta2", eps="eps"))


def adamw(cfg, native):
    """Optax adds wd * p to the Adam step and scales the sum by lr:
    p - lr (step + wd p) = p (1 - lr wd) - lr step, PyTorch's decay-then-step. Optax's
    default weight_decay is 1e-4, PyTorch's 1e-2."""
    return optax.adamw(cfg["lr"], **chosen(cfg, native, b1="beta1", b2="beta2", eps="eps",
                                           weight_decay="weight_decay"))


def rmsprop(cfg, native):
    """Optax's defaults put eps inside the root and decay 0.9; PyTorch uses sqrt(v) + eps and
    alpha 0.99. Both start the average at 0 (initial_scale=0)."""
    if native:
        return optax.rmsprop(cfg["lr"], **chosen(cfg, native, decay="rho", eps="eps"))
    return optax.rmsprop(cfg["lr"], decay=cfg["rho"], eps=cfg["eps"], eps_in_sqrt=False)


def adagrad(cfg, native):
    """optax.adagrad starts the sum at 0.1 and puts eps (1e-7) inside the root, and no
    argument turns the latter off: the canonical rule is written out below."""
    if native:
        return optax.adagrad(cfg["lr"], **chosen(cfg, native, eps="eps"))
    return optax.chain(scale_by_adagrad(cfg["eps"]), optax.scale_by_learning_rate(cfg["lr"]))


class AdagradState(NamedTuple):
    sum_of_squares: optax.Updates


def scale_by_adagrad(eps):
    """s += g^2; g / (sqrt(s) + eps), s starting at 0: PyTorch's Adagrad, before the lr."""

    def init(params):
        return AdagradState(jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        s = jax.tree.map(lambda s, g: s + g * g, state.sum_of_squares, updates)
        updates = jax.tree.map(lambda g, s: g / (jnp.sqrt(s) + eps), updates, s)
        return updates, AdagradState(s)
    return optax.GradientTransformation(init, update)


RULES = {"sgd": sgd, "momentum": momentum, "nesterov": momentum, "adam": adam,
         "adamw": adamw, "rmsprop": rmsprop, "adagrad": adagrad}


def build_optimizer(optimizer, native):
    """The optax.GradientTransformation for the spec's optimizer section."""
    rule = RULES[optimizer["type"]](optimizer, native)
    if optimizer["weight_decay"] and optimizer["type"] != "adamw":
        return optax.chain(optax.add_decayed_weights(optimizer["weight_decay"]), rule)
    return rule
