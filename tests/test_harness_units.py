"""Units of the harness: specs, data, initializers, comparisons, atomic writes."""
import platform
import subprocess
import sys

import numpy as np
import pytest

from crossgrad.harness.compare import curves, finite_diff, pairwise, zeros
from crossgrad.harness.run.atomic import atomic_dir
from crossgrad.harness.run.environment import ALLOCATOR, worker_env
from crossgrad.harness.spec import data, initializers as init
from crossgrad.harness.spec.catalog import same_padding
from crossgrad.harness.spec import parse_spec, zoo_names, zoo_spec

from cases import LAYERS


@pytest.mark.parametrize("name", zoo_names())
def test_every_zoo_spec_parses_and_says_what_it_reproduces(name):
    spec = zoo_spec(name)
    assert spec.reproduces and spec.dtype == "float64"
    assert spec.with_overrides(dtype="float32").hash != spec.hash


def test_spec_hash_ignores_file_and_comments_but_not_numbers(tmp_path):
    a = parse_spec(LAYERS["dense"], "a.toml", "dense")
    b = parse_spec(LAYERS["dense"], "elsewhere/b.toml", "dense")
    assert a.hash == b.hash
    assert a.with_overrides(seed=4).hash != a.hash


def test_init_hash_follows_the_initializers_as_read():
    """spec_hash leaves the initializers out (reports made before init_hash compare);
    init_hash holds them, defaults filled in: the same initializer however it is written."""
    def dense(init=None):  # the last layer's init, which LAYERS["dense"] leaves as default
        *first, last = LAYERS["dense"]["layers"]
        last = dict(last, **({"init": init} if init else {}))
        return parse_spec(dict(LAYERS["dense"], layers=[*first, last]), "a.toml", "dense")
    plain = dense()
    assert dense("glorot_uniform").init_hash == plain.init_hash  # the default, named
    assert dense({"type": "glorot_uniform"}).init_hash == plain.init_hash
    narrow, wide = dense({"type": "normal", "std": 0.1}), dense({"type": "normal", "std": 0.2})
    assert narrow.hash == wide.hash and narrow.init_hash != wide.init_hash
    assert narrow.init_hash != plain.init_hash
    assert plain.with_overrides(seed=4).init_hash == plain.init_hash  # the seed: spec_hash's


@pytest.mark.parametrize("n,k,s,expected", [(8, 3, 2, [0, 1]), (7, 3, 2, [1, 1]), (8, 2, 1, [0, 1]),
                                            (5, 1, 3, [0, 0]), (8, 4, 4, [0, 0])])
def test_same_padding_is_tensorflows(n, k, s, expected):
    assert same_padding(n, k, s) == expected  # the odd pixel goes at the end


def test_params_are_drawn_per_name_from_the_seed():
    spec = parse_spec(LAYERS["residual_nested"], "x.toml", "x")
    first, again = init.init_params(spec), init.init_params(spec)
    assert all((first[k] == again[k]).all() for k in first)
    assert list(first) == list(spec.param_specs())
    assert first["1.3.0.W"].shape == (5, 5)  # nested residual names
    other = init.init_params(spec.with_overrides(seed=99))
    assert not np.array_equal(first["0.W"], other["0.W"])


@pytest.mark.parametrize("kind", sorted(init.INITIALIZERS))
def test_initializers_have_their_documented_scale(kind):
    table = {"type": kind, **({"value": 0.5} if kind == "constant" else {})}
    spec = parse_spec({"name": "x", "input_shape": [400], "data": {"source": "random_regression",
                       "outputs": 300, "examples": 4}, "loss": {"type": "mse"},
                       "layers": [{"type": "dense", "units": 300, "init": table}]}, "x", "x")
    w = init.init_params(spec)["0.W"]
    expected_std = {"zeros": 0, "ones": 0, "constant": 0, "normal": 1, "uniform": 0.1 / 12 ** 0.5,
                    "glorot_uniform": (2 / 700) ** 0.5, "glorot_normal": (2 / 700) ** 0.5,
                    "he_uniform": (2 / 400) ** 0.5, "he_normal": (2 / 400) ** 0.5,
                    "lecun_normal": (1 / 400) ** 0.5, "torch_default": (1 / 1200) ** 0.5,
                    "small_normal": 0.01, "orthogonal": (1 / 400) ** 0.5}[kind]
    assert w.std() == pytest.approx(expected_std, rel=0.05, abs=1e-12)
    if kind == "orthogonal":
        np.testing.assert_allclose(w.T @ w, np.eye(300), atol=1e-12)


