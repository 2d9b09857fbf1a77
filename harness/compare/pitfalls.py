"""The framework pitfalls: defaults and forms that make a native-defaults run part from the
canonical math, each a switch of the implementations, and which of them a spec runs into.

A pitfall's name is the switch the implementations read (`canonical.native_on(native,
name)`, listed in impls/README.md, "Native defaults"): a native-defaults run turns every
one on; `crossgrad pitfalls` turns on one at a time, everything else aligned, on a
minimal spec (harness/ablation/cases.py), and proves it matters; `run` names, beside a
native curve that parts, the pitfalls in play that alone move it (harness/ablation/causes.py).
Sources were read in the installed versions: torch 2.13.0, Keras 3.15.1 with TensorFlow
2.21.0, jax 0.10.2, optax 0.2.8; Flax is not installed: its rows were read in Flax 0.12.8
(flax/linen/normalization.py, pooling.py) and are emulated in impls/jax_grad/layers.py.
"""
from dataclasses import dataclass
from typing import Callable

from ..spec.catalog import walk


@dataclass(frozen=True)
class Pitfall:
    name: str           # the implementations' switch, "<library>.<what>"
    framework: str      # the worker that has it: torch, tensorflow, jax
    what: str           # what the framework does, in one line
    source: str         # where, in the installed version (file:line) or its docs
    fix: str            # what the aligned implementation does instead
    applies: Callable   # spec -> bool: a native-defaults run of the spec runs into it
    default: tuple = None  # (spec key, {optimizer type: the framework's value}) for a default


# ---- when a pitfall applies --------------------------------------------------------------------

def _opt(*types):
    return lambda s: s.optimizer["type"] in types


def _clip(s):
    return s.train["clip_norm"] is not None


def _loss(*types):
    return lambda s: s.loss["type"] in types


def _layer(kind, unwritten=None):
    """A layer of type `kind` (with `unwritten` not in its explicit keys)."""
    return lambda s: any(l["type"] == kind and unwritten not in l["explicit"]
                         for l in walk(s.layers))


def _f64(rule):
    return lambda s: s.dtype == "float64" and rule(s)


def _unwritten(key, values):
    """The spec leaves `key` out and its default differs from the framework's for its type."""
    def applies(s):
        opt = s.optimizer
        return (opt["type"] in values and key not in opt["explicit"]
                and opt[key] != values[opt["type"]])
    return applies


def _default(name, framework, key, values, what, source):
    return Pitfall(name, framework, what, source,
                   f"pass the spec's {key} always", _unwritten(key, values), (key, values))


def _padded_avgpool(s):
    return any(l["type"] == "avgpool2d" and any(map(any, l["pads"])) for l in walk(s.layers))


def _avgpool_wider_than_input(s):
    """A 'same' average pool whose window is wider than its input (the case TensorFlow's
    AvgPoolGrad gets wrong; explicit padding goes through another op)."""
    return any(l["type"] == "avgpool2d" and l["padding"] == "same"
               and any(k > n for k, n in zip(l["pool_size"], l["in_shape"][:2]))
               for l in walk(s.layers))


def _sum_of_elementwise(s):
    return (s.loss["type"] in ("mse", "binary_cross_entropy", "binary_cross_entropy_with_logits")
            and s.loss["reduction"] == "sum" and s.out_shape[-1] > 1)


KERAS_OPT = "keras/src/optimizers/"
ADAPTIVE = ("adam", "adamw", "rmsprop", "adagrad")

