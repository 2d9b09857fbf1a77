"""PyTorch, TensorFlow and JAX against the NumPy reference: frameworks x layers x dtypes,
x losses x reductions, x optimizers (with L1, L2 and clipping).

Every case runs through the real worker processes, exactly as `crossgrad check` and
`crossgrad train` do; the tolerances are the project's (harness/compare/).
"""
import pytest

from crossgrad.harness import api
from crossgrad.harness.compare.curves import CURVES
from crossgrad.harness.compare.pairwise import PAIRWISE
from crossgrad.harness.spec import parse_spec

from cases import LAYERS, LOSSES, OPTIMIZERS, dense, spec, training, with_reduction
from conftest import OTHERS, need

DTYPES = ["float64", "float32"]
# TensorFlow's AvgPoolGrad is wrong for 'same' where the window is wider than the input
# (impls/tf_tape/layers.py, avgpool2d): 4x4 conv outputs under a 5x3 window
WIDE_POOL = spec("avgpool2d_wider_than_input", [
    {"type": "conv2d", "filters": 2, "kernel_size": 5},
    {"type": "avgpool2d", "pool_size": [5, 3], "strides": 1, "padding": "same"},
    {"type": "flatten"}, dense(10)], [8, 8, 1], {"source": "digits", "batch_size": 6})
CHECK_CASES = {**LAYERS, **LOSSES, **{f"{k}_sum": with_reduction(v, "sum") for k, v in LOSSES.items()},
               WIDE_POOL["name"]: WIDE_POOL}


def specs(raws, dtypes, **overrides):
    out = []
    for raw in raws:
        for dtype in dtypes:
            spec = parse_spec(dict(raw, dtype=dtype), f"{raw['name']}.toml", raw["name"])
            out.append(spec.with_overrides(**overrides) if overrides else spec)
    return out


def by_key(models):
    return {(m["name"], m["dtype"]): m for m in models}


@pytest.fixture(scope="module")
def checks(executor):
    return by_key(api.check(specs(CHECK_CASES.values(), DTYPES), executor=executor).models)


@pytest.fixture(scope="module")
def layer_training(executor):
    """Ten steps of SGD through every layer type: parameters and BatchNorm state evolve."""
    return by_key(api.train(specs(LAYERS.values(), DTYPES, **{"train.steps": 10}),
                            executor=executor).models)


@pytest.fixture(scope="module")
def optimizer_training(executor):
    return by_key(api.train(specs([training(o) for o in OPTIMIZERS], DTYPES),
                            executor=executor).models)


def assert_framework_ok(model, framework):
    info = model["frameworks"][framework]
    assert info["status"] == "ok", info.get("error")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(CHECK_CASES))
@pytest.mark.parametrize("framework", OTHERS)
def test_gradients_agree_with_reference(checks, framework, case, dtype):
    need(framework)
    model = checks[(CHECK_CASES[case]["name"], dtype)]
    assert_framework_ok(model, framework)
    rows = [c for c in model["comparisons"] if {c["a"], c["b"]} == {"numpy", framework}]
    assert {c["kind"] for c in rows} >= {"loss", "grad"}
    worst = max(rows, key=lambda c: c["rel_err"])
    assert worst["rel_err"] <= PAIRWISE[dtype], worst


@pytest.mark.parametrize("case", sorted(CHECK_CASES))
@pytest.mark.parametrize("framework", ["numpy", *OTHERS])
def test_finite_differences_float64(checks, framework, case):
    need(framework)
    model = checks[(CHECK_CASES[case]["name"], "float64")]
    assert_framework_ok(model, framework)
    rows = [r for r in model["finite_difference"] if r["framework"] == framework]
    assert rows
    assert all(r["status"] == "ok" for r in rows), [r for r in rows if r["status"] != "ok"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(LAYERS))
@pytest.mark.parametrize("framework", OTHERS)
def test_training_through_every_layer(layer_training, framework, case, dtype):
    need(framework)
    info = layer_training[(LAYERS[case]["name"], dtype)]["frameworks"][framework]
    assert info["status"] == "ok", info.get("error")
    assert info["max_rel_diff"] <= CURVES[dtype], info
    assert info["passed"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("framework", OTHERS)
def test_optimizer_curves_agree_over_100_steps(optimizer_training, framework, optimizer, dtype):
    need(framework)
    model = optimizer_training[(f"train_{optimizer}", dtype)]
    info = model["frameworks"][framework]
    assert info["status"] == "ok", info.get("error")
    assert model["steps"] == 100 and info["diverged_at"] is None
    assert info["max_rel_diff"] <= CURVES[dtype], info


DIVERGES = {"name": "diverges", "input_shape": [8], "loss": {"type": "mse"},
            "data": {"source": "random_regression", "outputs": 2, "examples": 64},
            "layers": [{"type": "dense", "units": 2}],
            "optimizer": {"type": "sgd", "lr": 50.0}, "train": {"steps": 200}}


@pytest.fixture(scope="module")
def diverging(executor):
    return by_key(api.train(specs([DIVERGES], DTYPES), executor=executor).models)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("framework", OTHERS)
def test_divergence_is_caught_at_the_same_step(diverging, framework, dtype):
    """lr = 50 on least squares: the loss overflows; every framework stops where NumPy does."""
    need(framework)
    model = diverging[("diverges", dtype)]
    reference, info = model["frameworks"]["numpy"], model["frameworks"][framework]
    assert reference["diverged_at"] is not None and reference["diverged_at"] < 200
    assert info["status"] == "ok" and info["diverged_at"] == reference["diverged_at"]
    assert info["passed"] and model["passed"]
