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


# The loss of an imported conv net (conv 4x4 'same', ReLU, conv, BatchNorm; float64) at p + t d
# for a random d through its first kernel, at the probes' steps t = +-h0/4^k: a direction
# through thousands of ReLU inputs, with kinks at several distances along it.
THROUGH_RELUS = (1.2530967498379364, [
    1.262515421412238, 1.2461888222911, 1.255486273224909, 1.2508782763569832,
    1.25362853845718, 1.252532024706744, 1.2532287455480917, 1.252959428782925,
    1.2531304277537307, 1.253062941056116, 1.2531051449412907, 1.2530883730725153,
    1.2530988483357592, 1.2530946601413524, 1.2530972743459075, 1.2530962263783927,
    1.2530968808585483, 1.253096618850823, 1.2530967825847856, 1.2530967170911158,
    1.2530967580246462, 1.2530967416512286])


def test_a_central_difference_that_took_a_window_across_a_far_kink_is_not_believed():
    """Every framework's gradient gives 0.01716877258 along d, and so do both one-sided
    differences (0.0171687730 and 0.0171687725); Ridders' central estimate picked a window of
    larger steps, across kinks, whose error estimate was small by chance (0.0171710 +-
    4e-8), and the check FAILed every framework alike (8.7e-6). The one-sided mean is used
    where the central estimate lies outside both their error bars and they agree."""
    loss0, values = THROUGH_RELUS
    d = np.array([1.0])
    row = finite_diff.check("0.W", d, np.array([0.017168772575545714]), loss0, values)
    assert row["status"] == "ok" and row["rel_err"] < 1e-7, row
    wrong = finite_diff.check("0.W", d, np.array([0.01717]), loss0, values)  # 7e-5 off
    assert wrong["status"] == "mismatch", wrong

