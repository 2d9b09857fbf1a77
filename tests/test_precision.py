"""Reduced precision (`check --dtype bfloat16|float16`) and each framework's own matmul
precision (`--matmul-precision default`): rounding once, NumPy's formats, the float64
reference, tolerances, verdicts, and what the commands refuse.

The default run takes every layer type through four models (tests/mixes.py) in both
formats; one model per layer type is marked slow."""
import json
import sys

import jsonschema
import ml_dtypes
import numpy as np
import pytest

from crossgrad.harness import api, schemas
from crossgrad.harness.cli import main
from crossgrad.harness.compare.precision import depth, digits, tolerance, worst_digits
from crossgrad.harness.errors import InputError
from crossgrad.harness.registry import ORDER
from crossgrad.harness.run.jobs import Inputs, check_job
from crossgrad.harness.run.reference import reference_job
from crossgrad.harness.spec import parse_spec, zoo_spec
from crossgrad.harness.spec.precision import UNIT_ROUNDOFF, rounded
from crossgrad.impls.numpy_manual import model as numpy_model

from cases import LAYERS
from cli_session import session_cli
from conftest import need
from mixes import MIXES

REDUCED = ["bfloat16", "float16"]


# ---- rounding once ---------------------------------------------------------------------------

def test_bfloat16_is_rounded_once_to_the_nearest():
    """ml_dtypes goes through float32 and rounds twice; crossgrad rounds once."""
    x = np.array([1 + 2 ** -8 + 2 ** -30, -(1 + 2 ** -8 + 2 ** -30), 1 + 2 ** -8, 1 + 3 * 2 ** -8])
    assert list(rounded(x, "bfloat16").astype(np.float64)) == [1 + 2 ** -7, -(1 + 2 ** -7), 1.0,
                                                               1 + 2 ** -6]
    assert x[:1].astype(ml_dtypes.bfloat16).astype(np.float64)[0] == 1.0  # the double rounding
    values = np.random.default_rng(0).standard_normal(100_000) * 10.0 ** np.arange(-20, 20, 0.0004)
    got = rounded(values, "bfloat16").astype(np.float64)
    ulp = 2.0 ** (np.floor(np.log2(np.abs(values))) - 7)
    assert np.all(np.abs(got - values) <= ulp / 2)


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_numpy_formats_round_as_numpy_does(dtype):
    values = np.random.default_rng(1).standard_normal(10_000)
    got = rounded(values, dtype)
    assert got.dtype == np.dtype(dtype) and np.array_equal(got, values.astype(dtype))


def test_the_inputs_every_framework_gets_are_rounded_in_the_format():
    for dtype in REDUCED:
        inputs = Inputs(zoo_spec("mlp_3_4_2", dtype=dtype))
        x, _, _ = inputs.first_batch()
        assert x.dtype.name == dtype and inputs.params["0.W"].dtype.name == dtype
        draw = Inputs(zoo_spec("mlp_3_4_2")).params["0.W"]
        assert np.array_equal(inputs.params["0.W"], rounded(draw, dtype))


def test_a_params_file_s_state_is_rounded_once_as_its_weights_are(tmp_path):
    """A running mean of 1 + 2^-8 + 2^-30 from a `params` file: the nearest bfloat16 is
    1 + 2^-7, which gamma of the same value got; the state went through float32 first
    (a tie there, then 1.0)."""
    value = 1 + 2 ** -8 + 2 ** -30
    raw = {"name": "bn_state", "dtype": "bfloat16", "seed": 0, "input_shape": [2],
           "data": {"source": "random_classification", "classes": 2, "examples": 8},
           "layers": [{"type": "batchnorm"}], "loss": {"type": "softmax_cross_entropy"}}
    drawn = Inputs(parse_spec(dict(raw, dtype="float64"), "bn.toml", "bn_state"))
    arrays = {**drawn.params, **drawn.state, "0.gamma": np.full(2, value),
              "0.running_mean": np.full(2, value)}
    np.savez(tmp_path / "bn.npz", **arrays)
    inputs = Inputs(parse_spec(dict(raw, params=str(tmp_path / "bn.npz")),
                               str(tmp_path / "bn.toml"), "bn_state"))
    nearest = 1 + 2 ** -7
    assert list(inputs.params["0.gamma"].astype(np.float64)) == [nearest] * 2
    assert list(inputs.state["0.running_mean"].astype(np.float64)) == [nearest] * 2


