"""Plugin layers, the implementation side: every framework's `plugin` builder.

Built-in layers are re-declared as plugins (a class with numpy_forward/numpy_backward,
torch, tensorflow and jax methods, each on canonical NHWC tensors and canonical
parameters), attached as `layer["plugin"]` the way the worker attaches them, and run
through `worker.perform` in this process. In float64 their loss, gradients and
finite-difference losses must equal the built-in layer's bit for bit, at the top level
and inside residual blocks, on vectors, images, sequences and token ids; wrong shapes and dtypes,
missing methods and a missing NumPy backward must each say which plugin is at fault.

Each re-declaration calls the framework's own primitive for the layer (F.linear,
lax.conv_general_dilated, keras.layers.LSTM.stateless_call, ...): what is under test is
everything around it (parameters in, gradients out, layouts, nesting). NumPy's conv2d
and lstm call the reference's own forward/backward pair for the same reason.
"""
import copy
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from crossgrad.harness import registry
from crossgrad.harness.run.jobs import Inputs, check_job
from crossgrad.harness.run.worker import perform
from crossgrad.harness.spec import parse_spec

from conftest import BY_THE_NUMBERS, FRAMEWORKS, in_process

DIGITS = {"source": "digits", "batch_size": 6}
SEQ = {"source": "random_sequence", "classes": 3, "examples": 20, "batch_size": 5}
TOKENS = {"source": "random_tokens", "vocab": 11, "classes": 3, "examples": 20, "batch_size": 5}
NORMAL_BIAS = {"type": "normal", "std": 0.2}


def raw_spec(name, layers, input_shape, data):
    return {"name": name, "seed": 5, "dtype": "float64", "input_shape": input_shape,
            "data": data, "layers": layers, "loss": {"type": "softmax_cross_entropy"}}


def conv(filters, kernel, **kw):
    return {"type": "conv2d", "filters": filters, "kernel_size": kernel, "bias_init": NORMAL_BIAS,
            **kw}


SPECS = {
    # dense and an elementwise layer on vectors, outside and inside a residual block
    "vector": raw_spec("vector", [
        {"type": "dense", "units": 7, "bias_init": NORMAL_BIAS}, {"type": "tanh"},
        {"type": "residual", "layers": [{"type": "dense", "units": 7, "bias_init": NORMAL_BIAS},
                                        {"type": "tanh"}]},
        {"type": "dense", "units": 10}], [64], DIGITS),
    # conv2d, dense on the channels and an elementwise layer on images (torch runs NCHW)
    "image": raw_spec("image", [
        conv(3, [3, 2], strides=[2, 2], padding="same"), {"type": "tanh"},
        {"type": "residual", "layers": [conv(3, 3, padding="same"), {"type": "tanh"},
                                        {"type": "dense", "units": 3, "bias_init": NORMAL_BIAS}]},
        {"type": "flatten"}, {"type": "dense", "units": 10}], [8, 8, 1], DIGITS),
    # an embedding on token ids (no dL/dx), then dense and tanh on sequences
    "tokens": raw_spec("tokens", [
        {"type": "embedding", "vocab": 11, "dim": 4, "init": {"type": "normal", "std": 1.0}},
        {"type": "dense", "units": 5, "bias_init": NORMAL_BIAS}, {"type": "tanh"},
        {"type": "sequence_mean"}, {"type": "dense", "units": 3}], [7], TOKENS),
    # two LSTMs, the first returning its sequence
    "sequence": raw_spec("sequence", [
        {"type": "lstm", "units": 5, "return_sequences": True, "bias_init": NORMAL_BIAS},
        {"type": "lstm", "units": 3}, {"type": "dense", "units": 3}], [6, 3], SEQ),
}


# ---- the built-in layers, re-declared as plugins ----------------------------------------------

class Tanh:
    """y = tanh(x)."""

    def numpy_forward(self, p, x):
        y = np.tanh(x)
        return y, y

    def numpy_backward(self, p, y, dy):
        return dy * (1 - y * y), {}

    def torch(self, p, x):
        import torch
        return torch.tanh(x)

    def tensorflow(self, p, x):
        import keras
        return keras.activations.tanh(x)

    def jax(self, p, x):
        import jax.numpy as jnp
        return jnp.tanh(x)