def test_batches_cover_each_epoch_once():
    order = data.batch_order(10, 3, steps=7, seed=0)
    assert order.shape == (7, 3)
    first_epoch = order[:3].ravel()
    assert len(set(first_epoch)) == 9  # 3 batches of 3, the 10th example dropped this epoch
    assert not np.array_equal(order[:3], order[3:6])  # a new permutation each epoch


def test_targets_follow_the_loss():
    labels = np.array([0, 2, 1])
    assert data.targets(labels, "softmax_cross_entropy", [3], "float32").dtype == np.int64
    onehot = data.targets(labels, "mse", [3], "float32")
    assert onehot.dtype == np.float32 and (onehot.argmax(1) == labels).all()
    assert data.targets(np.array([0, 1]), "binary_cross_entropy", [1], "float64").shape == (2, 1)


def test_digits28_is_the_digits_resized():
    x, y = data._digits(True)
    small, _ = data._digits(False)
    assert x.shape == (1797, 28, 28) and x.min() >= 0 and x.max() <= 1
    assert np.corrcoef(x.reshape(1797, -1).mean(1), small.reshape(1797, -1).mean(1))[0, 1] > 0.99


def test_dropout_masks_are_shared_dice():
    layers = [{"name": "2", "in_shape": [5], "rate": 0.4}]
    a = data.dropout_masks(layers, 8, 3, 0, "float64")["2"]
    assert a.shape == (3, 8, 5) and set(np.unique(a)) <= {0.0, 1.0}
    assert np.array_equal(a, data.dropout_masks(layers, 8, 3, 0, "float64")["2"])


def test_relative_error_is_against_the_reference_tensor():
    a, b = np.array([1.0, -4.0]), np.array([1.0, -4.0 + 4e-12])
    max_abs, rel, cosine = pairwise.tensor_errors(a, b)
    assert max_abs == pytest.approx(4e-12, rel=1e-3) and rel == pytest.approx(1e-12, rel=1e-3)
    assert cosine == pytest.approx(1.0)


def test_structural_zeros_are_named():
    spec = parse_spec({"name": "z", "input_shape": [6, 4], "data": {"source": "random_sequence"},
                       "layers": [{"type": "dense", "units": 4}, {"type": "batchnorm"},
                                  {"type": "attention", "heads": 1, "key_dim": 2},
                                  {"type": "residual", "layers": [{"type": "dense", "units": 4},
                                                                  {"type": "identity"},
                                                                  {"type": "batchnorm"}]},
                                  {"type": "sequence_mean"}, {"type": "dense", "units": 3}],
                       "loss": {"type": "softmax_cross_entropy"}}, "z", "z")
    assert set(zeros.structural_zeros(spec.layers)) == {"0.b", "2.bk", "3.0.b"}


def test_a_structural_zero_is_judged_against_the_model_scale():
    g = {"0.W": np.array([0.5, -0.25]), "0.b": np.array([1e-17])}
    results = {"numpy": {"status": "ok", "loss": 1.0, "grads": g, "state": {}},
               "torch": {"status": "ok", "loss": 1.0, "state": {},
                         "grads": {"0.W": g["0.W"], "0.b": np.array([-3e-17])}}}
    plain = {r["param"]: r for r in pairwise.pairwise(results, "float64")}
    zeros = {r["param"]: r for r in pairwise.pairwise(results, "float64", {"0.b": "why"})}
    assert not plain["0.b"]["passed"]                      # noise against noise
    assert zeros["0.b"]["passed"] and zeros["0.b"]["rel_err"] == pytest.approx(8e-17)
    assert "zero by construction" in zeros["0.b"]["note"]


def test_branch_is_a_sudden_jump_only_in_float32():
    smooth = [1e-7, 2e-7, 5e-6, 3e-5, 2e-4]                   # growing: not a branch
    jump = [1e-7, 3e-8, 1e-7, 2e-4, 5e-3]
    assert curves.branch_step(smooth, "float32") is None
    assert curves.branch_step(jump, "float32") == 3
    assert curves.branch_step(jump, "float64") is None