def test_bfloat16_without_ml_dtypes_is_one_line_naming_the_field(monkeypatch):
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)  # import ml_dtypes now fails
    raw = dict(LAYERS["dense"], dtype="bfloat16")
    with pytest.raises(InputError, match=r"dense.toml: dtype: .*ml_dtypes"):
        parse_spec(raw, "dense.toml", "dense")


# ---- NumPy's formats -------------------------------------------------------------------------

def numpy_result(name, dtype):
    spec = parse_spec(dict(LAYERS[name], dtype=dtype), f"{name}.toml", name)
    inputs = Inputs(spec)
    model = numpy_model.build_model(spec.for_impls())
    numpy_model.set_params(model, inputs.params, inputs.state)
    return numpy_model.loss_and_gradients(model, *inputs.first_batch()), model


@pytest.mark.parametrize("name", ["gelu", "layernorm", "attention", "lstm"])
@pytest.mark.parametrize("dtype", REDUCED)
def test_numpy_returns_its_results_in_the_format(name, dtype):
    (loss, grads, state), _ = numpy_result(name, dtype)
    assert np.isfinite(loss) and all(g.dtype.name == dtype for g in grads.values())


def test_numpy_bfloat16_computes_in_float32_and_rounds_each_layer():
    (_, grads, _), model = numpy_result("dense", "bfloat16")
    assert model.computed_in == "float32"
    assert all(p.dtype == np.float32 for p in model.params.values())
    outputs, input_grads = numpy_model.layer_values(model, *Inputs(
        parse_spec(dict(LAYERS["dense"], dtype="bfloat16"), "dense.toml", "dense")).first_batch())
    for value in [*grads.values(), *outputs.values(), *input_grads.values()]:
        assert value.dtype.name == "bfloat16"


# ---- tolerances ------------------------------------------------------------------------------

def test_depth_counts_the_layers_that_round():
    spec = parse_spec(dict(LAYERS["residual_nested"], dtype="float16"), "r.toml", "r")
    assert depth(spec.layers) == 1 + (1 + 1 + 1 + (1 + 1) + 1) + 1  # flatten etc. would be 0
    lstm = parse_spec(dict(LAYERS["lstm"], dtype="float16"), "l.toml", "l")
    assert depth(lstm.layers) == 6 + 6 + 1  # one per time step
    cnn = zoo_spec("digits_cnn", dtype="bfloat16")
    assert depth(cnn.layers) == len(cnn.layers) - 1  # the flatten rounds nothing


def test_the_tolerance_grows_with_the_unit_roundoff_and_the_depth():
    small, deep = zoo_spec("mlp_3_4_2", dtype="float16"), zoo_spec("deep_relu_mlp", dtype="float16")
    assert tolerance("float16", small.layers) == pytest.approx(8 * 2 ** -11 * np.sqrt(8))
    assert tolerance("float16", deep.layers) > tolerance("float16", small.layers)
    assert tolerance("bfloat16", small.layers) == 8 * tolerance("float16", small.layers)
    assert digits(UNIT_ROUNDOFF["float16"]) == pytest.approx(11 * np.log10(2))


def test_the_reference_is_numpy_in_float64_on_the_rounded_arrays():
    spec = zoo_spec("digits_mlp", dtype="bfloat16")
    inputs = Inputs(spec)
    job = dict(check_job(spec, inputs, "numpy"), key="k" * 24)
    ref = reference_job(job)
    assert ref["framework"] == "numpy" and ref["spec"]["dtype"] == "float64"
    assert ref["params"]["0.W"].dtype == np.float64 and ref["key"] != job["key"]
    assert np.array_equal(ref["params"]["0.W"], job["params"]["0.W"].astype(np.float64))
    assert ref["probes"] == [] and job["spec"]["dtype"] == "bfloat16"


