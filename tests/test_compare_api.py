"""crossgrad.compare and crossgrad.testing: a user's own functions, written once per framework.

Three families (a normalisation, an attention score, a custom loss), each with NumPy's
gradient written by hand, agree in float64 as spec models do; a changed epsilon in one
framework is reported and assert_close raises; inputs and framework globals are left
as found; bad arguments name the framework and the parameter."""
import math

import numpy as np
import pytest

import crossgrad
from crossgrad import CompareError
from crossgrad.harness import registry
from crossgrad.testing import assert_gradients_agree, assert_spec_agrees

from conftest import FRAMEWORKS

INSTALLED = [fw for fw in FRAMEWORKS if registry.installed(fw)]
RNG = np.random.default_rng(7)
EPS = 1e-5


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Whatever a command caches goes under tmp_path, never into the user's cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def need(*fws):
    missing = [fw for fw in fws if fw not in INSTALLED]
    if missing:
        pytest.skip(f"{missing[0]} is not installed")


# ---- layer normalisation over the last axis: y = gamma * (x - mu) / sqrt(var + eps) + beta -----

def layernorm_numpy(p, r, eps=EPS):
    x, gamma, beta = p["x"], p["gamma"], p["beta"]
    mu = x.mean(-1, keepdims=True)
    inv = 1 / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)
    xhat = (x - mu) * inv
    dy = r                                                       # loss = sum(y * r)
    dxhat = dy * gamma
    dx = inv * (dxhat - dxhat.mean(-1, keepdims=True)
                - xhat * (dxhat * xhat).mean(-1, keepdims=True))
    loss = ((gamma * xhat + beta) * r).sum()
    return loss, {"x": dx, "gamma": (dy * xhat).sum(0), "beta": dy.sum(0)}


def layernorm_torch(p, r, eps=EPS):
    import torch.nn.functional as F
    y = F.layer_norm(p["x"], p["x"].shape[-1:], p["gamma"], p["beta"], eps)
    return (y * r).sum()


def layernorm_tensorflow(p, r, eps=EPS):
    import tensorflow as tf
    mean, var = tf.nn.moments(p["x"], axes=[-1], keepdims=True)
    y = tf.nn.batch_normalization(p["x"], mean, var, p["beta"], p["gamma"], eps)
    return tf.reduce_sum(y * r)


def layernorm_jax(p, r, eps=EPS):
    import jax
    y = jax.nn.standardize(p["x"], axis=-1, epsilon=eps) * p["gamma"] + p["beta"]
    return (y * r).sum()


# ---- attention scores: A = softmax(x Wq (x Wk)^T / sqrt(k)), loss = sum(A * r) ------------------

