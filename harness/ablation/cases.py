"""One minimal spec per pitfall: the smallest network that runs into it, and how to measure it.

Each case is a plain spec dict (as a spec file reads) and a measure: "gradients" (a check:
the loss, every gradient and the BatchNorm state on one batch) or "curves" (a few training
steps, full batch: the loss curve). The spec writes every key the pitfall is not about, so
that switching that one pitfall on is the only difference from the aligned run; a default
pitfall's key is the one it leaves out. Sizes are odd and tiny: the whole catalog runs in
about a minute on two cores.
"""
from dataclasses import dataclass

REGRESSION = {"source": "random_regression", "outputs": 3, "examples": 12}
CLASSES = {"source": "random_classification", "classes": 3, "examples": 12}
SEQUENCE = {"source": "random_sequence", "classes": 3, "examples": 6}
SGD = {"type": "sgd", "lr": 0.1}


@dataclass(frozen=True)
class Case:
    spec: dict
    measure: str  # "gradients" or "curves"


def dense(units, **kw):
    return {"type": "dense", "units": units, **kw}


MLP = [dense(5), {"type": "tanh"}, dense(3)]


def gradients(name, layers, loss="softmax_cross_entropy", data=CLASSES, input_shape=(4,),
              **loss_keys):
    """A check of `layers` on one full batch (float64)."""
    return Case({"name": name, "seed": 1, "input_shape": list(input_shape), "data": data,
                 "layers": layers, "loss": {"type": loss, **loss_keys}}, "gradients")


def curves(name, optimizer, steps=6, **train):
    """A few full-batch steps of a 4-5-3 tanh network on a regression (float64)."""
    return Case({"name": name, "seed": 1, "input_shape": [4], "data": REGRESSION,
                 "layers": MLP, "loss": {"type": "mse"}, "optimizer": optimizer,
                 "train": {"steps": steps, **train}}, "curves")


def written(base, **changes):
    """`base` with `changes`; a key changed to None is left out (unwritten: the default's)."""
    return {k: v for k, v in dict(base, **changes).items() if v is not None}