# ---- every layer type in every framework -----------------------------------------------------

def reduced_checks(specs, executor, formats=lambda name: REDUCED):
    parsed = [parse_spec(dict(raw, dtype=dtype), f"{name}.toml", name)
              for name, raw in specs.items() for dtype in formats(name)]
    return {(m["name"], m["dtype"]): m for m in api.check(parsed, executor=executor).models}


# each mix in one format by default (both formats get two), the other one marked slow
FORMAT = {"mix_r_operator": "float16", "mix_image": "bfloat16", "mix_sequence": "float16",
          "mix_norms": "bfloat16"}
MIX_CASES = [(case, dtype) if dtype == FORMAT[case] else
             pytest.param(case, dtype, marks=pytest.mark.slow)
             for case in sorted(MIXES) for dtype in REDUCED]


@pytest.fixture(scope="module")
def mix_checks(executor):
    return reduced_checks(MIXES, executor, lambda name: [FORMAT[name]])


@pytest.fixture(scope="module")
def all_mix_checks(executor, mix_checks):
    other = {name: [d for d in REDUCED if d != FORMAT[name]] for name in MIXES}
    return {**mix_checks, **reduced_checks(MIXES, executor, other.get)}


@pytest.fixture(scope="module")
def layer_checks(executor):
    return reduced_checks(LAYERS, executor)


def assert_keeps_its_digits(model, framework):
    need(framework)
    info = model["frameworks"][framework]
    assert info["status"] == "ok", info.get("error")
    assert model["reference"]["status"] == "ok"
    mine = [r for r in model["precision"] if r["framework"] == framework]
    assert {r["kind"] for r in mine} >= {"loss", "grad"}
    assert all(r["passed"] for r in mine), [r for r in mine if not r["passed"]]
    assert info["digits"] >= digits(model["tolerance"]["versus_float64"]) or "branched_at" in info


def assert_pairs_agree(model):
    assert all(c["passed"] for c in model["comparisons"]), \
        [c for c in model["comparisons"] if not c["passed"]][:3]
    assert model["passed"]


def mixed(request, case, dtype):
    """The mix's check: from the default fixture, or (slow) the one with every format."""
    checks = request.getfixturevalue("mix_checks" if FORMAT[case] == dtype else "all_mix_checks")
    return checks[(case, dtype)]


@pytest.mark.parametrize("case, dtype", MIX_CASES)
@pytest.mark.parametrize("framework", ORDER)
def test_every_layer_type_runs_in_the_format_and_keeps_its_digits(request, framework, case,
                                                                   dtype):
    assert_keeps_its_digits(mixed(request, case, dtype), framework)


@pytest.mark.parametrize("case, dtype", MIX_CASES)
def test_every_pair_agrees_within_twice_the_tolerance(request, case, dtype):
    assert_pairs_agree(mixed(request, case, dtype))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", REDUCED)
@pytest.mark.parametrize("case", sorted(LAYERS))
@pytest.mark.parametrize("framework", ORDER)
def test_every_layer_runs_in_the_format_and_keeps_its_digits(layer_checks, framework, case,
                                                              dtype):
    assert_keeps_its_digits(layer_checks[(case, dtype)], framework)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", REDUCED)
@pytest.mark.parametrize("case", sorted(LAYERS))
def test_each_layer_types_pairs_agree_within_twice_the_tolerance(layer_checks, case, dtype):
    assert_pairs_agree(layer_checks[(case, dtype)])


# ---- zoo models: the verdicts of the README's table ------------------------------------------

def zoo_checked(executor, cases):
    parsed = [zoo_spec(name, dtype=dtype) for name, dtype in cases]
    return {(m["name"], m["dtype"]): m for m in api.check(parsed, executor=executor).models}


@pytest.fixture(scope="module")
def zoo_checks(executor):
    return zoo_checked(executor, [("mlp_3_4_2", "bfloat16"), ("mlp_3_4_2", "float16"),
                                  ("resid_mlp", "float16"), ("deep_sigmoid_mlp", "float16"),
                                  ("deep_sigmoid_mlp", "bfloat16")])