def attention_numpy(p, x, r):
    scale = 1 / math.sqrt(p["Wq"].shape[1])
    q, k = x @ p["Wq"], x @ p["Wk"]
    s = q @ k.T * scale
    a = np.exp(s - s.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    ds = a * (r - (r * a).sum(-1, keepdims=True))                # softmax backward
    dq, dk = ds @ k * scale, ds.T @ q * scale
    return (a * r).sum(), {"Wq": x.T @ dq, "Wk": x.T @ dk}


def attention_torch(p, x, r):
    q, k = x @ p["Wq"], x @ p["Wk"]
    return ((q @ k.T / math.sqrt(q.shape[1])).softmax(-1) * r).sum()


def attention_tensorflow(p, x, r):
    import tensorflow as tf
    q, k = tf.matmul(x, p["Wq"]), tf.matmul(x, p["Wk"])
    scores = tf.matmul(q, k, transpose_b=True) / math.sqrt(q.shape[1])
    return tf.reduce_sum(tf.nn.softmax(scores) * r)


def attention_jax(p, x, r):
    import jax
    q, k = x @ p["Wq"], x @ p["Wk"]
    return (jax.nn.softmax(q @ k.T / math.sqrt(q.shape[1])) * r).sum()


# ---- focal loss of a linear classifier: mean((1 - p_t)^g * -log p_t), g = 2 --------------------

GAMMA = 2.0


def focal_numpy(p, x, labels):
    z = x @ p["W"] + p["b"]
    z = z - z.max(1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    n = len(labels)
    pt = probs[np.arange(n), labels]
    loss = np.mean((1 - pt) ** GAMMA * -np.log(pt))
    dpt = (GAMMA * (1 - pt) ** (GAMMA - 1) * np.log(pt) - (1 - pt) ** GAMMA / pt) / n
    onehot = np.eye(p["W"].shape[1], dtype=x.dtype)[labels]
    dz = (dpt * pt)[:, None] * (onehot - probs)                  # d p_t / d z = p_t (1_y - p)
    return loss, {"W": x.T @ dz, "b": dz.sum(0)}


def focal_torch(p, x, labels):
    import torch
    logpt = torch.log_softmax(x @ p["W"] + p["b"], 1).gather(1, labels[:, None])[:, 0]
    return ((1 - logpt.exp()) ** GAMMA * -logpt).mean()


def focal_tensorflow(p, x, labels):
    import tensorflow as tf
    logp = tf.nn.log_softmax(tf.matmul(x, p["W"]) + p["b"])
    logpt = tf.gather(logp, labels, batch_dims=1)
    return tf.reduce_mean((1 - tf.exp(logpt)) ** GAMMA * -logpt)


def focal_jax(p, x, labels):
    import jax
    import jax.numpy as jnp
    logp = jax.nn.log_softmax(x @ p["W"] + p["b"])
    logpt = jnp.take_along_axis(logp, labels[:, None], 1)[:, 0]
    return ((1 - jnp.exp(logpt)) ** GAMMA * -logpt).mean()


FAMILIES = {
    "layernorm": ({"x": RNG.normal(size=(4, 6)), "gamma": RNG.normal(1, 0.2, 6),
                   "beta": RNG.normal(0, 0.2, 6)}, (RNG.normal(size=(4, 6)),)),
    "attention": ({"Wq": RNG.normal(size=(5, 3)), "Wk": RNG.normal(size=(5, 3))},
                  (RNG.normal(size=(7, 5)), RNG.normal(size=(7, 7)))),
    "focal": ({"W": RNG.normal(size=(5, 4)), "b": RNG.normal(size=4)},
              (RNG.normal(size=(9, 5)), RNG.integers(0, 4, 9))),
}


def functions(family, frameworks=FRAMEWORKS):
    return {fw: globals()[f"{family}_{fw}"] for fw in frameworks if fw in INSTALLED}


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_three_families_agree_in_every_framework(family, dtype):
    params, inputs = FAMILIES[family]
    res = crossgrad.compare(params=params, inputs=inputs, dtype=dtype, **functions(family))
    assert res.passed, res.report()
    rows = res.comparisons
    assert set(rows["a"]) | set(rows["b"]) == set(INSTALLED)
    assert set(rows["param"]) == {"loss", *params}
    assert rows["rel_err"].max() <= {"float64": 1e-12, "float32": 1e-5}[dtype]
    fd = res.finite_difference
    if dtype == "float64":
        assert set(fd["framework"]) == set(INSTALLED) and set(fd["param"]) == set(params)
        assert (fd["status"] == "ok").all() and fd["rel_err"].max() <= 1e-6
    else:
        assert fd.empty
    for fw, grads in res.gradients.items():
        assert all(g.dtype == np.dtype(dtype) for g in grads.values()), fw


@pytest.mark.slow
def test_a_changed_epsilon_is_reported():
    """TensorFlow's LayerNormalization default (1e-3) where the others use 1e-5."""
    need("tensorflow")
    params, inputs = FAMILIES["layernorm"]
    fns = functions("layernorm")
    fns["tensorflow"] = lambda p, r: layernorm_tensorflow(p, r, eps=1e-3)
    res = crossgrad.compare(params=params, inputs=inputs, **fns)
    assert not res.passed
    bad = res.comparisons[~res.comparisons["passed"]]
    assert set(bad["a"]) | set(bad["b"]) >= {"tensorflow"}
    assert all("tensorflow" in (a, b) for a, b in zip(bad["a"], bad["b"]))
    assert set(bad["param"]) >= {"loss", "x"}
    fd = res.finite_difference
    assert (fd[fd["framework"] == "tensorflow"]["passed"]).all()  # its own loss, its own eps
    with pytest.raises(AssertionError) as caught:
        res.assert_close()
    message = str(caught.value)
    assert message.startswith("Gradients disagree")
    assert "Worst pairwise errors" in message and "tensorflow" in message
    worst = bad.sort_values("rel_err").iloc[-1]
    assert f"{worst['rel_err']:.1e}" in message and worst["param"] in message


def test_inputs_are_never_modified():
    """A function that writes into its arguments changes nothing outside its call."""
    need("torch")
    params, (r,) = FAMILIES["layernorm"]
    before = {k: v.copy() for k, v in params.items()}, r.copy()

    def scribbling(p, r):
        loss, grads = layernorm_numpy(p, r)
        p["x"] *= 0
        r += 1
        return loss, grads
    res = crossgrad.compare(params=params, inputs=(r,), numpy=scribbling, torch=layernorm_torch)
    assert res.passed, res.report()
    assert all(np.array_equal(params[k], v) for k, v in before[0].items())
    assert np.array_equal(r, before[1])


@pytest.mark.slow
def test_framework_globals_are_left_as_found():
    need("torch", "tensorflow", "jax")
    import jax
    import keras
    import torch
    found = torch.get_default_dtype(), keras.backend.floatx(), jax.config.jax_enable_x64
    seen = {}

    def torch_fn(p, r):
        seen["torch"] = torch.get_default_dtype()
        return layernorm_torch(p, r)

    def tf_fn(p, r):
        seen["keras"] = keras.backend.floatx()
        return layernorm_tensorflow(p, r)

    def jax_fn(p, r):
        seen["jax"] = jax.config.jax_enable_x64
        return layernorm_jax(p, r)
    params, inputs = FAMILIES["layernorm"]
    assert crossgrad.compare(params, inputs, torch=torch_fn, tensorflow=tf_fn, jax=jax_fn).passed
    assert seen == {"torch": torch.float64, "keras": "float64", "jax": True}
    assert (torch.get_default_dtype(), keras.backend.floatx(), jax.config.jax_enable_x64) == found


def test_keras_dtype_policy_is_left_as_found():
    """A Keras layer made inside a function computes in compare's dtype, and the global
    policy is left as it was found: unset stays unset (its first read would fix it at that
    moment's floatx), and one fixed before in float32 does not keep float64 layers float32."""
    need("tensorflow", "torch")
    import keras
    from keras.src.backend.common import global_state

    def keras_norm(p, r):  # a Keras layer of the user's, made in the call
        layer = keras.layers.LayerNormalization(epsilon=EPS, center=False, scale=False)
        return layernorm_tensorflow(p, r) + 0 * keras.ops.sum(layer(p["x"]))
    params, inputs = FAMILIES["layernorm"]
    global_state.set_global_attribute("dtype_policy", None)
    try:
        for dtype in ("float64", "float32"):
            assert crossgrad.compare(params, inputs, torch=layernorm_torch, tensorflow=keras_norm,
                                     dtype=dtype).passed
            assert global_state.get_global_attribute("dtype_policy") is None
        assert keras.config.dtype_policy().name == "float32"  # fixed now, by this read
        assert crossgrad.compare(params, inputs, torch=layernorm_torch,
                                 tensorflow=keras_norm).passed
        assert keras.config.dtype_policy().name == "float32"
    finally:
        global_state.set_global_attribute("dtype_policy", None)


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode", "set_grad_enabled"])
def test_torch_autograd_runs_whatever_the_callers_mode(mode):
    need("torch")
    import torch
    params, inputs = FAMILIES["focal"]
    context = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode,
               "set_grad_enabled": lambda: torch.set_grad_enabled(False)}[mode]
    with context():
        result = crossgrad.compare(params, inputs, numpy=focal_numpy, torch=focal_torch)
        assert not torch.is_grad_enabled()
    assert result.passed, result.report()


def test_a_sparse_torch_gradient_is_compared_dense():
    need("torch")
    import torch
    table, ids = RNG.standard_normal((6, 3)), np.array([4, 1, 4, 0])

    def numpy_fn(p, ids):
        rows = p["E"][ids]
        grad = np.zeros_like(p["E"])
        np.add.at(grad, ids, 2 * rows)
        return (rows ** 2).sum(), {"E": grad}
    sparse = lambda p, ids: (torch.nn.functional.embedding(ids, p["E"], sparse=True) ** 2).sum()  # noqa: E731
    assert crossgrad.compare({"E": table}, (ids,), numpy=numpy_fn, torch=sparse).passed


def test_float32_turns_off_a_callers_jax_x64():
    """Float32 is float32 in JAX too: a constant made in the function (jnp.ones) follows it."""
    need("jax", "torch")
    import jax
    import jax.numpy as jnp
    import torch
    found = jax.config.jax_enable_x64
    params, inputs = FAMILIES["layernorm"]
    jax.config.update("jax_enable_x64", True)
    try:
        result = crossgrad.compare(params, inputs, dtype="float32",
                                   torch=lambda p, r: layernorm_torch(p, r) * torch.ones(()),
                                   jax=lambda p, r: layernorm_jax(p, r) * jnp.ones(()))
        assert result.passed, result.report()
        assert jax.config.jax_enable_x64
    finally:
        jax.config.update("jax_enable_x64", found)


def test_a_python_float_gradient_takes_the_compared_dtype():
    """A NumPy function's Python float gradient of a () param says no dtype, as its Python
    float loss does: both are taken in float32 for a float32 comparison."""
    need("torch")
    x = RNG.standard_normal(5)

    def numpy_fn(p, x):
        s = float(p["s"])
        return float((s * x).sum()), {"s": float(x.sum())}
    result = crossgrad.compare({"s": np.array(0.5)}, (x,), dtype="float32", numpy=numpy_fn,
                               torch=lambda p, x: (p["s"] * x).sum())
    assert result.gradients["numpy"]["s"].dtype == np.float32
    assert result.passed, result.report()


# one MAML inner step: the loss differentiates its own inner loss with respect to the params
def maml_torch(p, xs, ys, xq, yq):
    import torch
    (g,) = torch.autograd.grad(((xs @ p["W"] - ys) ** 2).mean(), p["W"], create_graph=True)
    return ((xq @ (p["W"] - 0.1 * g) - yq) ** 2).mean()


def maml_tensorflow(p, xs, ys, xq, yq):
    import tensorflow as tf
    with tf.GradientTape() as tape:
        inner = tf.reduce_mean((xs @ p["W"] - ys) ** 2)
    return tf.reduce_mean((xq @ (p["W"] - 0.1 * tape.gradient(inner, p["W"])) - yq) ** 2)


def maml_jax(p, xs, ys, xq, yq):
    import jax
    g = jax.grad(lambda w: ((xs @ w - ys) ** 2).mean())(p["W"])
    return ((xq @ (p["W"] - 0.1 * g) - yq) ** 2).mean()


def test_a_loss_that_differentiates_inside_itself_is_probed_as_it_is_differentiated():
    """The finite-difference probes call each function with the params as its gradient was
    taken (requiring grad in torch, tf.Variables): torch.autograd.grad inside the loss
    raised there, and TensorFlow's inner tape watched nothing."""
    need("torch", "tensorflow", "jax")
    xs, ys, xq, yq = (RNG.standard_normal(s) for s in [(8, 3), (8, 1), (8, 3), (8, 1)])
    result = crossgrad.compare({"W": RNG.standard_normal((3, 1))}, (xs, ys, xq, yq),
                               torch=maml_torch, tensorflow=maml_tensorflow, jax=maml_jax)
    assert {r["framework"] for r in result.probe_rows} == {"torch", "tensorflow", "jax"}
    assert result.passed, result.report()


def test_a_loss_nan_in_every_framework_is_said_so():
    need("torch", "jax")
    import jax.numpy as jnp
    x = -np.abs(RNG.standard_normal(4))  # log of negative numbers
    result = crossgrad.compare({"w": np.array(1.0)}, (x,),
                               torch=lambda p, x: (p["w"] * x).log().sum(),
                               jax=lambda p, x: jnp.log(p["w"] * x).sum())
    assert not result.passed and result.probe_rows == []
    assert result.not_finite == ("the loss is nan in every framework (torch, jax): nothing can "
                                 "be compared at these params")
    assert "NOT FINITE" in repr(result)
    with pytest.raises(AssertionError, match="^Loss not finite: the loss is nan"):
        result.assert_close()


def _missing_b(p, x, labels):
    loss, grads = focal_numpy(p, x, labels)
    return loss, {"W": grads["W"]}


def _wrong_shape(p, x, labels):
    loss, grads = focal_numpy(p, x, labels)
    return loss, dict(grads, W=grads["W"].T)


def _float32_grad(p, x, labels):
    loss, grads = focal_numpy(p, x, labels)
    return loss, dict(grads, b=grads["b"].astype(np.float32))


BAD = {
    # case: (compare's keyword arguments besides params and inputs, the message's start)
    "one_framework": ({"torch": focal_torch}, "compare needs functions from two or more"),
    "not_callable": ({"numpy": focal_numpy, "torch": "focal"}, "torch: must be a function"),
    "missing_param": ({"numpy": _missing_b, "torch": focal_torch},
                      "numpy: no gradient for param 'b'"),
    "shapes_differ": ({"numpy": _wrong_shape, "torch": focal_torch},
                      "numpy: the gradient of 'W' has shape (4, 5), the param (5, 4)"),
    "gradient_dtype": ({"numpy": _float32_grad, "torch": focal_torch},
                       "numpy: the gradient of 'b' is float32, expected float64"),
    "numpy_not_a_pair": ({"numpy": lambda p, x, y: 1.0, "torch": focal_torch},
                         "numpy: must return (loss, {param: gradient})"),
    "not_scalar": ({"numpy": focal_numpy,
                    "torch": lambda p, x, y: (x @ p["W"] + p["b"]).sum(0)},
                   "torch: the loss must be a scalar, got shape (4,)"),
    "raises": ({"numpy": focal_numpy, "torch": lambda p, x, y: p["W"] @ p["nope"]},
               "torch: the function raised KeyError: 'nope'"),
    "leaves_the_graph": ({"numpy": focal_numpy,
                          "torch": lambda p, x, y: focal_torch(dict(p, b=p["b"].detach()), x, y)},
                         "torch: no gradient reached param 'b'"),
    "not_a_tensor": ({"numpy": focal_numpy, "torch": lambda p, x, y: 0.5},
                     "torch: the loss must be a torch tensor, got float"),
    "loss_dtype": ({"numpy": focal_numpy, "torch": lambda p, x, y: focal_torch(p, x, y).float()},
                   "torch: the loss is float32, expected float64"),
    "bad_dtype": ({"numpy": focal_numpy, "torch": focal_torch, "dtype": "float16"},
                  "dtype must be one of float64, float32"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_arguments_name_the_framework_and_the_parameter(case):
    need("torch")
    kwargs, message = BAD[case]
    params, inputs = FAMILIES["focal"]
    with pytest.raises(CompareError) as caught:
        crossgrad.compare(params, inputs, **kwargs)
    assert str(caught.value).startswith(message), str(caught.value)


@pytest.mark.parametrize("params, message", [
    ([1.0], "params must be a non-empty dict"),
    ({}, "params must be a non-empty dict"),
    ({"W": np.array([1.0, np.nan])}, "params['W']: must be real and finite"),
    ({"W": "abc"}, "params['W']: not an array of real numbers"),
    ({"W": np.ones(2) * 1j}, "params['W']: not an array of real numbers"),
    ("torch_tensor_requiring_grad", "params['W']: not an array of real numbers (RuntimeError"),
])
def test_bad_params(params, message):
    need("torch")
    if params == "torch_tensor_requiring_grad":
        import torch
        params = {"W": torch.ones(2, dtype=torch.float64, requires_grad=True)}
    with pytest.raises(CompareError, match=message.replace("[", r"\[").replace("(", r"\(")):
        crossgrad.compare(params, (), numpy=lambda p: (0.0, {}), torch=lambda p: p["W"].sum())


def test_a_raising_function_keeps_its_cause():
    need("jax")
    params, inputs = FAMILIES["focal"]

    def broken(p, x, labels):
        return focal_jax(p, x, labels) / {}["missing"]
    with pytest.raises(CompareError, match=r"^jax: the function raised KeyError: 'missing' "
                                           r"\(at .*test_compare_api.py:\d+\)") as caught:
        crossgrad.compare(params, inputs, numpy=focal_numpy, jax=broken)
    assert isinstance(caught.value.__cause__, KeyError)


def _raising_backward(framework):
    """A squared norm whose custom gradient raises, written with `framework`'s own tool."""
    def boom(*_):
        raise ValueError(f"{framework} backward boom")
    if framework == "torch":
        import torch

        class Square(torch.autograd.Function):
            forward = staticmethod(lambda ctx, w: (w * w).sum())
            backward = staticmethod(boom)
        return lambda p: Square.apply(p["W"])
    if framework == "tensorflow":
        import tensorflow as tf

        @tf.custom_gradient
        def tf_square(w):
            return tf.reduce_sum(w * w), boom
        return lambda p: tf_square(p["W"])
    import jax

    @jax.custom_vjp
    def square(w):
        return (w * w).sum()
    square.defvjp(lambda w: (square(w), w), boom)
    return lambda p: square(p["W"])


@pytest.mark.parametrize("framework", ["torch", "tensorflow", "jax"])
def test_a_raising_custom_gradient_is_a_compare_error_naming_its_line(framework):
    """The backward pass runs the user's code too: a custom gradient that raises is the
    framework's CompareError with the line, not a traceback out of the framework's AD."""
    need("numpy", framework)
    w = np.arange(1.0, 4.0)
    with pytest.raises(CompareError, match=rf"^{framework}: the backward pass raised ValueError: "
                                           rf"{framework} backward boom \(at .*test_compare_api"
                                           r"\.py:\d+\)") as caught:
        crossgrad.compare({"W": w}, (), numpy=lambda p: ((p["W"] ** 2).sum(), {"W": 2 * p["W"]}),
                          **{framework: _raising_backward(framework)})
    assert isinstance(caught.value.__cause__, ValueError)


def test_an_in_place_change_autograd_refuses_is_a_compare_error():
    need("torch")
    w = np.arange(1.0, 4.0)

    def changes_what_it_used(p):
        y = p["W"].exp()
        y.mul_(2.0)  # exp's backward needs its output as it was
        return y.sum()
    line = changes_what_it_used.__code__.co_firstlineno
    with pytest.raises(CompareError, match=r"^torch: the backward pass raised RuntimeError: "
                                           r"one of the variables needed") as caught:
        crossgrad.compare({"W": w}, (), numpy=lambda p: (0.0, {"W": p["W"]}),
                          torch=changes_what_it_used)
    # autograd raises it from C++, with no line of the user's on the stack: the function
    assert str(caught.value).endswith(
        f"(through the graph of test_an_in_place_change_autograd_refuses_is_a_compare_error."
        f"<locals>.changes_what_it_used, defined at {__file__}:{line})")


def test_arrays_inside_a_dict_input_are_never_modified():
    need("jax")
    w, batch = np.arange(1.0, 4.0), {"x": np.arange(3.0), "scale": [np.ones(3)]}
    kept = {"x": batch["x"].copy(), "scale": batch["scale"][0].copy()}

    def writes_into_its_inputs(p, d):
        d["x"] *= 2.0
        d["scale"][0] += 1.0
        return (p["W"] * d["x"] * d["scale"][0]).sum(), {"W": d["x"] * d["scale"][0]}
    crossgrad.compare({"W": w}, (batch,), numpy=writes_into_its_inputs,
                      jax=lambda p, d: (p["W"] * d["x"] * d["scale"][0]).sum())
    assert np.array_equal(batch["x"], kept["x"]) and np.array_equal(batch["scale"][0],
                                                                    kept["scale"])


# ---- crossgrad.testing --------------------------------------------------------------------------

def test_assert_gradients_agree_passes_and_fails_like_numpy_testing():
    need("torch")
    params, inputs = FAMILIES["attention"]
    result = assert_gradients_agree(params, inputs, numpy=attention_numpy, torch=attention_torch)
    assert result.passed
    wrong = lambda p, x, r: attention_torch(p, x, r) * (1 + 1e-9)  # noqa: E731
    with pytest.raises(AssertionError) as caught:
        assert_gradients_agree(params, inputs, numpy=attention_numpy, torch=wrong)
    lines = str(caught.value).splitlines()
    assert lines[0].startswith("Gradients disagree (numpy, torch; pairwise relative error: "
                               "float64 <= 1e-12")
    assert lines[2] == "Mismatched: 3 of 3 pairwise comparisons, 0 of 12 finite-difference probes"
    assert lines[3] == "Worst pairwise errors:"
    assert lines[4].split() == ["param", "a", "b", "max_abs_err", "rel_err", "cosine"]
    assert {line.split()[0] for line in lines[5:8]} == {"loss", "Wq", "Wk"}


@pytest.mark.slow
def test_assert_spec_agrees(tmp_path):
    assert assert_spec_agrees("xor_2_2_1", frameworks=["numpy", "torch"]).passed
    import json
    from pathlib import Path
    variants = Path(__file__).parent / "plugins" / "swish_variants.py"
    spec = {"name": "dropped", "input_shape": [64], "plugins": [str(variants)],
            "data": {"source": "digits", "batch_size": 7},
            "loss": {"type": "softmax_cross_entropy"},
            "layers": [{"type": "dense", "units": 8}, {"type": "swish_dropped_term"},
                       {"type": "dense", "units": 10}]}
    (tmp_path / "dropped.json").write_text(json.dumps(spec))
    with pytest.raises(AssertionError) as caught:
        assert_spec_agrees(tmp_path / "dropped.json", frameworks=["numpy", "torch"])
    message = str(caught.value)
    assert message.startswith("Spec gradients disagree: dropped (float64)")
    assert "Worst pairwise errors" in message and "Worst finite differences" in message
    worst = message.split("Worst pairwise errors")[1].splitlines()[2].split()
    assert worst[:5] == ["dropped", "float64", "0.W", "numpy", "torch"] or \
        worst[:5] == ["dropped", "float64", "0.b", "numpy", "torch"]


@pytest.mark.slow
def test_assert_spec_agrees_fails_where_nothing_was_checked(tmp_path):
    """A framework named in `frameworks` and skipped (a plugin without its method: a typo in
    the method's name does it), or a model with nothing compared, fails the assertion; a
    string of names is names, not letters."""
    assert assert_spec_agrees("xor_2_2_1", frameworks="numpy,torch").passed
    import json
    from pathlib import Path
    variants = Path(__file__).parent / "plugins" / "swish_variants.py"
    spec = {"name": "partial", "input_shape": [4], "plugins": [str(variants)],
            "data": {"source": "random_regression", "outputs": 2, "batch_size": 3},
            "loss": {"type": "mse"},
            "layers": [{"type": "dense", "units": 2}, {"type": "swish_partial"}]}
    (tmp_path / "partial.json").write_text(json.dumps(spec))
    with pytest.raises(AssertionError) as caught:
        assert_spec_agrees(tmp_path / "partial.json", frameworks=["torch", "tensorflow"])
    lines = str(caught.value).splitlines()
    assert lines[0].startswith("Spec not checked in full")
    assert " partial float64: tensorflow skipped: plugin swish_partial has no tensorflow " \
           "implementation" in lines
    with pytest.raises(AssertionError, match="partial float32: nothing compared"):
        assert_spec_agrees(crossgrad.load(tmp_path / "partial.json", dtype="float32"),
                           frameworks=["tensorflow", "jax"])
