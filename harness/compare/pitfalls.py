"""Which framework defaults a native-defaults run of a spec runs into.

Each rule names a framework, when it applies to a spec, and what differs from the
canonical math. The report lists the rules in play next to the step where each
native curve parts, so an engineer porting a model sees which default to look at.
The sources are in the README ("Framework pitfalls found").
"""
from dataclasses import dataclass
from typing import Callable

from ..spec.catalog import walk

# Defaults of the framework optimizers for the keys a spec may leave out:
# {framework: {optimizer type: {spec key: framework default}}}
DEFAULTS = {
    "torch": {"sgd": {"lr": 1e-3}, "momentum": {"lr": 1e-3}, "nesterov": {"lr": 1e-3},
              "adam": {"lr": 1e-3}, "adamw": {"lr": 1e-3}, "rmsprop": {"lr": 1e-2},
              "adagrad": {"lr": 1e-2}},
    "tensorflow": {"sgd": {}, "momentum": {}, "nesterov": {},
                   "adam": {"lr": 1e-3, "eps": 1e-7}, "adamw": {"lr": 1e-3, "eps": 1e-7,
                                                                 "weight_decay": 0.004},
                   "rmsprop": {"lr": 1e-3, "rho": 0.9, "eps": 1e-7},
                   "adagrad": {"lr": 1e-3, "eps": 1e-7}},
    "jax": {"adamw": {"weight_decay": 1e-4}, "rmsprop": {"rho": 0.9}, "adagrad": {"eps": 1e-7}},
}


@dataclass(frozen=True)
class Pitfall:
    framework: str
    applies: Callable  # spec -> bool
    text: str


def _opt(*types):
    return lambda s: s.optimizer["type"] in types


def _layer(kind, unless_explicit=None):
    return lambda s: any(l["type"] == kind and unless_explicit not in l["explicit"]
                         for l in walk(s.layers))


def _f64(rule):
    return lambda s: s.dtype == "float64" and rule(s)


RULES = [
    Pitfall("torch", lambda s: s.train["clip_norm"] is not None,
            "clip_grad_norm_ divides by norm + 1e-6"),
    Pitfall("torch", lambda s: s.loss["type"] == "binary_cross_entropy",
            "nn.BCELoss clamps log(p) at -100"),
    Pitfall("tensorflow", _opt("adam", "adamw"),
            "Keras Adam adds epsilon to sqrt(v) before the bias correction ('epsilon hat')"),
    Pitfall("tensorflow", _opt("rmsprop"), "Keras RMSprop puts epsilon inside the square root"),
    Pitfall("tensorflow", _opt("adagrad"),
            "Keras Adagrad starts its accumulator at 0.1, epsilon inside the square root"),
    Pitfall("tensorflow", _opt("momentum", "nesterov"),
            "Keras SGD momentum: m = mu m - lr g, mu rounded through float32"),
    Pitfall("tensorflow", lambda s: s.optimizer["weight_decay"] and s.optimizer["type"] != "adamw",
            "Keras weight_decay is decoupled (PyTorch's adds wd p to the gradient)"),
    Pitfall("tensorflow", _f64(lambda s: True),
            "Keras keeps the learning rate in a float32 variable"),
    Pitfall("tensorflow", _layer("batchnorm", "momentum"),
            "BatchNormalization momentum 0.99 (= 0.01 for the new statistic)"),
    Pitfall("tensorflow", _layer("batchnorm", "eps"), "BatchNormalization epsilon 1e-3"),
    Pitfall("tensorflow", _layer("batchnorm"), "moving variance from the biased batch variance"),
    Pitfall("tensorflow", _layer("layernorm", "eps"), "LayerNormalization epsilon 1e-3"),
    Pitfall("tensorflow", _f64(lambda s: _layer("gelu")(s) or _layer("leaky_relu")(s)),
            "tf.nn.gelu / leaky_relu round their constants through float32"),
    Pitfall("tensorflow", _f64(_layer("attention")),
            "MultiHeadAttention scales by 1/sqrt(key_dim) rounded through float32"),
    Pitfall("tensorflow", lambda s: s.loss["type"] == "binary_cross_entropy",
            "BinaryCrossentropy clips p to [1e-7, 1-1e-7] or reads the sigmoid's logits"),
    Pitfall("jax", _layer("gelu"), "jax.nn.gelu defaults to the tanh approximation"),
    Pitfall("jax", _layer("leaky_relu"), "jax.nn.leaky_relu has slope 1 at exactly 0"),
    Pitfall("jax", _f64(_layer("attention")),
            "jax.nn.dot_product_attention takes the softmax in float32"),
    Pitfall("jax", _opt("rmsprop"), "optax.rmsprop puts eps inside the square root"),
    Pitfall("jax", _opt("adagrad"), "optax.adagrad starts at 0.1, eps inside the square root"),
    Pitfall("jax", _layer("layernorm", "eps"), "Flax LayerNorm epsilon 1e-6"),
    Pitfall("jax", _layer("batchnorm", "momentum"), "Flax BatchNorm momentum 0.99"),
    Pitfall("jax", _layer("batchnorm"), "Flax running variance from the biased variance"),
    Pitfall("jax", lambda s: any(l["type"] == "avgpool2d" and any(map(any, l["pads"]))
                                 for l in walk(s.layers)),
            "Flax avg_pool counts the padding"),
]


def in_play(spec, framework):
    """The native-defaults differences of `framework` that this spec runs into."""
    found = [r.text for r in RULES if r.framework == framework and r.applies(spec)]
    opt = spec.optimizer
    for key, default in DEFAULTS.get(framework, {}).get(opt["type"], {}).items():
        if key not in opt["explicit"] and default != opt[key]:
            found.append(f"default {key} {default:g} (spec: {opt[key]:g})")
    return found
