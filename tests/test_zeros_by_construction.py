"""Gradients that are zero by construction, however the spec reaches them: a shift that
linear layers, pooling or flatten carry on to a BatchNorm, attention's value and output
biases before one, attention over one time step, a LayerNorm over a single feature (its
gamma and everything before it). Every framework returns rounding noise for them;
compared against the model's largest gradient they agree, and the rows say why. Also a
BatchNorm on examples of four axes, in every framework."""
import json

import pytest

import crossgrad
from crossgrad.harness import registry
from crossgrad.harness.compare.zeros import structural_zeros

from conftest import FRAMEWORKS

INSTALLED = [fw for fw in FRAMEWORKS if registry.installed(fw)]
CLASSES = {"source": "random_classification", "classes": 3, "examples": 8}
SEQUENCES = {"source": "random_sequence", "classes": 3, "examples": 8}


def spec(name, input_shape, data, layers, loss="softmax_cross_entropy"):
    return {"name": name, "input_shape": input_shape, "data": data, "layers": layers,
            "loss": {"type": loss}}


ATTENTION = {"type": "attention", "heads": 1, "key_dim": 2}
SPECS = {  # name: (spec, dtype, the gradients zero by construction)
    "dense_dense_batchnorm": (spec("dense_dense_batchnorm", [3], CLASSES, [
        {"type": "dense", "units": 4}, {"type": "dense", "units": 3}, {"type": "batchnorm"}]),
        "float64", {"0.b", "1.b"}),
    "conv_pool_batchnorm": (spec("conv_pool_batchnorm", [4, 4, 1], dict(CLASSES, classes=2), [
        {"type": "conv2d", "filters": 2, "kernel_size": [2, 2]}, {"type": "maxpool2d"},
        {"type": "batchnorm"}, {"type": "flatten"}], "binary_cross_entropy_with_logits"),
        "float64", {"0.b"}),
    "attention_batchnorm": (spec("attention_batchnorm", [4, 3], SEQUENCES, [
        ATTENTION, {"type": "batchnorm"}, {"type": "sequence_mean"}]),
        "float64", {"0.bk", "0.bv", "0.bo"}),
    "attention_one_step": (spec("attention_one_step", [1, 3], SEQUENCES, [
        ATTENTION, {"type": "sequence_mean"}]), "float32", {"0.Wq", "0.Wk", "0.bq", "0.bk"}),
    "batchnorm_rank4": (spec("batchnorm_rank4", [2, 2, 2, 3], CLASSES, [
        {"type": "batchnorm"}, {"type": "flatten"}, {"type": "dense", "units": 3}]),
        "float64", set()),
}


@pytest.fixture(scope="module")
def checked(tmp_path_factory, executor):
    specs = [crossgrad.load(_written(tmp_path_factory, body), dtype=dtype)
             for body, dtype, _ in SPECS.values()]
    return {m["name"]: m for m in crossgrad.check(specs, executor=executor).models}


def _written(factory, body):
    path = factory.mktemp("specs") / f"{body['name']}.json"
    path.write_text(json.dumps(body))
    return path


def passes_with_zeros_named(model, zeros):
    """Every installed framework ran the model and agrees, and exactly `zeros` are noted as
    zero by construction (a note only a pair of frameworks can carry)."""
    assert {fw for fw, i in model["frameworks"].items() if i["status"] == "ok"} == \
        set(INSTALLED), model["frameworks"]
    assert model["passed"], [c for c in model["comparisons"] if not c["passed"]]
    noted = {c["param"] for c in model["comparisons"] if "zero by construction" in
             c.get("note", "")}
    assert noted == (zeros if len(INSTALLED) > 1 else set())


@pytest.mark.parametrize("name", sorted(SPECS))
def test_zero_by_construction_agrees_in_every_framework(checked, name):
    passes_with_zeros_named(checked[name], SPECS[name][2])


def test_a_shift_stops_where_a_layer_does_not_carry_it():
    """A nonlinearity, a zero-padded conv or dropout between the bias and the BatchNorm:
    the bias's gradient is not zero, and is compared with its own size."""
    dense = {"type": "dense", "name": "0", "use_bias": True}
    for between in ({"type": "tanh"}, {"type": "dropout"},
                    {"type": "conv2d", "use_bias": False, "pads": [[1, 1], [0, 0]]}):
        layers = [dense, dict(between, name="1"), {"type": "batchnorm", "name": "2"}]
        assert structural_zeros(layers) == {}, between
    carried = [dense, {"type": "conv2d", "name": "1", "use_bias": False,
                       "pads": [[0, 0], [0, 0]]}, {"type": "batchnorm", "name": "2"}]
    assert set(structural_zeros(carried)) == {"0.b"}


def test_a_shift_from_outside_a_residual_block_crosses_it_where_the_inside_keeps_it():
    """x + c + f(x + c): with f linear (or cancelling c itself) c reaches the BatchNorm after
    the block, and the bias before the block is zero by construction; it was compared with
    its own size (errors up to 2.8, rescued as PASS* by the control alone). A tanh inside f
    bends c: no zero."""
    def layers(*inside):
        return [{"type": "dense", "name": "0", "use_bias": True},
                {"type": "residual", "name": "1", "layers": [
                    dict(layer, name=f"1.{j}") for j, layer in enumerate(inside)]},
                {"type": "batchnorm", "name": "2"}]
    dense = {"type": "dense", "use_bias": True}
    assert set(structural_zeros(layers(dense))) == {"0.b", "1.0.b"}
    assert set(structural_zeros(layers({"type": "identity"}))) == {"0.b"}
    cancelled = structural_zeros(layers(dense, {"type": "batchnorm"}))  # f cancels c itself
    assert set(cancelled) == {"0.b", "1.0.b", "1.1.beta"}  # the skip path carries 0.b on
    assert cancelled["0.b"].startswith("a bias, carried on")  # to 2, as f carries 1.1.beta
    assert set(structural_zeros(layers(dense, {"type": "tanh"}))) == set()


