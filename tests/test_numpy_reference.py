"""The hand-written NumPy backward passes against finite differences, every layer and loss.

These run in-process (NumPy only) and are the foundation the cross-framework tests
stand on: if a backward pass here were wrong, agreement with autograd would fail too,
but this says which layer.
"""
import numpy as np
import pytest

from crossgrad.harness import registry
from crossgrad.harness.compare import finite_diff
from crossgrad.harness.run.jobs import Inputs, check_job
from crossgrad.harness.run.worker import perform as execute
from crossgrad.harness.spec import parse_spec

from cases import LAYERS, LOSSES, with_reduction

NUMPY = registry.load("numpy")


def fd_rows(raw, dtype="float64"):
    spec = parse_spec(dict(raw, dtype=dtype), f"{raw['name']}.toml", raw["name"])
    inputs = Inputs(spec)
    job = check_job(spec, inputs, "numpy")
    result = execute(NUMPY, job)
    return [finite_diff.check(name, d, result["grads"][name], result["loss"], values)
            for (name, d), values in zip(job["probes"], result["fd_values"])], result


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_layer_backward_matches_finite_differences(layer):
    rows, result = fd_rows(LAYERS[layer])
    assert {r["param"] for r in rows} == set(result["grads"])  # every tensor was probed
    bad = [r for r in rows if r["status"] != "ok"]
    assert not bad, bad


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_loss_gradient_matches_finite_differences(loss, reduction):
    rows, _ = fd_rows(with_reduction(LOSSES[loss], reduction))
    assert all(r["status"] == "ok" for r in rows), rows


def test_sum_reduction_is_batch_times_mean():
    mean = fd_rows(LOSSES["half_squared_error"])[1]
    total = fd_rows(with_reduction(LOSSES["half_squared_error"], "sum"))[1]
    assert total["loss"] == pytest.approx(5 * mean["loss"], rel=1e-14)  # batch of 5


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_float32_stays_float32(layer):
    spec = parse_spec(dict(LAYERS[layer], dtype="float32"), "x.toml", "x")
    result = execute(NUMPY, check_job(spec, Inputs(spec), "numpy"))
    assert np.float32(result["loss"]) == result["loss"]  # computed in float32, not float64
    assert {g.dtype for g in result["grads"].values()} == {np.dtype("float32")}


def test_a_wrong_gradient_is_caught():
    """The checker can fail: corrupt one entry of a correct gradient and it says mismatch."""
    spec = parse_spec(LAYERS["dense"], "x.toml", "x")
    job = check_job(spec, Inputs(spec), "numpy")
    result = execute(NUMPY, job)
    name, direction = next((n, d) for n, d in job["probes"] if n == "0.W")
    grad = result["grads"][name].copy()
    grad += 1e-4 * np.abs(grad).max() * direction  # a small error along the probe
    values = result["fd_values"][[n for n, _ in job["probes"]].index(name)]
    assert finite_diff.check(name, direction, grad, result["loss"], values)["status"] == "mismatch"


def test_kink_is_reported_not_hidden():
    """ReLU exactly at 0 (zero weights and bias): the one-sided derivatives differ."""
    raw = {"name": "kink", "input_shape": [3], "data": {"source": "random_classification",
                                                        "classes": 2, "examples": 8},
           "layers": [{"type": "dense", "units": 4, "init": "zeros"}, {"type": "relu"},
                      {"type": "dense", "units": 2}], "loss": {"type": "softmax_cross_entropy"}}
    rows, _ = fd_rows(raw)
    assert any(r["status"] == "kink" and r["param"] == "0.b" for r in rows)
    assert not any(r["status"] == "mismatch" for r in rows)


def kinked_values(loss, direction):
    """The loss at p + t d for the probes' steps t = +-h (spec/probes.py), p = 0."""
    hs = finite_diff.H0 / finite_diff.RATIO ** np.arange(finite_diff.LEVELS)
    return [loss(s * h * direction) for h in hs for s in (1, -1)]


def test_a_probe_across_a_kink_is_a_kink_whatever_the_central_difference():
    """|w| at w = 0 along d = 1: the slopes either side are +1 and -1. torch's gradient 0
    matches the central difference and was "ok" (JAX's 1 a "kink" on the same probe)."""
    d = np.array([1.0])
    values = kinked_values(lambda w: float(np.abs(w).sum()), d)
    for slope in (0.0, 1.0, 0.3):
        row = finite_diff.check("w", d, np.array([slope]), 0.0, values)
        assert (row["forward"], row["backward"]) == pytest.approx((1.0, -1.0))
        assert row["status"] == "kink", (slope, row)