@pytest.fixture(scope="module")
def digits_mlp_checks(executor):
    return zoo_checked(executor, [("digits_mlp", d) for d in REDUCED])


@pytest.mark.parametrize("dtype", REDUCED)
def test_small_networks_pass_with_every_framework_within_tolerance(zoo_checks, dtype):
    assert_within_tolerance(zoo_checks[("mlp_3_4_2", dtype)], dtype)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", REDUCED)
def test_digits_mlp_passes_with_every_framework_within_tolerance(digits_mlp_checks, dtype):
    assert_within_tolerance(digits_mlp_checks[("digits_mlp", dtype)], dtype)


def assert_within_tolerance(model, dtype):
    assert model["passed"]
    tol_digits = digits(model["tolerance"]["versus_float64"])
    for fw, info in model["frameworks"].items():
        assert tol_digits <= info["digits"] <= digits(UNIT_ROUNDOFF[dtype]) + 1, (fw, info)


def test_a_relu_rounded_across_its_kink_is_a_branch_not_a_failure(zoo_checks):
    model = zoo_checks[("resid_mlp", "float16")]
    assert model["passed"]
    branched = {fw: info.get("branched_at") for fw, info in model["frameworks"].items()}
    assert all(b == {"layer": "3", "type": "relu"} for b in branched.values()), branched
    assert any(r["status"] == "branched" for r in model["precision"])


def test_float16_cannot_hold_a_deep_sigmoid_networks_gradient(zoo_checks, capsys):
    """The first layers' gradients (~1e-14) lie below float16's range: every framework loses
    them alike, and the check says so."""
    model = zoo_checks[("deep_sigmoid_mlp", "float16")]
    assert not model["passed"] and "0.W" in model["below_normal"]
    assert all(info["digits"] < 1 for info in model["frameworks"].values())
    assert zoo_checks[("deep_sigmoid_mlp", "bfloat16")]["passed"]  # bfloat16 has float32's range
    lost = [r for r in model["precision"] if not r["passed"]]
    assert lost and all(r["note"].endswith("the format cannot hold it") for r in lost
                        if r["reach"]["bound"] >= 1)


def test_a_zero_by_construction_is_not_listed_below_the_normal_range(executor):
    """A bias before a BatchNorm has a zero gradient by construction (float64: ~1e-17 of
    noise); below_normal listed it as a value float16 "holds with fewer digits"."""
    raw = {"name": "bias_before_bn", "dtype": "float16", "seed": 0, "input_shape": [4],
           "data": {"source": "random_classification", "classes": 2, "examples": 8},
           "layers": [{"type": "dense", "units": 4}, {"type": "batchnorm"},
                      {"type": "dense", "units": 2}], "loss": {"type": "softmax_cross_entropy"}}
    model = api.check([parse_spec(raw, "bn.toml", raw["name"])], frameworks=["numpy"],
                      executor=executor).models[0]
    assert "0.b" not in model.get("below_normal", {})


def test_float32_with_matmul_precision_judges_long_sums_by_rounding_s_reach(executor):
    """A bias gradient summed over 1024 rows in float32 loses more digits than the format's
    tolerance at this depth in every correct implementation (NumPy's own: 4.6e-6 against
    1.35e-6): `--matmul-precision highest`, which changes no arithmetic here, made the check
    FAIL. Within rounding's reach of NumPy's formula (its draws, each rounding moved), the
    rows are amplified: PASS*, as the same check without the flag passes."""
    raw = {"name": "long_sums", "dtype": "float32", "seed": 0, "input_shape": [16, 8],
           "data": {"source": "random_sequence", "classes": 2, "examples": 64},
           "layers": [{"type": "dense", "units": 8}, {"type": "layernorm"},
                      {"type": "sequence_mean"}, {"type": "dense", "units": 2}],
           "loss": {"type": "softmax_cross_entropy"}}
    model = api.check([parse_spec(raw, "long_sums.toml", "long_sums")], frameworks=["numpy"],
                      matmul_precision="highest", executor=executor).models[0]
    amplified = [r for r in model["precision"] if r["status"] == "amplified"]
    assert model["passed"] and model.get("amplified") and amplified
    assert all(r["rel_err"] > r["tolerance"] and r["rel_err"] <= r["reach"]["bound"]
               for r in amplified)