CATALOG = (
    # ---- PyTorch ----
    _default("torch.default_lr", "torch", "lr",
             {"sgd": 1e-3, "momentum": 1e-3, "nesterov": 1e-3, "adam": 1e-3, "adamw": 1e-3},
             "torch.optim.SGD, Adam and AdamW default to lr=1e-3 (the spec's default is 0.01); "
             "torch's other defaults are the spec's",
             "torch/optim/sgd.py:32, adam.py:38, adamw.py:24"),
    Pitfall("torch.clip_grad_norm_eps", "torch",
            "clip_grad_norm_ scales by max_norm / (norm + 1e-6), not min(1, max_norm / norm)",
            "torch/nn/utils/clip_grad.py:164",
            "scale the gradients by min(1, c / |g|) by hand", _clip),
    Pitfall("torch.bce_clamp", "torch",
            "nn.BCELoss clamps each log at -100 (and its gradient's p(1 - p) at 1e-12)",
            "torch/nn/modules/loss.py:668 (BCELoss docs); aten/src/ATen/native/Loss.cpp",
            "the exact formula, -(y log p + (1 - y) log(1 - p))",
            _loss("binary_cross_entropy")),
    # ---- Keras (TensorFlow) ----
    _default("keras.default_lr", "tensorflow", "lr", {t: 1e-3 for t in ADAPTIVE},
             "Keras' Adam, AdamW, RMSprop and Adagrad default to learning_rate=0.001",
             KERAS_OPT + "adam.py:45, adamw.py:55, rmsprop.py:55, adagrad.py:37"),
    _default("keras.default_epsilon", "tensorflow", "eps", {t: 1e-7 for t in ADAPTIVE},
             "Keras' epsilon defaults to 1e-7 (the spec's: 1e-8; Adagrad 1e-10)",
             KERAS_OPT + "adam.py:48, adamw.py:59, rmsprop.py:58, adagrad.py:39"),
    _default("keras.rmsprop_default_rho", "tensorflow", "rho", {"rmsprop": 0.9},
             "Keras' RMSprop defaults to rho=0.9 (PyTorch's alpha: 0.99)",
             KERAS_OPT + "rmsprop.py:56"),
    _default("keras.adamw_default_weight_decay", "tensorflow", "weight_decay",
             {"adamw": 0.004}, "Keras' AdamW defaults to weight_decay=0.004 (PyTorch's: 0.01)",
             KERAS_OPT + "adamw.py:56"),
    Pitfall("keras.float32_hyperparameters", "tensorflow",
            "Keras keeps a float learning rate in a float32 variable, and ops.cast takes Python "
            "floats (Adam's betas, SGD's momentum, the weight decay) through float32",
            KERAS_OPT + "base_optimizer.py:185-188, adam.py:107-111, sgd.py:104",
            "the learning rate as a callable; hyperparameters in the variable's dtype",
            _f64(lambda s: True)),
    Pitfall("keras.weight_decay_decoupled", "tensorflow",
            "Keras' weight_decay is decoupled, p -= lr wd p (torch.optim adds wd p to the "
            "gradient, except AdamW)", KERAS_OPT + "base_optimizer.py:952-959",
            "add wd p to the gradient in the update rule",
            lambda s: bool(s.optimizer["weight_decay"]) and s.optimizer["type"] != "adamw"),
    Pitfall("keras.sgd_momentum", "tensorflow",
            "Keras' SGD keeps m = mu m - lr g and casts mu through float32",
            KERAS_OPT + "sgd.py:104-111", "v = mu v + g; p -= lr v, in a Keras Optimizer "
            "subclass", _opt("momentum", "nesterov")),
    Pitfall("keras.adam_epsilon_hat", "tensorflow",
            "Keras' Adam adds epsilon to sqrt(v) before the bias correction ('epsilon hat'), "
            "so no epsilon reproduces PyTorch's", KERAS_OPT + "adam.py:117, 132-136",
            "m_hat / (sqrt(v_hat) + eps), in a Keras Optimizer subclass", _opt("adam", "adamw")),
    Pitfall("keras.rmsprop_eps_in_sqrt", "tensorflow",
            "Keras' RMSprop divides by sqrt(v + eps), not sqrt(v) + eps",
            KERAS_OPT + "rmsprop.py:143-146", "g / (sqrt(v) + eps), in a Keras Optimizer "
            "subclass", _opt("rmsprop")),
    Pitfall("keras.adagrad_eps_in_sqrt", "tensorflow",
            "Keras' Adagrad divides by sqrt(s + eps), not sqrt(s) + eps",
            KERAS_OPT + "adagrad.py:85-91", "g / (sqrt(s) + eps), in a Keras Optimizer "
            "subclass", _opt("adagrad")),
    Pitfall("keras.adagrad_initial_accumulator", "tensorflow",
            "Keras' Adagrad starts its accumulator at 0.1 (PyTorch's at 0)",
            KERAS_OPT + "adagrad.py:38, 73", "start the accumulator at 0", _opt("adagrad")),
    Pitfall("keras.batchnorm_momentum", "tensorflow",
            "BatchNormalization's momentum=0.99 weighs the old running value (the spec's 0.1 "
            "the new batch value)", "keras/src/layers/normalization/batch_normalization.py:163",
            "pass momentum = 1 - the spec's", _layer("batchnorm", "momentum")),
    Pitfall("keras.batchnorm_epsilon", "tensorflow",
            "BatchNormalization's epsilon defaults to 1e-3 (PyTorch's: 1e-5)",
            "keras/src/layers/normalization/batch_normalization.py:164",
            "pass the spec's eps", _layer("batchnorm", "eps")),
    Pitfall("keras.batchnorm_biased_variance", "tensorflow",
            "BatchNormalization's moving variance takes the biased batch variance (PyTorch's "
            "the unbiased)", "keras/src/layers/normalization/batch_normalization.py:385-391",
            "a BatchNormalization subclass updating with var n / (n - 1)", _layer("batchnorm")),
    Pitfall("keras.layernorm_epsilon", "tensorflow",
            "LayerNormalization's epsilon defaults to 1e-3 (PyTorch's: 1e-5)",
            "keras/src/layers/normalization/layer_normalization.py:108",
            "pass the spec's eps", _layer("layernorm", "eps")),
    Pitfall("keras.leaky_relu_slope", "tensorflow",
            "keras.layers.LeakyReLU's negative_slope defaults to 0.3 (PyTorch's: 0.01)",
            "keras/src/layers/activations/leaky_relu.py:38",
            "pass the spec's alpha", _layer("leaky_relu", "alpha")),
    Pitfall("tensorflow.leaky_relu_float32_alpha", "tensorflow",
            "tf.nn.leaky_relu (Keras' LeakyReLU) holds its slope in a float32 op attribute",
            "tensorflow/python/ops/nn_ops.py:3699; keras/src/backend/tensorflow/nn.py:105",
            "tf.where(x > 0, x, alpha x) with alpha in x's dtype", _f64(_layer("leaky_relu"))),
    Pitfall("tensorflow.gelu_float32_constant", "tensorflow",
            "tf.nn.gelu (Keras' 'gelu') casts 1/sqrt(2) with math_ops.cast, through float32",
            "tensorflow/python/ops/nn_ops.py:3756",
            "0.5 x (1 + erf(x / sqrt(2))) with the constant in x's dtype", _f64(_layer("gelu"))),
    Pitfall("keras.attention_float32_scale", "tensorflow",
            "MultiHeadAttention casts 1/sqrt(key_dim) with ops.cast, through float32",
            "keras/src/layers/attention/multi_head_attention.py:584",
            "scores / sqrt(key_dim) in the model's dtype (a _compute_attention override)",
            _f64(_layer("attention"))),
    Pitfall("tensorflow.avgpool_grad_wider_window", "tensorflow",
            "AveragePooling2D (tf.nn.avg_pool2d) with padding='same' and a window wider than "
            "its input: AvgPoolGrad's dL/dx is wrong (the forward pass is right): not a "
            "default, a bug", "tensorflow/core/kernels/avgpooling_op.cc (AvgPoolingGradOp)",
            "pad explicitly and average over the real pixels (PaddedAvgPool2D)",
            _avgpool_wider_than_input),
    Pitfall("keras.binary_crossentropy", "tensorflow",
            "BinaryCrossentropy after a Keras sigmoid reads the sigmoid's logits: the "
            "log-sum-exp form, not the formula on p (its [1e-7, 1 - 1e-7] clip never acts)",
            "keras/src/backend/tensorflow/nn.py:1474-1486",
            "the formula on p with tf ops", _loss("binary_cross_entropy")),
    Pitfall("keras.loss_sum_of_means", "tensorflow",
            "with reduction='sum', Keras' MSE and binary cross-entropies sum each example's "
            "mean over the outputs: 1/outputs of the canonical sum",
            "keras/src/losses/losses.py:1769 (mean over axis -1)",
            "sum the elementwise losses with tf ops", _sum_of_elementwise),
    # ---- JAX, Optax, Flax ----
    Pitfall("jax.gelu_tanh", "jax", "jax.nn.gelu defaults to the tanh approximation",
            "jax/_src/nn/functions.py:437 (approximate: bool = True)",
            "jax.nn.gelu(x, approximate=False)", _layer("gelu")),
    Pitfall("jax.leaky_relu_slope_at_zero", "jax",
            "jax.nn.leaky_relu takes slope 1 at exactly 0 (x >= 0)",
            "jax/_src/nn/functions.py:354 (jnp.where(x_arr >= 0, ...))",
            "jnp.where(x > 0, x, alpha x)", _layer("leaky_relu")),
    Pitfall("jax.abs_slope_at_zero", "jax",
            "jnp.abs takes slope 1 at exactly 0 (x >= 0), so an L1 penalty's gradient at a zero "
            "weight is l1, where NumPy, PyTorch and TensorFlow take sign(0) = 0",
            "jax/_src/lax/lax.py:4710-4715 (_abs_jvp_rule: select(x >= 0, g, -g))",
            "l1 * sum(sign(W) W): the same value, slope sign(W)", lambda s: s.train["l1"] != 0),
    Pitfall("jax.attention_float32_softmax", "jax",
            "jax.nn.dot_product_attention takes the softmax in float32 even for float64 inputs",
            "jax/_src/nn/functions.py:969-971 (_dot_product_attention_core)",
            "softmax(q k^T / sqrt(key_dim)) v with jnp, in the inputs' dtype",
            _f64(_layer("attention"))),
    Pitfall("optax.rmsprop_eps_in_sqrt", "jax",
            "optax.rmsprop divides by sqrt(v + eps) unless eps_in_sqrt=False",
            "optax/_src/alias.py:1940; optax/_src/transform.py:139-142",
            "optax.rmsprop(..., eps_in_sqrt=False)", _opt("rmsprop")),
    _default("optax.rmsprop_default_decay", "jax", "rho", {"rmsprop": 0.9},
             "optax.rmsprop's decay defaults to 0.9 (PyTorch's alpha: 0.99)",
             "optax/_src/alias.py:1937"),
    Pitfall("optax.adagrad_eps_in_sqrt", "jax",
            "optax.adagrad divides by sqrt(s + eps), and no argument changes that",
            "optax/_src/transform.py:71-73 (scale_by_rss)",
            "a GradientTransformation of its own: g / (sqrt(s) + eps)", _opt("adagrad")),
    Pitfall("optax.adagrad_initial_accumulator", "jax",
            "optax.adagrad starts its accumulator at 0.1 (PyTorch's at 0)",
            "optax/_src/alias.py:331", "start the accumulator at 0", _opt("adagrad")),
    _default("optax.adagrad_default_eps", "jax", "eps", {"adagrad": 1e-7},
             "optax.adagrad's eps defaults to 1e-7 (PyTorch's: 1e-10)", "optax/_src/alias.py:332"),
    _default("optax.adamw_default_weight_decay", "jax", "weight_decay", {"adamw": 1e-4},
             "optax.adamw's weight_decay defaults to 1e-4 (PyTorch's: 0.01)",
             "optax/_src/alias.py:605"),
    Pitfall("flax.layernorm_epsilon", "jax", "Flax's LayerNorm epsilon defaults to 1e-6",
            "flax/linen/normalization.py:486 (Flax 0.12.8)", "pass the spec's eps",
            _layer("layernorm", "eps")),
    Pitfall("flax.batchnorm_momentum", "jax",
            "Flax's BatchNorm momentum=0.99 weighs the old running value",
            "flax/linen/normalization.py:310, 401-404 (Flax 0.12.8)",
            "momentum = 1 - the spec's", _layer("batchnorm", "momentum")),
    Pitfall("flax.batchnorm_biased_variance", "jax",
            "Flax's BatchNorm running variance takes the biased batch variance",
            "flax/linen/normalization.py:404, _compute_stats (Flax 0.12.8)",
            "update with var n / (n - 1)", _layer("batchnorm")),
    Pitfall("flax.avg_pool_counts_padding", "jax",
            "Flax's avg_pool divides by the whole window, padding included "
            "(count_include_pad=True)", "flax/linen/pooling.py:80 (Flax 0.12.8)",
            "divide by the count of real pixels under the window", _padded_avgpool),
)

