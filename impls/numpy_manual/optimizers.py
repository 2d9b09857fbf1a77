"""The seven update rules, written out (PyTorch's forms: they are the canonical ones).

One builder per optimizer type, `def <type>(optimizer, native)`, with the same name,
signature, order and first docstring line (the canonical rule) as in the other three
folders. Each optimizer keeps its state per parameter name and `step(params, grads)`
returns the new parameters. `weight_decay` adds wd * p to the gradient (coupled,
as torch.optim does), except in AdamW, which shrinks p by lr * wd first.
NumPy is the reference: `native` changes nothing.
"""
import numpy as np

from ..canonical import slot_key

__all__ = ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad", "OPTIMIZERS",
           "build_optimizer", "get_optimizer_state", "set_optimizer_state"]


class Optimizer:
    def __init__(self, cfg):
        self.cfg, self.state, self.t = cfg, {}, 0

    def step(self, params, grads, in_place=False):
        """-> the new params. `in_place`: the params and gradients are the training loop's own,
        to overwrite (SGD then makes no new arrays)."""
        self.t += 1
        wd, new = self.cfg["weight_decay"], {}
        for name, p in params.items():
            g = grads[name]
            if wd and self.cfg["type"] != "adamw":
                g = g + wd * p
            new[name] = self.update_in_place(name, p, g) if in_place else self.update(name, p, g)
        return new

    def update_in_place(self, name, p, g):
        return self.update(name, p, g)  # a rule with state makes new arrays

    def buffer(self, name, key, like):
        return self.state.setdefault((name, key), np.zeros_like(like))


class SGD(Optimizer):
    def update(self, name, p, g):
        return p - self.cfg["lr"] * g

    def update_in_place(self, name, p, g):
        g *= self.cfg["lr"]  # update()'s two roundings, in p's and g's own memory: a new
        p -= g               # 784 x 300 array took twice as long as the update itself
        return p


class Momentum(Optimizer):
    """v = mu v + g; p -= lr v. Nesterov steps along g + mu v instead."""

    def update(self, name, p, g):
        mu = self.cfg["momentum"]
        v = self.state[(name, "v")] = mu * self.buffer(name, "v", p) + g
        step = g + mu * v if self.cfg["type"] == "nesterov" else v
        return p - self.cfg["lr"] * step


class Adam(Optimizer):
    """m, v moving averages of g and g^2; p -= lr m_hat / (sqrt(v_hat) + eps), eps outside."""

    def update(self, name, p, g):
        c = self.cfg
        if c["type"] == "adamw":
            p = p * (1 - c["lr"] * c["weight_decay"])  # decoupled decay, before the step
        m = self.state[(name, "m")] = c["beta1"] * self.buffer(name, "m", p) + (1 - c["beta1"]) * g
        v = self.state[(name, "v")] = c["beta2"] * self.buffer(name, "v", p) + (1 - c["beta2"]) * g * g
        m_hat = m / (1 - c["beta1"] ** self.t)
        v_hat = v / (1 - c["beta2"] ** self.t)
        return p - c["lr"] * m_hat / (np.sqrt(v_hat) + c["eps"])


class RMSprop(Optimizer):
    """v = rho v + (1 - rho) g^2; p -= lr g / (sqrt(v) + eps)."""

    def update(self, name, p, g):
        c = self.cfg
        v = self.state[(name, "v")] = c["rho"] * self.buffer(name, "v", p) + (1 - c["rho"]) * g * g
        return p - c["lr"] * g / (np.sqrt(v) + c["eps"])


class Adagrad(Optimizer):
    """s += g^2; p -= lr g / (sqrt(s) + eps)."""

    def update(self, name, p, g):
        s = self.state[(name, "s")] = self.buffer(name, "s", p) + g * g
        return p - self.cfg["lr"] * g / (np.sqrt(s) + self.cfg["eps"])


def sgd(optimizer, native):
    """p -= lr g, g = dL/dp + wd p

    SGD above.
    """
    return SGD(optimizer)


def momentum(optimizer, native):
    """v = mu v + g; p -= lr v, g = dL/dp + wd p

    Momentum above.
    """
    return Momentum(optimizer)


def nesterov(optimizer, native):
    """v = mu v + g; p -= lr (g + mu v), g = dL/dp + wd p

    Momentum above, stepping along g + mu v.
    """
    return Momentum(optimizer)


def adam(optimizer, native):
    """m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr m_hat / (sqrt(v_hat) + eps), g = dL/dp + wd p

    Adam above; m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t).
    """
    return Adam(optimizer)


def adamw(optimizer, native):
    """p *= 1 - lr wd; then m, v and p -= lr m_hat / (sqrt(v_hat) + eps) as Adam's, with g = dL/dp

    Adam above, with the decoupled decay.
    """
    return Adam(optimizer)


def rmsprop(optimizer, native):
    """v = rho v + (1-rho) g^2; p -= lr g / (sqrt(v) + eps), g = dL/dp + wd p

    RMSprop above.
    """
    return RMSprop(optimizer)


def adagrad(optimizer, native):
    """s += g^2; p -= lr g / (sqrt(s) + eps), g = dL/dp + wd p

    Adagrad above.
    """
    return Adagrad(optimizer)


OPTIMIZERS = {builder.__name__: builder for builder in (  # type -> builder of the same name
    sgd, momentum, nesterov, adam, adamw, rmsprop, adagrad)}


def build_optimizer(optimizer, native):
    """The optimizer for the spec's optimizer section."""
    return OPTIMIZERS[optimizer["type"]](optimizer, native)


# ---- the state in canonical form (impls/README.md, "Optimizer state") --------------------------

def get_optimizer_state(optimizer, model):
    """The optimizer's state, canonical: {"step": updates so far, "<param>/<slot>": array}.

    The slots are kept under their canonical names already ("v", "m", "s"), and the
    parameters in the canonical layout: nothing converts. Nor is anything copied: every
    step replaces the slot arrays, none is written in place.
    """
    state = {"step": optimizer.t}
    state.update({slot_key(name, slot): value for (name, slot), value in optimizer.state.items()})
    return state


def set_optimizer_state(optimizer, model, state):
    """Set the optimizer's state from canonical form; returns the optimizer.

    Optimizer.t and each slot (never written in place: each step makes new arrays).
    """
    optimizer.t = int(state["step"])
    optimizer.state = {tuple(k.rsplit("/", 1)): np.asarray(v)
                       for k, v in state.items() if k != "step"}
    return optimizer