def test_a_loss_near_its_minimum_is_more_than_bfloat16_holds(executor, tmp_path):
    """Least squares at its fitted weights: the loss is a sum of tiny residuals, each a
    difference of outputs bfloat16 holds to 3 digits, so every implementation's loss is
    25 % off float64's. Rounding alone moves it that far in NumPy's formula: FAIL, for the
    format, and the note says so (a bound that wide would pass anything)."""
    raw = {"name": "fitted", "dtype": "bfloat16", "seed": 0, "input_shape": [3],
           "data": {"source": "random_regression", "outputs": 1, "examples": 8},
           "layers": [{"type": "dense", "units": 1}], "loss": {"type": "mse"}}
    spec = parse_spec(raw, "fitted.toml", "fitted")
    inputs = Inputs(spec, steps=1)
    x, y = np.asarray(inputs.x, np.float64), np.asarray(inputs.y, np.float64)
    w = np.linalg.lstsq(np.c_[x, np.ones(len(x))], y, rcond=None)[0]  # (4, 1): W and b
    np.savez(tmp_path / "fitted.npz", **{"0.W": w[:3], "0.b": w[3]})
    spec = parse_spec(dict(raw, params=str(tmp_path / "fitted.npz")),
                      str(tmp_path / "fitted.toml"), "fitted")
    model = api.check([spec], frameworks=["numpy"], executor=executor).models[0]
    [loss] = [r for r in model["precision"] if r["param"] == "loss"]
    assert not model["passed"] and loss["rel_err"] > 0.1
    assert loss["note"].endswith("the format cannot hold it")


# ---- the command line ------------------------------------------------------------------------