# ---- a LayerNorm over a single feature ---------------------------------------------------------

LAYERNORM = {"type": "layernorm"}
ONE_FEATURE = {  # name: (layers on (6, 2) sequences, dtype, the gradients zero by construction)
    "layernorm_first": ([{"type": "dense", "units": 1}, LAYERNORM, {"type": "lstm", "units": 4},
                         {"type": "dense", "units": 3}], "float64", {"0.W", "0.b", "1.gamma"}),
    "layernorm_after_a_block": ([{"type": "dense", "units": 1}, {"type": "residual", "layers": [
        {"type": "dense", "units": 1}, {"type": "tanh"}]}, LAYERNORM, {"type": "sequence_mean"},
        {"type": "dense", "units": 3}], "float64", {"0.W", "0.b", "1.0.W", "1.0.b", "2.gamma"}),
    "layernorm_in_a_block": ([{"type": "dense", "units": 1}, {"type": "residual", "layers": [
        {"type": "dense", "units": 1}, LAYERNORM]}, {"type": "lstm", "units": 4},
        {"type": "dense", "units": 3}], "float32", {"1.0.W", "1.0.b", "1.1.gamma"}),
}


@pytest.fixture(scope="module")
def one_feature(tmp_path_factory, executor):
    specs = [crossgrad.load(_written(tmp_path_factory, spec(name, [6, 2], SEQUENCES, layers)),
                            dtype=dtype) for name, (layers, dtype, _) in ONE_FEATURE.items()]
    return {m["name"]: m for m in crossgrad.check(specs, executor=executor).models}


@pytest.mark.parametrize("name", sorted(ONE_FEATURE))
def test_a_layernorm_over_one_feature_zeroes_its_gamma_and_what_comes_before(one_feature, name):
    """x - mean(x) over one feature is 0: the output is beta whatever the input, so gamma and
    every parameter before it (before it in its residual block: the skip path goes around
    it) have zero gradients, rounding noise in every framework."""
    passes_with_zeros_named(one_feature[name], ONE_FEATURE[name][2])


def test_a_reason_found_before_stands_and_the_layernorm_is_named(tmp_path_factory):
    """A bias right before a BatchNorm keeps that reason; the rest name the LayerNorm. Over
    two features only that bias is zero."""
    layers = [{"type": "dense", "units": 1}, {"type": "batchnorm"}, LAYERNORM,
              {"type": "sequence_mean"}, {"type": "dense", "units": 3}]
    zeros = structural_zeros(crossgrad.load(_written(tmp_path_factory, spec(
        "bn_ln", [6, 2], SEQUENCES, layers))).layers)
    one = "LayerNorm 2 normalises a single feature: x - mean(x) is 0, so it outputs its beta " \
          "whatever its input"
    assert zeros == {"0.b": "a bias right before BatchNorm: the batch mean cancels it",
                     "0.W": one, "1.gamma": one, "1.beta": one, "2.gamma": one}
    layers[0]["units"] = 2
    assert structural_zeros(crossgrad.load(_written(tmp_path_factory, spec(
        "bn_ln2", [6, 2], SEQUENCES, layers))).layers) == \
        {"0.b": "a bias right before BatchNorm: the batch mean cancels it"}


def test_finite_differences_of_a_zero_by_construction_use_the_model_s_largest_norm():
    """Probed, a zero by construction is rounding noise against rounding noise: the row's error
    is relative to the model's largest gradient norm of the other tensors (and says so), as its
    pairwise rows are; every other tensor's stays relative to its own norm. A float64 BatchNorm
    fed 10 +- 0.01 (three digits cancel in x - mean) failed on its bias's noise before."""
    import numpy as np
    from crossgrad.harness.compare.finite_diff import TOLERANCE, finite_differences
    from crossgrad.harness.spec.probes import H0, LEVELS, RATIO
    rng = np.random.default_rng(0)
    grads = {"0.W": rng.standard_normal((3, 4)), "0.b": 3e-12 * rng.standard_normal(4),
             "1.gamma": 1e-3 * rng.standard_normal(4)}
    hs = H0 / RATIO ** np.arange(LEVELS)
    probes, values = [], []
    for name in grads:  # a loss whose true slope along each direction is 0: noise-free
        direction = np.zeros_like(grads[name])
        direction.flat[0] = 1.0
        probes.append((name, direction))
        values.append([2.3] * (2 * len(hs)))
    result = {"status": "ok", "grads": grads, "loss": 2.3, "fd_values": values}
    zeros = {"0.b": "a bias right before BatchNorm: the batch mean cancels it"}
    rows = {r["param"]: r for r in finite_differences({"numpy": result}, probes, zeros)}
    largest = float(np.linalg.norm(grads["0.W"]))
    for name, row in rows.items():
        norm = largest if name in zeros else float(np.linalg.norm(grads[name]))
        allowed = norm + 3 * row["numeric_err"] / TOLERANCE
        expected = abs(row["numeric"] - row["analytic"]) / allowed
        assert row["rel_err"] == pytest.approx(expected, rel=1e-12), name
        assert ("zero by construction" in row.get("note", "")) == (name in zeros)
    assert rows["0.b"]["passed"]
    own = finite_differences({"numpy": result}, probes)  # judged against its own noise
    assert not next(r for r in own if r["param"] == "0.b")["passed"]
