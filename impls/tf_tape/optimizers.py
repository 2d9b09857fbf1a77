"""The seven update rules as Keras optimizers (PyTorch's forms: they are the canonical ones).

One builder per optimizer type, `def <type>(optimizer, native)`, with the same name,
signature, order and first docstring line (the canonical rule) as in the other three
folders. Aligned mode writes each rule as a keras.optimizers.Optimizer subclass: build() makes
the slot variables (in each parameter's dtype), update_step() applies the rule to one
variable. `weight_decay` adds wd * p to the gradient (coupled, as torch.optim does),
except in AdamW, which shrinks p by lr * wd first; Keras' own weight_decay is always
the decoupled kind. Native mode uses Keras' classes with Keras' defaults, each switched
by the pitfall it names (impls/README.md, "Native defaults"): the class (its update
rule), the float32 hyperparameters, the decoupled decay, each default value.
"""
import inspect

import keras
import tensorflow as tf

from ..canonical import native_on, share, slot_key, slots_of
from .layout import from_native, to_native

__all__ = ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad", "OPTIMIZERS",
           "build_optimizer", "get_optimizer_state", "set_optimizer_state"]


class Optimizer(keras.optimizers.Optimizer):
    """What the rules share: the learning rate as a Python float and the coupled weight decay."""

    def __init__(self, cfg):
        # A float learning rate would live in a float32 variable (floatx), rounding lr for
        # float64 models; a callable keeps the Python float, cast to each parameter's dtype.
        # cfg is settings(): keras.float32_hyperparameters and keras.weight_decay_decoupled
        # give Keras' own learning rate variable and (decoupled) weight decay instead.
        lr = cfg["lr"]
        super().__init__(learning_rate=lr if cfg["float32"] else lambda: lr,
                         weight_decay=cfg["decoupled_weight_decay"])
        self.weight_decay_coupled = cfg["coupled_weight_decay"]

    SLOTS = ()  # per-parameter state each rule keeps, made by build() in the parameter's dtype,
    #             named as the canonical slots (impls/README.md, "Optimizer state")

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        made = self.add_optimizer_variables(variables, list(self.SLOTS)) if self.SLOTS else []
        self.slot = dict(zip(self.SLOTS, made))

    def state(self, name, variable):
        return self.slot[name][self._get_variable_index(variable)]

    def lr_for(self, learning_rate, variable):
        """The learning rate as this rule multiplies it: the Python float (aligned) as it is,
        Keras' float32 variable (keras.float32_hyperparameters) cast to the variable's
        dtype, as Keras' own rules cast it."""
        if isinstance(learning_rate, float):
            return learning_rate
        return tf.cast(learning_rate, variable.dtype)

    def coupled(self, gradient, variable):
        wd = self.weight_decay_coupled
        return gradient + wd * variable if wd else gradient


class SGD(Optimizer):
    """p -= lr g. (keras.optimizers.SGD does the same; only the coupled decay is missing there.)"""

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = self.lr_for(learning_rate, variable)
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

    SLOTS = ("v",)

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = self.lr_for(learning_rate, variable)
        g = self.coupled(gradient, variable)
        v = self.state("v", variable)
        self.assign(v, self.momentum * v + g)
        step = g + self.momentum * v if self.nesterov else v
        self.assign_sub(variable, learning_rate * step)


class Adam(Optimizer):
    """m, v moving averages of g and g^2; p -= lr m_hat / (sqrt(v_hat) + eps), eps outside.

    Keras' Adam folds the bias corrections into lr and adds eps to sqrt(v) ("epsilon hat"):
    its eps acts as eps / sqrt(1 - beta2^t) in this rule, so no value of it reproduces it
    (keras/src/optimizers/adam.py; it also casts the betas through float32).
    AdamW decays p by lr * wd before the step.
    """

    def __init__(self, cfg):
        super().__init__(cfg)
        self.beta1, self.beta2, self.eps = cfg["beta1"], cfg["beta2"], cfg["eps"]
        self.weight_decay_decoupled = cfg["weight_decay"] if cfg["type"] == "adamw" else 0.0

    SLOTS = ("m", "v")

    def apply(self, grads, trainable_variables=None):
        self.made = {}  # this update's bias corrections, per dtype (corrections)
        return super().apply(grads, trainable_variables)

    def corrections(self, dtype):
        """(1 - beta1^t, 1 - beta2^t) in `dtype`, t this step's number, taken in float64 like
        Python's floats: made once per update and dtype, not once per variable (the same
        values, and tiny_transformer's traced step 14 % smaller)."""
        if dtype not in self.made:
            t = tf.cast(self.iterations + 1, "float64")
            self.made[dtype] = (tf.cast(1 - self.beta1 ** t, dtype),
                                tf.cast(1 - self.beta2 ** t, dtype))
        return self.made[dtype]

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = self.lr_for(learning_rate, variable)
        if self.weight_decay_decoupled:
            self.assign(variable, variable * (1 - learning_rate * self.weight_decay_decoupled))
        g = self.coupled(gradient, variable)
        m, v = self.state("m", variable), self.state("v", variable)
        m_new = self.beta1 * m + (1 - self.beta1) * g
        v_new = self.beta2 * v + (1 - self.beta2) * g * g
        self.assign(m, m_new)
        self.assign(v, v_new)
        m_correction, v_correction = self.corrections(variable.dtype)
        m_hat, v_hat = m_new / m_correction, v_new / v_correction  # what m and v now hold
        self.assign_sub(variable, learning_rate * m_hat / (tf.sqrt(v_hat) + self.eps))