class Dense:
    """y = x W + b on the last axis."""

    def numpy_forward(self, p, x):
        return x @ p["W"] + p["b"], x

    def numpy_backward(self, p, x, dy):
        x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])
        return dy @ p["W"].T, {"W": x2.T @ dy2, "b": dy2.sum(0)}

    def torch(self, p, x):
        import torch.nn.functional as F
        return F.linear(x, p["W"].T.contiguous(), p["b"])  # as nn.Linear: its weight is W^T

    def tensorflow(self, p, x):
        import keras
        return keras.ops.add(keras.ops.matmul(x, p["W"]), p["b"])  # as keras.layers.Dense

    def jax(self, p, x):
        return x @ p["W"] + p["b"]


class Embedding:
    """y = E[x] on token ids; integer inputs take no gradient."""

    def numpy_forward(self, p, x):
        return p["E"][x], x

    def numpy_backward(self, p, x, dy):
        dE = np.zeros_like(p["E"])
        np.add.at(dE, x, dy)
        return None, {"E": dE}

    def torch(self, p, x):
        import torch.nn.functional as F
        return F.embedding(x, p["E"])  # as nn.Embedding

    def tensorflow(self, p, x):
        import keras
        return keras.ops.take(p["E"], x, axis=0)  # as keras.layers.Embedding

    def jax(self, p, x):
        import jax.numpy as jnp
        return jnp.take(p["E"], x, axis=0)


