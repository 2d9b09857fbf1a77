"""`crossgrad import keras` and the original Keras model as a fifth participant.

Zoo models built with the Keras functional API (tests/exports.py: Dense and Conv2D with
fused activations, Add layers and `x + y`), saved as .keras files in tmp_path, imported
back and checked against the four in float64 and float32. Two differences are Keras'
own and the check shows them where they are: BatchNormalization keeps the biased batch
variance in its moving variance (the running variances part), and MultiHeadAttention
scales its scores by 1/sqrt(key_dim) rounded through float32 (float64 outputs part at
the attention). A channels_first model runs with its Flatten's rows permuted.
"""
import os

import numpy as np
import pytest

pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import crossgrad  # noqa: E402
from crossgrad.harness import api, registry  # noqa: E402
from crossgrad.harness.cli import main  # noqa: E402
from crossgrad.harness.errors import InputError  # noqa: E402
from crossgrad.harness.importers.build import import_keras  # noqa: E402
from crossgrad.harness.spec import zoo_spec  # noqa: E402
from exports import data_source, keras_model  # noqa: E402

AGREE = ["digits_cnn", "seq_gru"]  # (tiny_transformer has both residual forms)
KERAS_OWN = ["batchnorm_mlp", "tiny_transformer"]
DTYPES = ["float64", "float32"]
L = keras.layers


def port(folder, name):
    spec = zoo_spec(name)
    keras_model(spec).save(folder / f"{name}.keras")
    return import_keras(folder / f"{name}.keras", spec.loss["type"], data=data_source(spec),
                        out=folder / f"{name}.toml")


@pytest.fixture(scope="module")
def zoo_checks(tmp_path_factory, executor):
    folder = tmp_path_factory.mktemp("keras_zoo")
    ported = [port(folder, name).spec for name in AGREE + KERAS_OWN]  # each .keras saved once
    specs = [spec.with_overrides(dtype=dtype) for spec in ported for dtype in DTYPES]
    return {(m["name"], m["dtype"]): m for m in api.check(specs, executor=executor).models}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", AGREE)
def test_a_zoo_model_written_in_keras_agrees_with_the_four(zoo_checks, name, dtype):
    m = zoo_checks[(name, dtype)]
    ran = {fw for fw, info in m["frameworks"].items() if info["status"] == "ok"}
    assert ran == {fw for fw in [*registry.ORDER, "original"]
                   if fw == "original" or registry.installed(fw)}
    assert m["frameworks"]["original"]["model_framework"] == "keras"
    assert [c for c in m["comparisons"] if not c["passed"]] == []
    assert m["passed"] and m["first_parting"] == []


@pytest.mark.parametrize("dtype", DTYPES)
def test_keras_batchnorm_parts_in_its_running_variance_only(zoo_checks, dtype):
    """Keras' moving variance takes the biased batch variance (the spec's, PyTorch's, the
    unbiased one): every output, dL/dx and gradient agrees; the running variance does not."""
    m = zoo_checks[("batchnorm_mlp", dtype)]
    bad = [c for c in m["comparisons"] if not c["passed"]]
    assert bad and {(c["param"], c["kind"], c["b"]) for c in bad} == {
        ("1.running_var", "state", "original")}
    assert all(c["rel_err"] > 1e-4 for c in bad)   # n/(n-1) of a batch of 32, not rounding
    assert {p["direction"] for p in m["first_parting"]} == {"state"}
    assert {(p["pair"][1], p["layer"]) for p in m["first_parting"]} == {("original", "1")}


def test_keras_attention_parts_in_float64_at_the_attention(zoo_checks):
    """Keras' MultiHeadAttention scales by 1/sqrt(8) rounded through float32: in float64 the
    original parts from the four at the block holding the attention, forward; in float32
    that rounding is below the tolerance and everything agrees."""
    m = zoo_checks[("tiny_transformer", "float64")]
    bad = [c for c in m["comparisons"] if not c["passed"]]
    assert bad and all(c["b"] == "original" for c in bad)
    assert max(c["rel_err"] for c in bad) < 1e-6
    assert {(p["pair"][1], p["layer"], p["type"], p["direction"])
            for p in m["first_parting"]} == {("original", "1", "residual", "forward")}
    assert zoo_checks[("tiny_transformer", "float32")]["passed"]