class RMSprop(Optimizer):
    """v = rho v + (1 - rho) g^2; p -= lr g / (sqrt(v) + eps).

    Keras' RMSprop puts eps inside the square root: g / sqrt(v + eps)
    (keras/src/optimizers/rmsprop.py).
    """

    def __init__(self, cfg):
        super().__init__(cfg)
        self.rho, self.eps = cfg["rho"], cfg["eps"]

    SLOTS = ("v",)

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = self.lr_for(learning_rate, variable)
        g = self.coupled(gradient, variable)
        v = self.state("v", variable)
        self.assign(v, self.rho * v + (1 - self.rho) * g * g)
        self.assign_sub(variable, learning_rate * g / (tf.sqrt(v) + self.eps))


class Adagrad(Optimizer):
    """s += g^2; p -= lr g / (sqrt(s) + eps).

    Keras' Adagrad starts s at 0.1 and puts eps inside the square root
    (keras/src/optimizers/adagrad.py).
    """

    def __init__(self, cfg):
        super().__init__(cfg)
        self.eps, self.initial = cfg["eps"], cfg["initial_accumulator"]

    SLOTS = ("s",)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        start = keras.initializers.Constant(self.initial)  # as Keras' Adagrad fills its own
        for s in self.slot["s"]:  # 0, or 0.1 with keras.adagrad_initial_accumulator
            s.assign(start(s.shape, s.dtype))

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = self.lr_for(learning_rate, variable)
        g = self.coupled(gradient, variable)
        s = self.state("s", variable)
        self.assign_add(s, g * g)
        self.assign_sub(variable, learning_rate * g / (tf.sqrt(s) + self.eps))


# ---- native: Keras' classes, Keras' defaults for what the spec left out -----------------------

KERAS_OPTIMIZERS = {"sgd": keras.optimizers.SGD, "momentum": keras.optimizers.SGD,
                    "nesterov": keras.optimizers.SGD, "adam": keras.optimizers.Adam,
                    "adamw": keras.optimizers.AdamW, "rmsprop": keras.optimizers.RMSprop,
                    "adagrad": keras.optimizers.Adagrad}
KERAS_NAMES = {"lr": "learning_rate", "beta1": "beta_1", "beta2": "beta_2", "eps": "epsilon",
               "rho": "rho", "momentum": "momentum"}
# spec key -> (the pitfall that keeps Keras' default when the spec leaves it out, the types)
KERAS_DEFAULTS = {"lr": ("keras.default_lr", ("adam", "adamw", "rmsprop", "adagrad")),
                  "eps": ("keras.default_epsilon", ("adam", "adamw", "rmsprop", "adagrad")),
                  "rho": ("keras.rmsprop_default_rho", ("rmsprop",)),
                  "weight_decay": ("keras.adamw_default_weight_decay", ("adamw",))}


def keras_default(cfg, key):
    """Keras' default for a spec key, read from its class's signature (never a copy)."""
    kind = KERAS_OPTIMIZERS[cfg["type"]]
    return inspect.signature(kind).parameters[KERAS_NAMES.get(key, key)].default


def settings(cfg, native):
    """The spec's hyperparameters as this file uses them: Keras' default for an unwritten key
    whose pitfall is on; where the weight decay goes (keras.weight_decay_decoupled: Keras'
    decoupled p -= lr wd p, for every type); whether Keras' float32 hyperparameters apply."""
    out = dict(cfg)
    for key, (pitfall, types) in KERAS_DEFAULTS.items():
        if cfg["type"] in types and key not in cfg["explicit"] and native_on(native, pitfall):
            out[key] = keras_default(cfg, key)
    decoupled = cfg["type"] != "adamw" and native_on(native, "keras.weight_decay_decoupled")
    wd = out["weight_decay"] if cfg["type"] != "adamw" else 0.0
    keras_start = (cfg["type"] == "adagrad"
                   and native_on(native, "keras.adagrad_initial_accumulator"))
    out.update(float32=native_on(native, "keras.float32_hyperparameters"),
               decoupled_weight_decay=wd if decoupled and wd else None,
               coupled_weight_decay=0.0 if decoupled else wd,
               initial_accumulator=keras_default(cfg, "initial_accumulator_value")
               if keras_start else 0.0)
    return out