class Conv2D:
    """Cross-correlation on NHWC images with TensorFlow's 'same' padding."""

    def reference(self):
        from crossgrad.impls.numpy_manual.layers import conv2d
        return conv2d(vars(self), "float64", False)

    def numpy_forward(self, p, x):
        return self.reference().forward(p, x, None)

    def numpy_backward(self, p, cache, dy):
        return self.reference().backward(p, cache, dy)

    def torch(self, p, x):
        import torch.nn.functional as F
        (top, bottom), (left, right) = self.pads
        x = F.pad(x.permute(0, 3, 1, 2), (left, right, top, bottom))       # NHWC -> NCHW
        y = F.conv2d(x, p["W"].permute(3, 2, 0, 1), p["b"], stride=self.strides)  # HWIO -> OIHW
        return y.permute(0, 2, 3, 1)                                         # NCHW -> NHWC

    def tensorflow(self, p, x):
        import keras
        y = keras.ops.conv(x, p["W"], strides=self.strides, padding=self.padding)
        return keras.ops.add(y, keras.ops.reshape(p["b"], (1, 1, 1, -1)))   # as keras.layers.Conv2D

    def jax(self, p, x):
        from jax import lax
        y = lax.conv_general_dilated(x, p["W"], tuple(self.strides), [tuple(q) for q in self.pads],
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + p["b"]


class LSTM:
    """gates [i, f, g, o] = x W + h U + b; one bias."""

    def reference(self):
        from crossgrad.impls.numpy_manual.layers import lstm
        return lstm(vars(self), "float64", False)

    def numpy_forward(self, p, x):
        return self.reference().forward(p, x, None)

    def numpy_backward(self, p, cache, dy):
        return self.reference().backward(p, cache, dy)

    def torch(self, p, x):
        import torch
        from torch.func import functional_call
        module = torch.nn.LSTM(x.shape[-1], self.units, batch_first=True, dtype=x.dtype)
        # contiguous, as nn.LSTM's own weights are: a transposed view takes MKL's GEMM for a
        # transposed operand, which rounds otherwise (on AMD EPYC, PyTorch 2.13)
        weights = {"weight_ih_l0": p["W"].T.contiguous(), "weight_hh_l0": p["U"].T.contiguous(),
                   "bias_ih_l0": p["b"], "bias_hh_l0": torch.zeros_like(p["b"])}
        y, _ = functional_call(module, weights, (x,))
        return y if self.return_sequences else y[:, -1]

    def tensorflow(self, p, x):
        import keras
        if not hasattr(self, "keras_lstm"):  # made on the first, eager call; no variables after
            self.keras_lstm = keras.layers.LSTM(self.units, return_sequences=self.return_sequences,
                                                dtype=x.dtype.name)
            self.keras_lstm.build(x.shape)
        y, _ = self.keras_lstm.stateless_call([p["W"], p["U"], p["b"]],
                                              self.keras_lstm.non_trainable_variables, x)
        return y

    def jax(self, p, x):
        import jax
        import jax.numpy as jnp

        def cell(carry, x_t):
            h, c = carry
            z = x_t @ p["W"] + h @ p["U"] + p["b"]
            zi, zf, zg, zo = jnp.split(z, 4, axis=-1)
            i, f, g, o = jax.nn.sigmoid(zi), jax.nn.sigmoid(zf), jnp.tanh(zg), jax.nn.sigmoid(zo)
            c = f * c + i * g
            h = o * jnp.tanh(c)
            return (h, c), h
        zeros = jnp.zeros((x.shape[0], self.units), x.dtype)
        _, hs = jax.lax.scan(cell, (zeros, zeros), x.swapaxes(0, 1))
        return hs.swapaxes(0, 1) if self.return_sequences else hs[-1]


REDECLARED = {"tanh": Tanh, "dense": Dense, "embedding": Embedding, "conv2d": Conv2D,
              "lstm": LSTM}
KEYS = ("units", "use_bias", "filters", "kernel_size", "strides", "padding", "pads",
        "return_sequences")  # the spec keys each class above reads as attributes


# ---- helpers ---------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=FRAMEWORKS)
def impl(request):
    """One implementation, imported in this process with the worker's environment pins."""
    return in_process(request.param)


def walk(layers):
    for layer in layers:
        yield layer
        yield from walk(layer.get("layers", []))


def as_plugin(layer, cls, kind=None):
    """Re-declare a spec entry in place: a plugin type, and an instance with its keys set."""
    instance = cls()
    for key in KEYS:
        if key in layer:
            setattr(instance, key, layer[key])
    layer["type"], layer["plugin"] = kind or f"my_{layer['type']}", instance
    return layer


def jobs(name, framework, redeclare=REDECLARED):
    """(the built-in job, the same job with the layers of `redeclare`'s types as plugins)."""
    spec = parse_spec(SPECS[name], f"{name}.toml", name)
    job = check_job(spec, Inputs(spec), framework)
    job["probes"] = job["probes"][::6]  # a few finite-difference probes, for speed
    twin = copy.deepcopy(job)
    count = 0
    for layer in walk(twin["spec"]["layers"]):
        if layer["type"] in redeclare:
            as_plugin(layer, redeclare[layer["type"]])
            count += 1
    assert count >= 2
    return job, twin


def run(impl, job):
    return perform(impl, copy.deepcopy(job))  # perform may write into the spec's layers


# ---- the same bits -------------------------------------------------------------------------

def same_bits(impl, name):
    """What differs between the built-in layers and their re-declarations, [] if nothing."""
    builtin, plugin = jobs(name, impl.name)
    a, b = run(impl, builtin), run(impl, plugin)
    if a["loss"] != b["loss"] or list(a["grads"]) != list(b["grads"]):  # names, in order
        return [f"loss {a['loss']!r} != {b['loss']!r}, or the gradients' names"]
    different = [f"{k}: {np.abs(a['grads'][k] - b['grads'][k]).max():.1e}" for k in a["grads"]
                 if not np.array_equal(a["grads"][k], b["grads"][k])]
    if not np.array_equal(a["fd_values"], b["fd_values"]):  # every probe's loss too
        different.append("a finite-difference loss")
    return different


# PyTorch's pair is compared in a process of its own where MKL rounds by the numbers alone
# (conftest.BY_THE_NUMBERS): the built-in layer's weights and the plugin's are two sets of
# tensors at two addresses.
TORCH_PAIRS = """
import json, sys
sys.path.insert(0, sys.argv[1])
import test_plugin_impls as here
from conftest import in_process
impl = in_process("torch")
print(json.dumps({name: here.same_bits(impl, name) for name in here.SPECS}))
"""


@pytest.fixture(scope="module")
def torch_pairs():
    done = subprocess.run([sys.executable, "-c", TORCH_PAIRS, os.path.dirname(__file__)],
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, **BY_THE_NUMBERS))
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", sorted(SPECS))
def test_redeclared_layers_give_the_same_bits(impl, name, request):
    different = (request.getfixturevalue("torch_pairs")[name] if impl.name == "torch"
                 else same_bits(impl, name))
    assert not different, different


