"""The seven update rules, written out (PyTorch's forms: they are the canonical ones).

Each optimizer keeps its state per parameter name and `step(params, grads)`
returns the new parameters. `weight_decay` adds wd * p to the gradient (coupled,
as torch.optim does), except in AdamW, which shrinks p by lr * wd first.
"""
import numpy as np

__all__ = ["build_optimizer"]


class Optimizer:
    def __init__(self, cfg):
        self.cfg, self.state, self.t = cfg, {}, 0

    def step(self, params, grads):
        self.t += 1
        wd, new = self.cfg["weight_decay"], {}
        for name, p in params.items():
            g = grads[name]
            if wd and self.cfg["type"] != "adamw":
                g = g + wd * p
            new[name] = self.update(name, p, g)
        return new

    def buffer(self, name, key, like):
        return self.state.setdefault((name, key), np.zeros_like(like))


class SGD(Optimizer):
    def update(self, name, p, g):
        return p - self.cfg["lr"] * g


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


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Momentum, "adam": Adam,
              "adamw": Adam, "rmsprop": RMSprop, "adagrad": Adagrad}


def build_optimizer(optimizer, native):
    """NumPy is the reference: `native` changes nothing."""
    return OPTIMIZERS[optimizer["type"]](optimizer)