def keras_optimizer(s):
    """Keras' own class for settings `s`. Without keras.float32_hyperparameters the learning
    rate and Adam's betas go in as float64 tensors: Keras casts Python floats with ops.cast,
    which takes them through float32 (adam.py update_step)."""
    kind, exact = KERAS_OPTIMIZERS[s["type"]], not s["float32"]
    accepted = inspect.signature(kind).parameters
    kwargs = {KERAS_NAMES[k]: s[k] for k in KERAS_NAMES if k in s and KERAS_NAMES[k] in accepted}
    if exact:
        lr = s["lr"]
        kwargs["learning_rate"] = lambda: tf.constant(lr, "float64")
        kwargs.update({k: tf.constant(kwargs[k], "float64") for k in ("beta_1", "beta_2")
                       if k in kwargs})
    if s["type"] in ("momentum", "nesterov"):  # what makes them momentum methods
        kwargs["nesterov"] = s["type"] == "nesterov"
    if s["type"] == "adamw" or s["decoupled_weight_decay"] is not None:
        kwargs["weight_decay"] = s["weight_decay"]
    if s["type"] == "adagrad":
        kwargs["initial_accumulator_value"] = s["initial_accumulator"]
    if s["coupled_weight_decay"]:
        kind = coupled(kind, s["coupled_weight_decay"])
    return kind(**kwargs)


def coupled(kind, wd):
    """Keras' class `kind` with the canonical coupled decay (wd p added to the gradient)."""
    class Coupled(kind):
        def update_step(self, gradient, variable, learning_rate):
            super().update_step(gradient + wd * variable, variable, learning_rate)
    return Coupled


def keras_or_aligned(cfg, native, pitfall, aligned):
    """Keras' class if `pitfall` (its update rule) is on, else `aligned`, with settings()."""
    s = settings(cfg, native)
    return keras_optimizer(s) if native_on(native, pitfall) else aligned(s)


# ---- one builder per type ---------------------------------------------------------------------

def sgd(optimizer, native):
    """p -= lr g, g = dL/dp + wd p

    SGD above; native: keras.optimizers.SGD, the same rule with Keras' decoupled decay
    (keras.weight_decay_decoupled).
    """
    return keras_or_aligned(optimizer, native, "keras.weight_decay_decoupled", SGD)


def momentum(optimizer, native):
    """v = mu v + g; p -= lr v, g = dL/dp + wd p

    Momentum above; native (keras.sgd_momentum): keras.optimizers.SGD(momentum=mu),
    m = mu m - lr g, mu cast through float32.
    """
    return keras_or_aligned(optimizer, native, "keras.sgd_momentum", Momentum)


def nesterov(optimizer, native):
    """v = mu v + g; p -= lr (g + mu v), g = dL/dp + wd p

    Momentum above, stepping along g + mu v; native (keras.sgd_momentum):
    keras.optimizers.SGD(nesterov=True).
    """
    return keras_or_aligned(optimizer, native, "keras.sgd_momentum", Momentum)


def adam(optimizer, native):
    """m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr m_hat / (sqrt(v_hat) + eps), g = dL/dp + wd p

    Adam above; native (keras.adam_epsilon_hat): keras.optimizers.Adam, with its "epsilon hat".
    """
    return keras_or_aligned(optimizer, native, "keras.adam_epsilon_hat", Adam)


def adamw(optimizer, native):
    """p *= 1 - lr wd; then m, v and p -= lr m_hat / (sqrt(v_hat) + eps) as Adam's, with g = dL/dp

    Adam above, with the decoupled decay; native (keras.adam_epsilon_hat): keras.optimizers.AdamW.
    """
    return keras_or_aligned(optimizer, native, "keras.adam_epsilon_hat", Adam)


def rmsprop(optimizer, native):
    """v = rho v + (1-rho) g^2; p -= lr g / (sqrt(v) + eps), g = dL/dp + wd p

    RMSprop above; native (keras.rmsprop_eps_in_sqrt): keras.optimizers.RMSprop, eps inside
    the root.
    """
    return keras_or_aligned(optimizer, native, "keras.rmsprop_eps_in_sqrt", RMSprop)