def test_the_plugins_are_what_ran(impl):
    """A re-declared layer that returns something else changes the loss: the plugin is used."""
    class Shifted(Tanh):
        def numpy_forward(self, p, x):
            return np.tanh(x) + 1e-3, None

        def torch(self, p, x):
            return super().torch(p, x) + 1e-3

        def tensorflow(self, p, x):
            return super().tensorflow(p, x) + 1e-3

        def jax(self, p, x):
            return super().jax(p, x) + 1e-3
    builtin, _ = jobs("vector", impl.name)
    _, shifted = jobs("vector", impl.name, {"tanh": Shifted, "dense": Dense})
    model = impl.model.build_model(shifted["spec"])
    impl.model.set_params(model, shifted["params"], shifted["state"])
    shifted_loss = impl.model.loss_value(model, shifted["x"], shifted["y"], shifted["masks"])
    assert shifted_loss != run(impl, builtin)["loss"]


def test_parameters_pass_through_canonical(impl):
    """set_params then get_params gives the canonical values back, under canonical names."""
    _, job = jobs("image", impl.name)
    model = impl.model.build_model(job["spec"])
    impl.model.set_params(model, job["params"], job["state"])
    params, _ = impl.model.get_params(model)
    assert list(params) == list(job["params"])
    for name, value in job["params"].items():
        assert np.array_equal(params[name], value), name


# ---- what a plugin gets wrong ----------------------------------------------------------------

class WrongShape(Dense):
    """Drops the last output feature in every framework."""

    def numpy_forward(self, p, x):
        y, cache = super().numpy_forward(p, x)
        return y[..., :-1], cache

    def torch(self, p, x):
        return super().torch(p, x)[..., :-1]

    def tensorflow(self, p, x):
        return super().tensorflow(p, x)[..., :-1]

    def jax(self, p, x):
        return super().jax(p, x)[..., :-1]


class WrongDtype(Dense):
    """Returns float32 from a float64 model in every framework."""

    def numpy_forward(self, p, x):
        y, cache = super().numpy_forward(p, x)
        return y.astype(np.float32), cache

    def torch(self, p, x):
        return super().torch(p, x).float()

    def tensorflow(self, p, x):
        import tensorflow as tf
        return tf.cast(super().tensorflow(p, x), tf.float32)

    def jax(self, p, x):
        return super().jax(p, x).astype("float32")


class NotATensor(Dense):
    """Returns a list."""

    def numpy_forward(self, p, x):
        return [1.0], x

    def torch(self, p, x):
        return [1.0]

    def tensorflow(self, p, x):
        return [1.0]

    def jax(self, p, x):
        return [1.0]


def one_plugin(framework, cls, kind, name="vector", spec_type="dense"):
    """The job of SPECS[name] with its first `spec_type` layer (inside residual blocks too)
    re-declared as `cls` under the plugin type `kind`."""
    spec = parse_spec(SPECS[name], f"{name}.toml", name)
    job = check_job(spec, Inputs(spec), framework)
    layer = next(entry for entry in walk(job["spec"]["layers"]) if entry["type"] == spec_type)
    as_plugin(layer, cls, kind)
    return job