# Native forms that compute the canonical math to the last bits or so: switched like the
# pitfalls (a native-defaults run uses them), and run by `crossgrad pitfalls`, which
# expects them within tolerance (so they are not in play anywhere).
AGREE = (
    Pitfall("keras.global_clipnorm", "tensorflow",
            "Keras' global_clipnorm scales by clip * min(1/norm, 1/clip) inside apply_gradients",
            KERAS_OPT + "base_optimizer.py:1190-1197",
            "scale the gradients by min(1, c / |g|) before apply_gradients", _clip),
    Pitfall("optax.clip_by_global_norm", "jax",
            "optax.clip_by_global_norm scales by (g / norm) * max_norm where norm > max_norm",
            "optax/transforms/_clipping.py:96-105",
            "scale the gradients by min(1, c / |g|) in the step", _clip),
)
BY_NAME = {p.name: p for p in CATALOG + AGREE}

# The framework defaults the catalog compares with the spec's, in the shape
# {framework: {optimizer type: {spec key: framework default}}} (tests read them back)
DEFAULTS = {}
for _p in CATALOG:
    if _p.default:
        _key, _values = _p.default
        for _type, _value in _values.items():
            DEFAULTS.setdefault(_p.framework, {}).setdefault(_type, {})[_key] = _value


def in_play(spec, framework):
    """The pitfalls of `framework` a native-defaults run of this spec runs into."""
    return [p for p in CATALOG if p.framework == framework and p.applies(spec)]


def native_is_aligned(spec, framework):
    """Whether `framework`'s native-defaults run of this spec is its aligned run: neither a
    pitfall nor an agreeing native form (AGREE) applies, so every switch the run reads is
    off where it acts. NumPy, the reference, has none. Every switch the implementations
    read is in CATALOG or AGREE (tests/test_pitfalls.py)."""
    return not any(p.framework == framework and p.applies(spec) for p in CATALOG + AGREE)


def described(pitfall, effect=None, step=None):
    """One cause as a line names it, its name first (a plot's label keeps the start):
    'name (effect by step k): what'."""
    if effect is None:
        return f"{pitfall.name}: {pitfall.what}"
    by = f" by step {step}" if step is not None else ""
    return f"{pitfall.name} ({effect:.1e}{by}): {pitfall.what}"