def adagrad(optimizer, native):
    """s += g^2; p -= lr g / (sqrt(s) + eps), g = dL/dp + wd p

    Adagrad above; native (keras.adagrad_eps_in_sqrt): keras.optimizers.Adagrad, eps inside
    the root; s starts at Keras' 0.1 with keras.adagrad_initial_accumulator.
    """
    return keras_or_aligned(optimizer, native, "keras.adagrad_eps_in_sqrt", Adagrad)


OPTIMIZERS = {builder.__name__: builder for builder in (  # type -> builder of the same name
    sgd, momentum, nesterov, adam, adamw, rmsprop, adagrad)}


def build_optimizer(optimizer, native):
    """The Keras optimizer for the spec's optimizer section."""
    return OPTIMIZERS[optimizer["type"]](optimizer, native)


# ---- the state in canonical form (impls/README.md, "Optimizer state") --------------------------

# Keras' own classes keep one slot variable per model variable in lists that update_step
# indexes with _get_variable_index (keras/src/optimizers/sgd.py:93, adam.py:93,
# rmsprop.py:97, adagrad.py:74); AdamW is an Adam. The aligned rules above name theirs
# canonically in `slot`.
KERAS_SLOTS = ((keras.optimizers.SGD, {"v": "momentums"}),
               (keras.optimizers.Adam, {"m": "_momentums", "v": "_velocities"}),
               (keras.optimizers.RMSprop, {"v": "_velocities"}),
               (keras.optimizers.Adagrad, {"s": "_accumulators"}))


def slot_variables(optimizer):
    """{canonical slot: [slot variable per model variable]} (SGD without momentum: none)."""
    if isinstance(optimizer, Optimizer):
        return optimizer.slot
    names = next(names for cls, names in KERAS_SLOTS if isinstance(optimizer, cls))
    return {slot: getattr(optimizer, attr) for slot, attr in names.items()
            if getattr(optimizer, attr)}


def momentum_lr(optimizer, slot):
    """The lr in Keras' m = -lr v (a tensor), or None where a slot means what the canonical
    one does.

    keras.optimizers.SGD keeps m = mu m - lr g and adds it, where the canonical v = mu v + g
    is subtracted times lr; the lr is the one Keras holds (its float32 rounding then shows
    in the parameters it moves, where it acts). Every other slot is the canonical quantity
    (Keras' Adagrad accumulator starts at 0.1 instead of 0: another rule, not another
    meaning, so it shows in lockstep's first step).
    """
    if isinstance(optimizer, keras.optimizers.SGD) and slot == "v":
        return tf.convert_to_tensor(optimizer.learning_rate)
    return None


def state_tensors(optimizer, model):
    """The canonical optimizer state as tensors (iterations as "step"): what
    get_optimizer_state reads, and what a tf.function can return in one call."""
    out = {"step": tf.convert_to_tensor(optimizer.iterations)}
    for slot, slots in slot_variables(optimizer).items():
        lr = momentum_lr(optimizer, slot)
        for layer in model.spec["layers"]:
            native = {path: slots[optimizer._get_variable_index(v)]
                      for path, v in model.variables[layer["name"]].items() if v.trainable}
            for k, value in from_native(layer, native).items():
                value = tf.convert_to_tensor(value)
                out[slot_key(f"{layer['name']}.{k}", slot)] = (
                    value if lr is None else value / -tf.cast(lr, value.dtype))  # v = -m / lr
    return out


def get_optimizer_state(optimizer, model):
    """The optimizer's state, canonical: {"step": updates so far, "<param>/<slot>": array}.

    Slots share their variable's layout, so layout.py's from_native converts them like the
    parameters (GRU gates reordered, attention heads merged); the count is iterations.
    """
    out = {k: v.numpy() for k, v in state_tensors(optimizer, model).items()}
    return dict(out, step=int(out["step"]))


def set_optimizer_state(optimizer, model, state):
    """Set the optimizer's state from canonical form; returns the optimizer.

    Each slot variable is assigned its canonical value in the variable's layout
    (layout.py's to_native), and iterations the count; NumPy values or tensors, so that a
    tf.function can set the whole state in one call.
    """
    optimizer.iterations.assign(state["step"])
    for slot, slots in slot_variables(optimizer).items():
        lr = momentum_lr(optimizer, slot)
        values = slots_of(state, slot)
        for layer in model.spec["layers"]:
            local = share(values, layer["name"])
            if lr is not None:
                local = {k: -tf.cast(lr, v.dtype) * v for k, v in local.items()}  # m = -lr v
            variables = model.variables[layer["name"]]
            for path, value in to_native(layer, local).items():
                slots[optimizer._get_variable_index(variables[path])].assign(value)
    return optimizer