@pytest.mark.parametrize("cls, words", [
    # the batch axis as "batch": Keras builds the model by a first call on one example
    (WrongShape, r"returned y of shape \(batch, 6\), expected \(batch, 7\)"),
    (WrongDtype, r"returned y in float32, the model computes in float64"),
    (NotATensor, r"returned y as a list, not a tensor"),
], ids=["shape", "dtype", "not-a-tensor"])
def test_a_wrong_output_names_the_plugin(impl, cls, words):
    from crossgrad.impls.canonical import PluginError
    with pytest.raises(PluginError) as caught:
        run(impl, one_plugin(impl.name, cls, "bad_dense"))
    method = "numpy_forward" if impl.name == "numpy" else impl.name
    where = rf" \({cls.__name__}\.{method} at test_plugin_impls\.py:\d+\)$"  # file and line
    assert re.fullmatch(f"plugin bad_dense: {method} {words}{where}", str(caught.value)), \
        str(caught.value)


class CutsTheGraph(Dense):
    """Dense whose W reaches y as a constant: no gradient flows back to it."""

    def torch(self, p, x):
        return super().torch(dict(p, W=p["W"].detach()), x)

    def tensorflow(self, p, x):
        import tensorflow as tf
        return super().tensorflow(dict(p, W=tf.stop_gradient(p["W"])), x)


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_a_plugin_that_cuts_the_graph_names_itself_and_its_parameter(framework):
    """Not a KeyError or a None from the implementation's plumbing: the plugin's method, the
    parameter no gradient reached, the method's file and line."""
    pytest.importorskip(framework)
    from crossgrad.impls.canonical import PluginError
    with pytest.raises(PluginError, match=rf"^plugin cut_dense: {framework} cut the graph: no "
                                          r"gradient reached its parameter 'W' \(.*\) "
                                          rf"\(CutsTheGraph\.{framework} at "
                                          r"test_plugin_impls\.py:\d+\)$"):
        run(registry.load(framework), one_plugin(framework, CutsTheGraph, "cut_dense"))


def test_a_wrong_output_inside_a_residual_block_names_the_plugin(impl):
    from crossgrad.impls.canonical import PluginError
    # the image spec's first dense layer is inside its residual block, on images
    job = one_plugin(impl.name, WrongShape, "deep_dense", "image", "dense")
    with pytest.raises(PluginError, match="plugin deep_dense: .* shape"):
        run(impl, job)


def test_a_torch_parameter_named_like_a_module_attribute_names_the_plugin():
    """nn.Module holds a parameter under its name: `train` (a method) cannot be one."""
    pytest.importorskip("torch")
    from crossgrad.impls.canonical import PluginError
    from crossgrad.impls.torch_autograd.layers import Plugin

    class Clash:
        def params(self, in_shape):
            return {"train": ((3,), "ones")}

        def torch(self, p, x):
            return x * p["train"]
    layer = {"type": "clash", "params": {"train": [3]}, "plugin": Clash(), "in_shape": [3],
             "out_shape": [3]}
    with pytest.raises(PluginError, match=r"^plugin clash: params names a parameter 'train', "
                                          r"an attribute of torch's nn\.Module.* \(test_a_torch"
                                          r".*Clash\.params at test_plugin_impls\.py:\d+\)$"):
        Plugin(layer, "float64")


def test_a_missing_method_is_not_implemented(impl):
    method = {"numpy": "numpy_forward"}.get(impl.name, impl.name)
    cls = type("Partial", (), {m: getattr(Dense, m) for m in ("numpy_forward", "numpy_backward",
                                                               "torch", "tensorflow", "jax")
                               if m != method})
    job = one_plugin(impl.name, cls, "partial")
    with pytest.raises(NotImplementedError, match=f"^plugin partial has no {impl.name} "
                                                  f"implementation$"):
        impl.model.build_model(job["spec"])


def test_numpy_without_backward_evaluates_the_loss_only():
    impl = registry.load("numpy")
    builtin, _ = jobs("vector", "numpy")
    forward_only = type("ForwardOnly", (), {"numpy_forward": Dense.numpy_forward})
    job = one_plugin("numpy", forward_only, "forward_only")
    model = impl.model.build_model(job["spec"])
    impl.model.set_params(model, job["params"], job["state"])
    assert impl.model.loss_value(model, job["x"], job["y"], job["masks"]) == \
        run(impl, builtin)["loss"]
    with pytest.raises(NotImplementedError, match="plugin forward_only has no numpy_backward"):
        impl.model.loss_and_gradients(model, job["x"], job["y"], job["masks"])