def test_curve_errors_need_the_same_length_and_end():
    ref = {"loss": [1.0, 0.9, 0.8], "diverged_at": None}
    short = {"loss": [1.0, 0.9], "diverged_at": 1}
    out = curves.curve_errors({"numpy": ref, "torch": short}, "numpy", "float64", False)
    assert out["numpy"]["passed"] and not out["torch"]["passed"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_run_that_stops_at_another_step_fails_though_lockstep_agrees(dtype):
    """NumPy diverges at step 4, torch one step earlier in its free run; lockstep runs the
    reference's steps and agrees at each. The curve's jump was read as a float32 branch, or
    as amplified rounding: PASS*. Frameworks that stop at different steps disagree (README,
    "Divergence")."""
    nan = float("nan")
    ref = {"loss": [1.0, 0.9, 0.8, 0.7, nan], "diverged_at": 4}
    early = {"loss": [1.0, 0.9, 0.8, nan], "diverged_at": 3}
    out = curves.curve_errors({"numpy": ref, "torch": early}, "numpy", dtype, False)
    info = {"passed": out["torch"]["passed"], "lockstep_parted_at": None}
    curves.verdict(info, out["torch"]["rel_diff"], dtype, out["torch"]["same_end"])
    assert info["verdict"] == "FAIL" and info["passed"] is False, info


def test_atomic_dir_leaves_the_old_folder_on_error(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "a.txt").write_text("second")
            raise RuntimeError("interrupted")
    assert (target / "a.txt").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    with atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("third")
    assert sorted(p.name for p in target.iterdir()) == [".crossgrad", "b.txt"]  # + the marker


def test_the_optimizer_defaults_in_the_pitfall_catalog_are_the_installed_ones():
    """pitfalls.DEFAULTS is written by hand: read every value back from the frameworks."""
    import inspect
    from crossgrad.harness import registry
    from crossgrad.harness.compare.pitfalls import DEFAULTS

    def default(fn, arg):
        return inspect.signature(fn).parameters[arg].default
    names = {"torch": {"lr": "lr", "eps": "eps", "weight_decay": "weight_decay"},
             "tensorflow": {"lr": "learning_rate", "eps": "epsilon", "rho": "rho",
                            "weight_decay": "weight_decay"},
             "jax": {"weight_decay": "weight_decay", "rho": "decay", "eps": "eps"}}
    classes = {
        "torch": lambda m: {"sgd": m.optim.SGD, "momentum": m.optim.SGD, "nesterov": m.optim.SGD,
                            "adam": m.optim.Adam, "adamw": m.optim.AdamW,
                            "rmsprop": m.optim.RMSprop, "adagrad": m.optim.Adagrad},
        "tensorflow": lambda m: {k: getattr(m.keras.optimizers, c) for k, c in (
            ("sgd", "SGD"), ("momentum", "SGD"), ("nesterov", "SGD"), ("adam", "Adam"),
            ("adamw", "AdamW"), ("rmsprop", "RMSprop"), ("adagrad", "Adagrad"))},
        "jax": lambda m: {"adamw": m.adamw, "rmsprop": m.rmsprop, "adagrad": m.adagrad},
    }
    modules = {"torch": "torch", "tensorflow": "tensorflow", "jax": "optax"}
    if not any(registry.installed(fw) for fw in DEFAULTS):
        pytest.skip("none of torch, tensorflow, jax is installed")
    checked = 0
    for fw, per_type in DEFAULTS.items():
        if not registry.installed(fw):
            continue
        fns = classes[fw](__import__(modules[fw]))
        for kind, values in per_type.items():
            for key, value in values.items():
                assert default(fns[kind], names[fw][key]) == value, (fw, kind, key)
                checked += 1
            if fw == "tensorflow" and kind == "sgd":  # the spec's default lr equals Keras'
                assert default(fns[kind], "learning_rate") == 0.01
    assert checked


FAULTS = """
import resource, numpy as np
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    held = [np.ones(1 << 18, np.float32) for _ in range(16)]  # a step's arrays: 16 x 1 MiB
    del held
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
"""


def test_a_worker_keeps_the_memory_it_freed_for_its_next_step():
    """With glibc's defaults the 16 MiB come back from the system, page by page, every time."""
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the variables are glibc's allocator's")

    def faults(env):
        run = subprocess.run([sys.executable, "-c", FAULTS], env=env, capture_output=True,
                             text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        return int(run.stdout)
    plain = {k: v for k, v in worker_env(1).items() if k not in ALLOCATOR}
    assert faults(worker_env(1, base=plain)) * 10 < faults(plain)


def test_the_allocator_pins_leave_a_users_own_setting():
    assert all(worker_env(1, base={})[k] == v for k, v in ALLOCATOR.items())
    mine = worker_env(1, base={"MALLOC_TRIM_THRESHOLD_": "0"})
    assert mine["MALLOC_TRIM_THRESHOLD_"] == "0" and "MALLOC_MMAP_THRESHOLD_" not in mine


# ---- fans and orthogonal kernels -------------------------------------------------------------

def _one_layer(layer, input_shape, source):
    return parse_spec({"name": "x", "input_shape": input_shape, "data": source,
                       "loss": {"type": "mse"}, "layers": [layer, {"type": "flatten"}]}, "x", "x")


def test_attention_output_projection_takes_its_own_fans():
    """Wq, Wk, Wv map D -> heads*key_dim, Wo maps back: he_normal draws Wo with
    std sqrt(2 / (heads*key_dim)), and bo takes Wo's fans (torch_default's bias rule)."""
    attention = {"type": "attention", "heads": 8, "key_dim": 16, "init": "he_normal"}
    spec = _one_layer(attention, [4, 6], {"source": "random_regression", "outputs": 24,
                                          "examples": 4})
    fans = {k: (p["fan_in"], p["fan_out"]) for k, p in spec.param_specs().items()}
    assert fans == {"0.Wq": (6, 128), "0.Wk": (6, 128), "0.Wv": (6, 128), "0.Wo": (128, 6),
                    "0.bq": (6, 128), "0.bk": (6, 128), "0.bv": (6, 128), "0.bo": (128, 6)}
    w = init.init_params(spec)
    assert w["0.Wo"].std() == pytest.approx((2 / 128) ** 0.5, rel=0.1)
    assert w["0.Wq"].std() == pytest.approx((2 / 6) ** 0.5, rel=0.1)


@pytest.mark.parametrize("kernel, c_in, filters", [((3, 3), 2, 5), ((1, 1), 2, 5)])
def test_orthogonal_conv_kernels_are_orthogonal_as_keras_and_torch_see_them(kernel, c_in,
                                                                             filters):
    """Keras flattens (kh, kw, C_in, C_out) to (kh*kw*C_in, C_out); torch its (C_out, C_in,
    kh, kw) weight to (C_out, C_in*kh*kw): the fewer of rows and columns are orthonormal in
    both views (with more filters than kh*kw*C_in, the rows of Keras' view)."""
    conv = {"type": "conv2d", "filters": filters, "kernel_size": list(kernel),
            "init": "orthogonal"}
    spec = _one_layer(conv, [4, 4, c_in], {"source": "random_regression", "outputs":
                                           (5 - kernel[0]) * (5 - kernel[1]) * filters,
                                           "examples": 4})
    w = init.init_params(spec)["0.W"]
    keras, torch = w.reshape(-1, filters), w.transpose(3, 2, 0, 1).reshape(filters, -1)
    for view in (keras, torch):
        small = view @ view.T if view.shape[0] <= view.shape[1] else view.T @ view
        np.testing.assert_allclose(small, np.eye(len(small)), atol=1e-12)


def test_the_same_infinity_agrees_and_finite_entries_keep_their_scale():
    """sqrt at 0 gives [inf, 0.25] in torch and JAX alike: once "disagree" with a nan
    error (inf - inf), and an inf scale would have let any finite difference pass."""
    max_errors = pairwise.max_errors
    assert max_errors([np.inf, 0.25], [np.inf, 0.25]) == (0.0, 0.0)
    assert max_errors([np.inf, 0.25], [np.inf, 0.30]) == pytest.approx((0.05, 0.2))
    assert max_errors([np.inf, 0.25], [-np.inf, 0.25])[1] == np.inf
    assert np.isnan(max_errors([np.nan, 0.25], [np.nan, 0.25])[1])  # a nan disagrees
    # a loss is 0-d: the same infinite loss in two frameworks raised a TypeError (`check`
    # ended in a traceback for any spec whose forward overflows to inf in float64)
    assert max_errors(np.float64(np.inf), np.float64(np.inf)) == (0.0, 0.0)
    assert max_errors(np.inf, 1.0) == (np.inf, np.inf)


def test_a_probe_off_an_infinite_entry_is_measured_on_its_own_entries():
    hs = finite_diff.H0 / finite_diff.RATIO ** np.arange(finite_diff.LEVELS)
    d = np.array([0.0, 1.0])
    values = [0.25 * s * h for h in hs for s in (1, -1)]  # the loss moves 0.25 per unit of s[1]
    row = finite_diff.check("s", d, np.array([np.inf, 0.25]), 0.0, values)
    assert row["analytic"] == 0.25 and row["status"] == "ok"