def channels_first(folder, flatten_format):
    inputs = keras.Input((2, 8, 6))
    x = L.MaxPooling2D(2, data_format="channels_first")(inputs)
    x = L.AveragePooling2D(2, padding="same", data_format="channels_first")(x)
    x = L.Flatten(data_format=flatten_format)(x)
    x = L.Dropout(0.25)(x)
    x = L.Dense(5, activation="tanh")(x)
    keras.Model(inputs, L.Dense(3)(x)).save(folder / "cf.keras")
    return import_keras(folder / "cf.keras", "softmax_cross_entropy")


def test_a_channels_first_flatten_keeps_the_canonical_order(tmp_path):
    """Flatten(data_format="channels_first") moves the channels last before flattening."""
    done = channels_first(tmp_path, "channels_first")
    assert "rows permuted" not in done.text and "(channels_first)" in done.text


def test_a_channels_first_model_agrees(tmp_path, executor):
    """Keras 3 on a CPU runs channels_first pooling (not Conv2D: TensorFlow's CPU kernels
    are NHWC only). Flatten in its default data_format gives the (C, H, W) order: the Dense
    after it has its rows permuted."""
    done = channels_first(tmp_path, "channels_last")
    assert "(C, H, W) = (2, 8, 6) per example (channels_first)" in done.text
    assert "flattened in (C, H, W) = (2, 2, 2) order" in done.text and "rows permuted" in done.text
    specs = [done.spec.with_overrides(dtype=d) for d in DTYPES]
    frameworks = ["numpy", "tensorflow", "original"]
    result = api.check(specs, frameworks=frameworks, executor=executor)
    assert result.passed, [c for m in result.models for c in m["comparisons"] if not c["passed"]]
    trained = api.train([specs[0].with_overrides(**{"train.steps": 10})],
                        frameworks=frameworks, executor=executor)
    assert trained.passed


def test_a_channels_first_conv2d_imports_and_its_original_says_why_it_cannot_run(
        tmp_path, executor):
    inputs = keras.Input((1, 6, 6))
    x = L.Flatten()(L.Conv2D(2, 3, data_format="channels_first")(inputs))
    keras.Model(inputs, L.Dense(3)(x)).save(tmp_path / "conv.keras")
    spec = import_keras(tmp_path / "conv.keras", "softmax_cross_entropy").spec
    m = api.check([spec], frameworks=["numpy", "original"], executor=executor).models[0]
    error = m["frameworks"]["original"]["error"]
    assert m["frameworks"]["numpy"]["status"] == "ok"
    assert "TensorFlow: " in error and "only supports NHWC" in error and "\n" not in error


def test_a_frozen_layer_is_compared_as_trainable(tmp_path, executor):
    """A spec's parameters are all trainable, so the original is unfrozen: a
    BatchNormalization frozen for fine-tuning would normalise with its moving statistics."""
    inputs = keras.Input((6,))
    frozen = L.BatchNormalization()
    frozen.trainable = False
    keras.Model(inputs, L.Dense(3)(frozen(L.Dense(4)(inputs)))).save(tmp_path / "frozen.keras")
    spec = import_keras(tmp_path / "frozen.keras", "mse").spec
    m = api.check([spec], frameworks=["numpy", "original"], executor=executor).models[0]
    parted = {c["param"] for c in m["comparisons"] if not c["passed"]}
    assert parted <= {"1.running_var"}, parted  # Keras' biased variance, as in the zoo's
    assert all(r["passed"] for r in m["finite_difference"])