@pytest.mark.parametrize("mistake, words", [
    ("dx", "returned dx of shape (batch, 63), expected (batch, 64)"),
    ("names", "returned gradients for ['W'], its parameters are ['W', 'b']"),
    ("dtype", "returned the gradient of b in float32"),
    ("pair", "must return (dx, {name: gradient}), returned a ndarray"),
])
def test_a_wrong_numpy_backward_names_the_plugin(mistake, words):
    from crossgrad.impls.canonical import PluginError

    class Broken(Dense):
        def numpy_backward(self, p, x, dy):
            dx, grads = super().numpy_backward(p, x, dy)
            if mistake == "dx":
                return dx[:, :-1], grads
            if mistake == "names":
                return dx, {"W": grads["W"]}
            if mistake == "dtype":
                return dx, dict(grads, b=grads["b"].astype(np.float32))
            return dx
    with pytest.raises(PluginError, match="^plugin broken: numpy_backward ") as caught:
        run(registry.load("numpy"), one_plugin("numpy", Broken, "broken"))
    assert words in str(caught.value), str(caught.value)


def test_a_python_branch_in_a_jax_plugin_is_one_line_with_what_to_write():
    """JAX's error runs to paragraphs naming the implementation's traced function; the
    worker's line keeps its first line, where, and the way out (a plugin loaded from its
    file is named by that file: here the class lives in this test module)."""
    pytest.importorskip("jax")
    from crossgrad.harness.run.worker import _short_error

    class Branchy(Dense):
        def jax(self, p, x):
            y = Dense.jax(self, p, x)
            return y if (y > 0).all() else -y
    with pytest.raises(Exception) as caught:
        run(registry.load("jax"), one_plugin("jax", Branchy, "branchy"))
    message = _short_error(caught.value)
    assert "\n" not in message and "impls/" not in message, message
    assert re.fullmatch(r"TracerBoolConversionError: Attempted boolean conversion of traced "
                        r"array with shape bool\[\]\. \(a Python branch or NumPy call on a "
                        r"value jax\.jit traces: use jnp\.where, lax\.cond or jnp\) "
                        r"\(at \w+\.py:\d+\)", message), message


def test_a_numpy_scalar_gradient_of_a_scalar_parameter_is_an_array():
    """np.sum's gradient of a () parameter is an np.float64: right shape and dtype, so taken,
    as a 0-d array (training clips and updates gradients in place)."""
    from crossgrad.impls.numpy_manual.layers import plugin

    class Scale:
        def numpy_forward(self, p, x):
            return x * p["g"], x

        def numpy_backward(self, p, x, dy):
            return dy * p["g"], {"g": np.sum(dy * x)}
    layer = {"type": "scale", "params": {"g": []}, "plugin": Scale(), "in_shape": [3],
             "out_shape": [3]}
    built, x, dy = plugin(layer, "float64", False), np.arange(6.0).reshape(2, 3), np.ones((2, 3))
    y, cache = built.forward({"g": np.array(2.0)}, x, {})
    _, grads = built.backward({"g": np.array(2.0)}, cache, dy)
    assert isinstance(grads["g"], np.ndarray) and grads["g"].shape == () and grads["g"] == 15.0
    grads["g"] *= 0.5  # in place, as clipping does
    assert grads["g"] == 7.5


def test_the_worker_names_the_plugin_line_not_the_check():
    """The worker's one-line error keeps the plugin's file and line, not canonical.py's."""
    from crossgrad.harness.run.worker import _short_error
    try:
        run(registry.load("numpy"), one_plugin("numpy", WrongShape, "bad_dense"))
    except Exception as err:  # noqa: BLE001 - the error under test
        message = _short_error(err)
    assert re.fullmatch(r"PluginError: plugin bad_dense: numpy_forward returned y of shape "
                        r"\(batch, 6\), expected \(batch, 7\) \(WrongShape\.numpy_forward at "
                        r"test_plugin_impls\.py:\d+\)", message), message