def test_check_prints_the_digits_table(tmp_path, capsys, executor, monkeypatch):
    need("torch")
    session_cli(monkeypatch, executor)
    out = tmp_path / "check.json"
    code = main(["check", "--zoo", "xor_2_2_1", "--dtype", "bfloat16", "--frameworks",
                 "numpy,torch", "--quiet", "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0 and "np digits" in text and "bfloat16" in text
    document = json.loads(out.read_text())
    model = document["models"][0]
    assert model["dtype"] == "bfloat16" and model["reference"]["dtype"] == "float64"
    assert {r["framework"] for r in model["precision"]} == {"numpy", "torch"}
    jsonschema.validate(document, json.loads(schemas.text("check")))  # its dtype included


def test_a_framework_with_a_non_finite_tensor_has_nan_digits_wherever_it_stands():
    for found in ([3.0, float("nan"), 5.0], [float("nan"), 3.0], [3.0, float("nan")]):
        assert worst_digits(found) != worst_digits(found)
    assert worst_digits([4.0, 2.5, float("inf")]) == 2.5 and worst_digits([]) is None


def test_matmul_precision_on_a_float64_check_is_refused(tmp_path, capsys):
    """It was accepted and changed nothing: not even the JSON recorded it."""
    out = tmp_path / "check.json"
    assert main(["check", "--zoo", "xor_2_2_1", "--matmul-precision", "default", "--json",
                 str(out)]) == 2
    assert capsys.readouterr().err.startswith("crossgrad: --matmul-precision: has no effect on "
                                              "a float64 check")
    assert not out.exists()


@pytest.mark.parametrize("setting, expected", [("default", "default"), ("highest", "highest")])
def test_the_matmul_precision_in_effect_is_recorded(tmp_path, setting, expected, executor,
                                                    monkeypatch):
    need("jax")
    session_cli(monkeypatch, executor)
    out = tmp_path / "check.json"
    assert main(["check", "--zoo", "mlp_3_4_2", "--dtype", "float32", "--matmul-precision",
                 setting, "--frameworks", "numpy,jax", "--quiet", "--json", str(out)]) == 0
    model = json.loads(out.read_text())["models"][0]
    assert model["matmul_precision"] == setting
    assert model["frameworks"]["jax"]["precision"]["jax_default_matmul_precision"] == expected
    assert model["precision"] and model["frameworks"]["numpy"]["digits"] > 5


@pytest.mark.parametrize("argv", [["train", "--dtype", "bfloat16"], ["run", "--dtype", "float16"]])
def test_reduced_precision_is_not_trained(argv, capsys, tmp_path):
    assert main([*argv, "--zoo", "xor_2_2_1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("crossgrad: --dtype:") and "check" in err[0]


def test_a_bfloat16_spec_is_not_trained(tmp_path, capsys):
    spec = tmp_path / "bf.toml"
    spec.write_text('name = "bf"\ndtype = "bfloat16"\ninput_shape = [2]\n[data]\nsource = "xor"\n'
                    '[[layers]]\ntype = "dense"\nunits = 1\n[loss]\ntype = "mse"\n')
    assert main(["train", str(spec), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{spec}: dtype: bfloat16" in err[0]


def test_saved_bfloat16_arrays_are_float32_holding_the_same_values(tmp_path, capsys):
    """--save in bfloat16: .npy cannot name ml_dtypes' type and would record raw bytes
    (|V2); the arrays are widened to float32, which holds every bfloat16 value exactly."""
    save = tmp_path / "save"
    assert main(["check", "--zoo", "xor_2_2_1", "--dtype", "bfloat16", "--frameworks", "numpy",
                 "--quiet", "--save", str(save)]) == 0
    inputs = Inputs(zoo_spec("xor_2_2_1", dtype="bfloat16"))
    x, _, _ = inputs.first_batch()
    with np.load(save / "xor_2_2_1" / "params.npz") as params, \
            np.load(save / "xor_2_2_1" / "batch.npz") as batch, \
            np.load(save / "xor_2_2_1" / "numpy.npz") as numpy_results:
        for name, array in inputs.params.items():
            assert array.dtype == ml_dtypes.bfloat16
            assert params[name].dtype == np.float32
            assert np.array_equal(params[name], array.astype(np.float32)), name
        assert batch["x"].dtype == np.float32 and np.array_equal(batch["x"], x.astype(np.float32))
        assert {numpy_results[name].dtype.kind for name in numpy_results.files} == {"f"}


# a residual block holding a ReLU, with a plugin whose torch dL/dx is 5x too large
WRONG_IN_A_BLOCK = {
    "name": "wrong_in_a_block", "seed": 0, "input_shape": [4],
    "plugins": [str(__import__("pathlib").Path(__file__).parent / "plugins" / "swish_variants.py")],
    "data": {"source": "random_classification", "classes": 2, "examples": 8},
    "layers": [{"type": "residual", "layers": [
        {"type": "dense", "units": 4, "init": {"type": "normal", "std": 1.0}},
        {"type": "swish_torch_dx_5x"}, {"type": "relu"}]}, {"type": "dense", "units": 2}],
    "loss": {"type": "softmax_cross_entropy"}}


@pytest.mark.parametrize("first", [True, False], ids=["block_first", "block_second"])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_a_wrong_gradient_in_a_block_with_a_relu_is_not_excused_as_a_branch(executor, dtype,
                                                                             first):
    """The block holds a kink, its outputs agree, and its dL/dx is the first beyond the
    tolerance: it once counted as a branch whatever the difference, and every gradient at and
    below it went unjudged (PASS). A flip changes a few rows of dL/dx; this changes them all.
    At layer 0 the pairs were not excused either way (index 0 read as none)."""
    need("torch")
    layers = WRONG_IN_A_BLOCK["layers"]
    raw = dict(WRONG_IN_A_BLOCK, dtype=dtype,
               layers=layers if first else [{"type": "dense", "units": 4}, *layers])
    result = api.check([parse_spec(raw, "wrong.toml", raw["name"])],
                       frameworks=["numpy", "torch"], executor=executor)
    model = result.models[0]
    assert not model["passed"]
    assert "branched_at" not in model["frameworks"]["torch"]
    assert any(r["framework"] == "torch" and r["kind"] == "grad" and r["status"] == "beyond"
               for r in model["precision"])