def test_training_the_keras_original_follows_the_four(tmp_path, executor):
    spec = port(tmp_path, "seq_gru").spec.with_overrides(
        **{"train.steps": 15, "optimizer.type": "rmsprop", "train.clip_norm": 1.0,
           "train.l1": 1e-4})
    m = api.train([spec], frameworks=["numpy", "tensorflow", "original"],
                  executor=executor).models[0]
    assert m["passed"] and m["frameworks"]["original"]["max_rel_diff"] <= 1e-10


# ---- bad input -----------------------------------------------------------------------------------

def _save(tmp_path, *layers, shape=(6,)):
    inputs = keras.Input(shape)
    x = inputs
    for layer in layers:
        x = layer(x)
    keras.Model(inputs, x).save(tmp_path / "m.keras")
    return tmp_path / "m.keras"


REFUSED = {  # the layers after keras.Input(shape), and what the one line says
    "transpose": ((4, 4, 1), lambda: [L.Conv2DTranspose(2, 2, name="up"), L.Flatten()],
                  "model.up: keras.layers.Conv2DTranspose has no crossgrad layer"),
    "softmax": ((6,), lambda: [L.Dense(3, activation="softmax", name="head")],
                "model.head: activation 'softmax' has no crossgrad layer"),
    "gru_reset_before": ((3, 2), lambda: [L.GRU(4, reset_after=False, name="gru")],
                         "model.gru: keras.layers.GRU with reset_after=False"),
    "dilation": ((5, 5, 1), lambda: [L.Conv2D(1, 2, dilation_rate=2, name="conv"), L.Flatten()],
                 "model.conv: keras.layers.Conv2D dilation_rate=(2, 2)"),
    "reshape": ((6,), lambda: [L.Reshape((3, 2), name="reshape"), L.Flatten()],
                "model.reshape: keras.layers.Reshape has no crossgrad layer"),
    "renorm": ((6,), lambda: [L.Dense(4), L.BatchNormalization(renorm=True, name="bn")],
               "model.bn: keras.layers.BatchNormalization with renorm"),
    "constraint": ((6,), lambda: [L.Dense(4, kernel_constraint="max_norm", name="fc")],
                   "model.fc: keras.layers.Dense with kernel_constraint"),
    "regularizer": ((6,), lambda: [L.Dense(4, bias_regularizer="l2", name="fc")],
                    "model.fc: keras.layers.Dense with bias_regularizer"),
    "flatten_channels_first_of_channels_last": (
        (4, 3, 2), lambda: [L.Flatten(data_format="channels_first", name="flat"), L.Dense(2)],
        "model.flat: keras.layers.Flatten (data_format='channels_first') on a channels_last"),
    "dropout_of_every_value": ((6,), lambda: [L.Dense(4), L.Dropout(1.0, name="drop")],
                               "model.drop: keras.layers.Dropout rate=1.0: drops every value; "
                               "crossgrad's dropout rate must be below 1"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_layer_crossgrad_cannot_express_is_refused(tmp_path, capsys, case):
    shape, layers, message = REFUSED[case]
    path = _save(tmp_path, *layers(), shape=shape)
    code = main(["import", "keras", str(path), "--loss", "mse", "--out", str(tmp_path / "o.toml")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"m.keras: {message}" in err, err
    assert sorted(os.listdir(tmp_path)) == ["m.keras"]


@pytest.mark.parametrize("join", [L.Concatenate, L.Add, L.Multiply])
def test_branches_that_are_not_x_plus_f_x_are_refused_naming_their_join(tmp_path, capsys, join):
    """The layer where the branches meet is named, with what it joins (not the first layer
    of the second branch, which is a Dense like any other)."""
    inputs = keras.Input((4,))
    a, b = L.Dense(2, name="a")(inputs), L.Dense(2, name="b")(inputs)
    keras.Model(inputs, L.Dense(3)(join(name="join")([a, b]))).save(tmp_path / "m.keras")
    assert main(["import", "keras", str(tmp_path / "m.keras"), "--loss", "mse", "--out",
                 str(tmp_path / "o.toml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and (
        f"m.keras: model.join: keras.layers.{join.__name__} joins branches (model.a, model.b): "
        "crossgrad reads straight chains (with x + f(x) blocks)") in err, err


@pytest.mark.parametrize("option, value", [
    ("kernel_regularizer", "l2"), ("bias_constraint", "non_neg"), ("activity_regularizer", "l1"),
])
def test_attention_s_regularizers_and_constraints_are_refused(tmp_path, capsys, option, value):
    """MultiHeadAttention keeps them as private attributes (_kernel_regularizer): taken for
    none, check and train would pass while the model adds to model.losses."""
    inputs = keras.Input((4, 6))
    x = L.MultiHeadAttention(2, 3, name="att", **{option: value})(inputs, inputs)
    keras.Model(inputs, L.Dense(3)(L.GlobalAveragePooling1D()(x))).save(tmp_path / "m.keras")
    code = main(["import", "keras", str(tmp_path / "m.keras"), "--loss", "mse", "--out",
                 str(tmp_path / "o.toml")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and (
        f"m.keras: model.att: keras.layers.MultiHeadAttention with {option}: crossgrad's "
        "layers have no constraints and no regularizers") in err, err
    assert sorted(os.listdir(tmp_path)) == ["m.keras"]


def test_a_loss_of_the_model_s_own_is_refused(monkeypatch):
    """model.losses, whatever adds to it (here a regularizer the layer checks are made to
    miss), would add to the original's loss and not to the four's."""
    from crossgrad.harness.importers import keras_layers
    monkeypatch.setattr(keras_layers, "_extras", lambda layer: [])
    model = keras.Sequential([keras.Input((4,)), L.Dense(3, kernel_regularizer="l2")])
    with pytest.raises(InputError, match=r"^model: adds 1 loss\(es\) of its own \(model.losses"):
        crossgrad.from_keras(model, loss="mse")


def _dense_twice_in_a_sequential():
    dense = L.Dense(4, activation="tanh", name="twice")
    return keras.Sequential([keras.Input((4,)), dense, dense, L.Dense(3)])


def _dense_given_another_s_kernel():
    inputs = keras.Input((4,))
    a, b = L.Dense(4, name="a"), L.Dense(4, name="b")
    model = keras.Model(inputs, L.Dense(2)(b(L.Activation("tanh")(a(inputs)))))
    b._tracker.unlock()       # Keras forbids it once built; the import must not take it
    b._kernel = a._kernel
    b._tracker.lock()
    return model


@pytest.mark.parametrize("build, message", [
    (_dense_twice_in_a_sequential, "model: model.twice: is called more than once (shared "
                                   "weights); each crossgrad layer has its own"),
    (_dense_given_another_s_kernel, "model: model.b: shares its weight a/kernel with model.a; "
                                    "each crossgrad layer has its own"),
])
def test_layers_sharing_a_weight_are_refused(build, message):
    with pytest.raises(InputError) as caught:
        crossgrad.from_keras(build(), loss="mse")
    assert str(caught.value) == message


def test_a_layer_called_once_here_and_also_in_another_model_imports():
    """An encoder's layer reused in a bigger model: its calls in the other model are not
    this model's."""
    encoder_layer = L.Dense(4, activation="tanh")
    inputs = keras.Input((4,))
    keras.Model(inputs, encoder_layer(inputs))            # the encoder, kept alive
    full_inputs = keras.Input((4,))
    full = keras.Model(full_inputs, L.Dense(3)(encoder_layer(full_inputs)))
    assert [layer["type"] for layer in crossgrad.from_keras(full, loss="mse").layers] == [
        "dense", "tanh", "dense"]


def test_lora_is_refused():
    """Its kernel is kernel + lora_kernel_a @ lora_kernel_b: the kernel alone is another
    layer."""
    model = keras.Sequential([keras.Input((4,)), L.Dense(3, lora_rank=2, name="fc")])
    with pytest.raises(InputError, match=r"^model: model.fc: keras.layers.Dense with LoRA "
                                         r"\(lora_rank\)"):
        crossgrad.from_keras(model, loss="mse")


def test_the_tanh_gelu_of_keras_ops_is_refused_the_exact_one_maps():
    """keras.ops.gelu and keras.activations.gelu are both named gelu; the first defaults to
    approximate=True."""
    def model(activation):
        return keras.Sequential([keras.Input((4,)), L.Dense(4, activation=activation, name="fc"),
                                 L.Dense(1)])
    with pytest.raises(InputError, match=r"^model: model.fc: activation 'gelu' with "
                                         r"approximate=True"):
        crossgrad.from_keras(model(keras.ops.gelu), loss="mse")
    spec = crossgrad.from_keras(model(keras.activations.gelu), loss="mse")
    assert [layer["type"] for layer in spec.layers] == ["dense", "gelu", "dense"]


def _pooled_then_flattened(flattens):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((2, 4, 4)),
                             L.MaxPooling2D(2, data_format="channels_first"),
                             *[L.Flatten() for _ in range(flattens)], L.Dense(2)])


@pytest.mark.parametrize("flattens", [1, 2])
def test_a_flatten_of_flat_values_keeps_their_order(flattens):
    """A second Flatten changes nothing: the Dense after it still takes its features in
    (C, H, W) order, its rows permuted to the spec's (H, W, C)."""
    model = _pooled_then_flattened(flattens)
    spec = crossgrad.from_keras(model, loss="mse")
    x = np.random.default_rng(0).normal(size=(3, 2, 4, 4))
    pooled = x.transpose(0, 2, 3, 1).reshape(3, 2, 2, 2, 2, 2).max(axis=(2, 4)).reshape(3, -1)
    dense = f"{flattens + 1}"
    by_spec = pooled @ spec.initial[f"{dense}.W"] + spec.initial[f"{dense}.b"]
    np.testing.assert_allclose(by_spec, np.asarray(model(x.astype("float32"))), rtol=1e-5,
                               atol=1e-6)


def test_x_plus_f_x_across_a_layout_change_is_refused():
    """Flatten of a channels_first image gives (C, H, W) order, the Dense after it the
    canonical one: x + f(x) would add values of two orders (the torch import refuses it)."""
    inputs = keras.Input((2, 4, 4))
    h = L.Flatten()(L.MaxPooling2D(2, data_format="channels_first")(inputs))
    h = L.Add(name="add")([h, L.Dense(8)(h)])
    with pytest.raises(InputError, match=r"^model: model.add: x \+ f\(x\) where f changes the "
                                         r"layout \(from \(C, H, W\) order to the canonical"):
        crossgrad.from_keras(keras.Model(inputs, L.Dense(2)(h)), loss="mse")


@pytest.mark.parametrize("content, name, message", [
    (b"PK\x03\x04 not really a zip", "m.keras", "m.keras: not a Keras model file Keras can load"),
    (b"", "m.keras", "m.keras: not a Keras model file Keras can load"),
    (b"\x89HDF\r\n", "m.h5", "m.h5: expected a .keras file"),
])
def test_a_file_that_is_not_a_keras_model_is_refused(tmp_path, capsys, content, name, message):
    (tmp_path / name).write_bytes(content)
    code = main(["import", "keras", str(tmp_path / name), "--loss", "mse", "--out",
                 str(tmp_path / "o.toml")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert sorted(os.listdir(tmp_path)) == [name]


def test_a_model_keras_will_not_load_safely_is_one_sentence(tmp_path, capsys):
    """A Lambda layer's Python code does not run (safe mode): Keras' refusal, its first
    sentence, not its advice on trusting the file cut at a length."""
    keras.Sequential([keras.Input((4,)), L.Lambda(lambda t: t * 2), L.Dense(2)]).save(
        tmp_path / "m.keras")
    code = main(["import", "keras", str(tmp_path / "m.keras"), "--loss", "mse", "--out",
                 str(tmp_path / "o.toml")])
    err = capsys.readouterr().err
    assert code == 2 and err == (f"crossgrad: {tmp_path}/m.keras: not a Keras model file Keras "
                                 "can load (ValueError: Requested the deserialization of a "
                                 "`Lambda` layer whose `function` is a Python lambda)\n"), err


def test_torch_options_are_refused_for_keras(tmp_path, capsys):
    path = _save(tmp_path, L.Dense(2))
    assert main(["import", "keras", str(path), "--input-shape", "6", "--loss", "mse", "--out",
                 str(tmp_path / "o.toml")]) == 2
    assert "--input-shape: is for PyTorch models" in capsys.readouterr().err


def test_a_control_without_a_long_double_form_says_so_in_a_sentence():
    """A Keras GELU model parts from the four in float64 (tf.nn.gelu's float32 constant);
    its control, NumPy in long double, has no erf there. The note says so as a sentence,
    not as the worker's line (an exception's name, a file and line of NumPy's code)."""
    from crossgrad.harness.compare import control
    from crossgrad.harness.run.worker import _short_error
    wider = control.control_dtype("float64")
    if wider is None:
        pytest.skip("long double is float64 here: no control in float64")
    with pytest.raises(TypeError) as raised:
        registry.load("numpy").layers.phi_erf(np.ones(2, np.longdouble))
    line = _short_error(raised.value)  # what the job says
    said = control.missing(wider, {"status": "failed", "error": line})
    assert said == f"SciPy's erf (GELU) has no {np.dtype(np.longdouble)} form"
    assert control.missing(wider, {"error": "MemoryError: out"}) == "MemoryError: out"


@pytest.mark.slow
def test_the_readme_keras_example(tmp_path):
    """The README's "When the original parts", the model built as it says: its pasted
    commands print what it shows (the numbers within rounding of another CPU's)."""
    import re
    import shlex
    import subprocess
    import sys
    from test_readme_examples import ALL, _same_words, blocks
    (tmp_path / "make.py").write_text(
        "import keras\nkeras.utils.set_random_seed(0)\nkeras.Sequential([keras.Input((64,)), "
        "keras.layers.Dense(32, use_bias=False), keras.layers.BatchNormalization(), "
        "keras.layers.ReLU(), keras.layers.Dense(10)]).save('my_keras.keras')\n")
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    subprocess.run([sys.executable, "make.py"], cwd=tmp_path, env=env, check=True, timeout=300)
    (block,) = blocks("output", "port-my_keras")
    for command, *expected in (run.splitlines() for run in re.split(r"^\$ ", block, flags=re.M)
                               if run):
        done = subprocess.run([sys.executable, "-m", "crossgrad.harness.cli",
                               *shlex.split(command)[1:]], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=900)
        got = done.stdout.splitlines()
        if ALL or command.startswith("crossgrad import"):  # the table has all four
            assert len(got) == len(expected) and all(
                _same_words(a.split(), b.split()) for a, b in zip(got, expected)), done.stdout


# ---- Python --------------------------------------------------------------------------------------

def test_from_keras_returns_a_spec_and_writes_nothing(tmp_path, monkeypatch, executor):
    monkeypatch.chdir(tmp_path)
    inputs = keras.Input((5,))
    model = keras.Model(inputs, L.Dense(2)(L.Dense(4, activation="sigmoid")(inputs)))
    spec = crossgrad.from_keras(model, loss="mse")
    assert spec.original is None and [layer["type"] for layer in spec.layers] == [
        "dense", "sigmoid", "dense"]
    assert np.array_equal(spec.initial["0.W"], model.layers[1].kernel.numpy())
    assert crossgrad.check(spec, frameworks=["numpy", "tensorflow"], executor=executor).passed
    model.save("m.keras")
    from_file = crossgrad.from_keras("m.keras", loss="mse")
    assert from_file.original["framework"] == "keras"
    assert crossgrad.check(from_file, frameworks=["numpy", "original"], executor=executor).passed
    assert sorted(os.listdir(tmp_path)) == ["m.keras"]
    with pytest.raises(InputError, match="keras.layers.Reshape has no crossgrad layer"):
        crossgrad.from_keras(keras.Sequential([keras.Input((4,)), L.Reshape((2, 2))]), loss="mse")
