"""The seven update rules as Keras optimizers (PyTorch's forms: they are the canonical ones).

Aligned mode writes each rule as a keras.optimizers.Optimizer subclass: build() makes
the slot variables (in each parameter's dtype), update_step() applies the rule to one
variable. `weight_decay` adds wd * p to the gradient (coupled, as torch.optim does),
except in AdamW, which shrinks p by lr * wd first; Keras' own weight_decay is always
the decoupled kind. Native mode uses Keras' classes with Keras' defaults.
"""
import keras
import tensorflow as tf

__all__ = ["build_optimizer"]


class Optimizer(keras.optimizers.Optimizer):
    """What the rules share: the learning rate as a Python float and the coupled weight decay."""

    def __init__(self, cfg):
        # A float learning rate would live in a float32 variable (floatx), rounding lr for
        # float64 models; a callable keeps the Python float, cast to each parameter's dtype.
        super().__init__(learning_rate=lambda: cfg["lr"])
        self.weight_decay_coupled = 0.0 if cfg["type"] == "adamw" else cfg["weight_decay"]

    SLOTS = ()  # per-parameter state each rule keeps, made by build() in the parameter's dtype

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        made = self.add_optimizer_variables(variables, list(self.SLOTS)) if self.SLOTS else []
        self.slot = dict(zip(self.SLOTS, made))

    def state(self, name, variable):
        return self.slot[name][self._get_variable_index(variable)]

    def coupled(self, gradient, variable):
        wd = self.weight_decay_coupled
        return gradient + wd * variable if wd else gradient


class SGD(Optimizer):
    """p -= lr g. (keras.optimizers.SGD does the same; only the coupled decay is missing there.)"""

    def update_step(self, gradient, variable, learning_rate):
        self.assign_sub(variable, learning_rate * self.coupled(gradient, variable))


class Momentum(Optimizer):
    """v = mu v + g; p -= lr v. Nesterov steps along g + mu v instead.

    Keras' SGD keeps m = mu m - lr g and adds m: equal only while lr stays constant,
    and it casts mu with ops.cast, which takes a Python float through float32
    (keras/src/optimizers/sgd.py).
    """

    def __init__(self, cfg):
        super().__init__(cfg)
        self.momentum, self.nesterov = cfg["momentum"], cfg["type"] == "nesterov"

    SLOTS = ("velocity",)

    def update_step(self, gradient, variable, learning_rate):
        g = self.coupled(gradient, variable)
        v = self.state("velocity", variable)
        self.assign(v, self.momentum * v + g)
        step = g + self.momentum * v if self.nesterov else v
        self.assign_sub(variable, learning_rate * step)


class Adam(Optimizer):
    """m, v moving averages of g and g^2; p -= lr m_hat / (sqrt(v_hat) + eps), eps outside.

    Keras' Adam folds the bias corrections into lr and adds eps to sqrt(v) ("epsilon hat"):
    its eps acts as eps * sqrt(1 - beta2^t), so no value of it reproduces this rule
    (keras/src/optimizers/adam.py; it also casts the betas through float32).
    AdamW decays p by lr * wd before the step.
    """

    def __init__(self, cfg):
        super().__init__(cfg)
        self.beta1, self.beta2, self.eps = cfg["beta1"], cfg["beta2"], cfg["eps"]
        self.weight_decay_decoupled = cfg["weight_decay"] if cfg["type"] == "adamw" else 0.0

    SLOTS = ("m", "v")

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        if self.weight_decay_decoupled:
            self.assign(variable, variable * (1 - learning_rate * self.weight_decay_decoupled))
        g = self.coupled(gradient, variable)
        m, v = self.state("m", variable), self.state("v", variable)
        self.assign(m, self.beta1 * m + (1 - self.beta1) * g)
        self.assign(v, self.beta2 * v + (1 - self.beta2) * g * g)
        t = tf.cast(self.iterations + 1, "float64")  # corrections in float64, like Python's floats
        m_hat = m / tf.cast(1 - self.beta1 ** t, dtype)
        v_hat = v / tf.cast(1 - self.beta2 ** t, dtype)
        self.assign_sub(variable, learning_rate * m_hat / (tf.sqrt(v_hat) + self.eps))


class RMSprop(Optimizer):
    """v = rho v + (1 - rho) g^2; p -= lr g / (sqrt(v) + eps).

    Keras' RMSprop puts eps inside the square root: g / sqrt(v + eps)
    (keras/src/optimizers/rmsprop.py).
    """

    def __init__(self, cfg):
        super().__init__(cfg)
        self.rho, self.eps = cfg["rho"], cfg["eps"]

    SLOTS = ("velocity",)

    def update_step(self, gradient, variable, learning_rate):
        g = self.coupled(gradient, variable)
        v = self.state("velocity", variable)
        self.assign(v, self.rho * v + (1 - self.rho) * g * g)
        self.assign_sub(variable, learning_rate * g / (tf.sqrt(v) + self.eps))


class Adagrad(Optimizer):
    """s += g^2; p -= lr g / (sqrt(s) + eps).

    Keras' Adagrad starts s at 0.1 and puts eps inside the square root
    (keras/src/optimizers/adagrad.py).
    """

    def __init__(self, cfg):
        super().__init__(cfg)
        self.eps = cfg["eps"]

    SLOTS = ("accumulator",)

    def update_step(self, gradient, variable, learning_rate):
        g = self.coupled(gradient, variable)
        s = self.state("accumulator", variable)
        self.assign_add(s, g * g)
        self.assign_sub(variable, learning_rate * g / (tf.sqrt(s) + self.eps))


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Momentum, "adam": Adam,
              "adamw": Adam, "rmsprop": RMSprop, "adagrad": Adagrad}


# ---- native: Keras' classes, Keras' defaults for what the spec left out -----------------------

KERAS_OPTIMIZERS = {"sgd": keras.optimizers.SGD, "momentum": keras.optimizers.SGD,
                    "nesterov": keras.optimizers.SGD, "adam": keras.optimizers.Adam,
                    "adamw": keras.optimizers.AdamW, "rmsprop": keras.optimizers.RMSprop,
                    "adagrad": keras.optimizers.Adagrad}
KERAS_NAMES = {"lr": "learning_rate", "beta1": "beta_1", "beta2": "beta_2", "eps": "epsilon",
               "rho": "rho", "weight_decay": "weight_decay", "momentum": "momentum"}


def keras_optimizer(cfg):
    kwargs = {KERAS_NAMES[k]: cfg[k] for k in cfg["explicit"] if k in KERAS_NAMES}
    if cfg["type"] in ("momentum", "nesterov"):  # what makes them momentum methods, always passed
        kwargs.update(momentum=cfg["momentum"], nesterov=cfg["type"] == "nesterov")
    return KERAS_OPTIMIZERS[cfg["type"]](**kwargs)


def build_optimizer(optimizer, native):
    return keras_optimizer(optimizer) if native else OPTIMIZERS[optimizer["type"]](optimizer)