def adam(**changes):
    return written({"type": "adam", "lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                    "weight_decay": 0.0}, **changes)


def adamw(**changes):
    return adam(**dict({"type": "adamw", "weight_decay": 0.01}, **changes))


def rmsprop(**changes):
    return written({"type": "rmsprop", "lr": 0.01, "rho": 0.99, "eps": 1e-8}, **changes)


def adagrad(**changes):
    return written({"type": "adagrad", "lr": 0.1, "eps": 1e-10}, **changes)


def batchnorm(**changes):
    """dense -> batchnorm -> tanh -> dense."""
    norm = written({"type": "batchnorm", "eps": 1e-5, "momentum": 0.1}, **changes)
    return [dense(5), norm, {"type": "tanh"}, dense(3)]


def layernorm(**written):
    return [dense(5), {"type": "layernorm", **written}, {"type": "tanh"}, dense(3)]


def leaky(**written):
    return [dense(5), {"type": "leaky_relu", **written}, dense(3)]


def attention():
    """Self-attention over 4 steps of 6 features, key_dim 3 (1/sqrt(3) is inexact in float32)."""
    return [{"type": "attention", "heads": 2, "key_dim": 3}, {"type": "sequence_mean"},
            dense(3)]


ZERO = {"type": "constant", "value": 0.0}

CASES = {
    "torch.default_lr": curves("torch_default_lr", {"type": "sgd"}),
    "torch.clip_grad_norm_eps": curves("torch_clip", SGD, clip_norm=0.05),
    # logits of -101: log p = -101 lies beyond the -100 clamp, p (1 - p) below 1e-12
    "torch.bce_clamp": gradients("torch_bce", [
        dense(1, init=ZERO, bias_init={"type": "constant", "value": -101.0}),
        {"type": "sigmoid"}], loss="binary_cross_entropy", data={"source": "xor"},
        input_shape=(2,)),
    "keras.default_lr": curves("keras_default_lr", adam(lr=None)),
    "keras.default_epsilon": curves("keras_default_eps", adam(eps=None)),
    "keras.rmsprop_default_rho": curves("keras_rmsprop_rho", rmsprop(rho=None)),
    "keras.adamw_default_weight_decay": curves("keras_adamw_wd", adamw(weight_decay=None)),
    "keras.float32_hyperparameters": curves("keras_float32", SGD),
    "keras.weight_decay_decoupled": curves("keras_decoupled", adam(weight_decay=0.1)),
    "keras.sgd_momentum": curves("keras_momentum", {"type": "momentum", "lr": 0.1,
                                                    "momentum": 0.9}),
    "keras.adam_epsilon_hat": curves("keras_epsilon_hat", adam()),
    "keras.rmsprop_eps_in_sqrt": curves("keras_rmsprop", rmsprop()),
    # eps = 1e-4, written: inside or outside the root then shows in a few steps
    "keras.adagrad_eps_in_sqrt": curves("keras_adagrad", adagrad(eps=1e-4)),
    "keras.adagrad_initial_accumulator": curves("keras_adagrad_start", adagrad()),
    "keras.global_clipnorm": curves("keras_clip", SGD, clip_norm=0.05),
    "keras.batchnorm_momentum": gradients("keras_bn_momentum", batchnorm(momentum=None)),
    "keras.batchnorm_epsilon": gradients("keras_bn_eps", batchnorm(eps=None)),
    "keras.batchnorm_biased_variance": gradients("keras_bn_var", batchnorm()),
    "keras.layernorm_epsilon": gradients("keras_ln_eps", layernorm()),
    "keras.leaky_relu_slope": gradients("keras_leaky_slope", leaky()),
    "tensorflow.leaky_relu_float32_alpha": gradients("tf_leaky_alpha", leaky(alpha=0.2)),
    "tensorflow.gelu_float32_constant": gradients("tf_gelu", [dense(5), {"type": "gelu"},
                                                              dense(3)]),
    "keras.attention_float32_scale": gradients("keras_attention", attention(), data=SEQUENCE,
                                               input_shape=(4, 6)),
    # weights of std 8: sigmoids beyond [1e-7, 1 - 1e-7], where Keras' clip would act
    # a 4x4 image under a 5x5 window, stride 1, 'same': the window is wider than the input
    "tensorflow.avgpool_grad_wider_window": gradients("tf_avgpool_wider", [
        {"type": "conv2d", "filters": 2, "kernel_size": 1},
        {"type": "avgpool2d", "pool_size": 5, "strides": 1, "padding": "same"},
        {"type": "flatten"}, dense(3)], input_shape=(4, 4, 1)),
    "keras.binary_crossentropy": gradients("keras_bce", [
        dense(2, init={"type": "normal", "std": 8.0}), {"type": "sigmoid"}],
        loss="binary_cross_entropy", data={"source": "random_classification", "classes": 2,
                                           "examples": 12}),
    "keras.loss_sum_of_means": gradients("keras_mse_sum", MLP, loss="mse", data=REGRESSION,
                                         reduction="sum"),
    "jax.gelu_tanh": gradients("jax_gelu", [dense(5), {"type": "gelu"}, dense(3)]),
    # zero weights and bias: every leaky_relu input is exactly 0
    "jax.leaky_relu_slope_at_zero": gradients("jax_leaky_zero", [
        dense(5, init=ZERO), {"type": "leaky_relu", "alpha": 0.01}, dense(3)]),
    # a zero-initialised first layer under L1: every first-layer weight starts at exactly 0
    "jax.abs_slope_at_zero": Case(dict(curves("jax_abs_zero", SGD, l1=0.01).spec,
                                       layers=[dense(5, init=ZERO), {"type": "tanh"}, dense(3)]),
                                  "curves"),
    "jax.attention_float32_softmax": gradients("jax_attention", attention(), data=SEQUENCE,
                                               input_shape=(4, 6)),
    "optax.rmsprop_eps_in_sqrt": curves("optax_rmsprop", rmsprop()),
    "optax.rmsprop_default_decay": curves("optax_rmsprop_decay", rmsprop(rho=None)),
    "optax.adagrad_eps_in_sqrt": curves("optax_adagrad", adagrad(eps=1e-4)),
    "optax.adagrad_initial_accumulator": curves("optax_adagrad_start", adagrad()),
    "optax.adagrad_default_eps": curves("optax_adagrad_eps", adagrad(eps=None)),
    "optax.adamw_default_weight_decay": curves("optax_adamw_wd", adamw(weight_decay=None)),
    "optax.clip_by_global_norm": curves("optax_clip", SGD, clip_norm=0.05),
    "flax.layernorm_epsilon": gradients("flax_ln_eps", layernorm()),
    "flax.batchnorm_momentum": gradients("flax_bn_momentum", batchnorm(momentum=None)),
    "flax.batchnorm_biased_variance": gradients("flax_bn_var", batchnorm()),
    # 5x5 pooled 2x2 with stride 2, 'same': the last row and column are half padding
    "flax.avg_pool_counts_padding": gradients("flax_avg_pool", [
        {"type": "avgpool2d", "pool_size": 2, "strides": 2, "padding": "same"},
        {"type": "flatten"}, dense(3)], input_shape=(5, 5, 1)),
}
