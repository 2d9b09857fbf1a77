"""Second order (`check --order 2`): every framework's Hessian-vector products agree, pair by
pair and with differences of its own gradient, for every layer type and zoo model; a wrong
second derivative behind a right gradient is caught; NumPy's hand R-operator is exact.

TensorFlow's H v through BatchNorm and LayerNorm is wrong, by tf.nn.moments' own design
(README, "Second order"): those cases assert the failure and its named cause.

The default run checks every layer type in four models (tests/mixes.py) in every framework,
and every zoo model in NumPy and PyTorch; one model per layer type and the zoo in all four
frameworks are marked slow (each model costs TensorFlow and JAX a compile of their H v).
"""
import json
from pathlib import Path

import numpy as np
import pytest

from crossgrad.harness import api
from crossgrad.harness.cli import main
from crossgrad.harness.compare.hvp import EXACT
from crossgrad.harness.registry import ORDER
from crossgrad.harness.run.jobs import job_key
from crossgrad.harness.run.second_order import DIFFERENCES, differences
from crossgrad.harness.spec import parse_spec, zoo_names, zoo_spec

from cases import LAYERS
from cli_session import session_cli
from conftest import need
from mixes import MIXES

PAIRS = [(a, b) for i, a in enumerate(ORDER) for b in ORDER[i + 1:]]
MOMENTS = {"batchnorm", "layernorm"}   # tf.nn.moments: TensorFlow's H v is wrong through them
R_OPERATOR = {"dense", "sigmoid", "relu", "leaky_relu", "gelu", "identity", "dropout"}
PLUGINS = Path(__file__).parent / "plugins" / "second_order.py"


def types(layers):
    return {t for layer in layers for t in [layer["type"], *types(layer.get("layers", []))]}


def tf_wrong(model_layers):
    return bool(types(model_layers) & MOMENTS)


def check_order_2(parsed, executor, probes_per_model=None, frameworks=None):
    """api.check(order=2); `probes_per_model` keeps that many probes, spread over the tensors
    (each probe costs every framework 23 gradients)."""
    prepared = api.prepare(parsed)
    if probes_per_model:
        for _, inputs in prepared:
            step = max(1, len(inputs.probes) // probes_per_model)
            inputs.probes = inputs.probes[::step][:probes_per_model]
    return api.check(parsed, prepared=prepared, executor=executor, order=2, frameworks=frameworks)


def checked(specs, executor, probes_per_model, frameworks=None):
    parsed = [parse_spec(dict(raw, dtype="float64"), f"{name}.toml", name)
              for name, raw in specs.items()]
    return {m["name"]: (m, p) for m, p in zip(
        check_order_2(parsed, executor, probes_per_model, frameworks).models, parsed)}


@pytest.fixture(scope="module")
def mix_checks(executor):
    return checked(MIXES, executor, probes_per_model=6)


@pytest.fixture(scope="module")
def zoo_numpy_torch(executor):
    parsed = [zoo_spec(name) for name in zoo_names()]
    return {m["name"]: (m, p) for m, p in zip(check_order_2(
        parsed, executor, probes_per_model=2, frameworks=["numpy", "torch"]).models, parsed)}


@pytest.fixture(scope="module")
def layer_checks(executor):
    return checked(LAYERS, executor, probes_per_model=4)


@pytest.fixture(scope="module")
def zoo_checks(executor):
    parsed = [zoo_spec(name) for name in zoo_names()]
    return {m["name"]: (m, p) for m, p in
            zip(check_order_2(parsed, executor, probes_per_model=3).models, parsed)}


def rows(model, kind, a=None, b=None, framework=None):
    return [r for r in model["hvp"] if r["kind"] == kind and (a is None or r["a"] == a)
            and (b is None or r["b"] == b) and (framework is None or r["framework"] == framework)]


def assert_pair(model, spec, a, b):
    for fw in (a, b):
        need(fw)
    found = rows(model, "pair", a, b)
    ran = {r["framework"] for r in model["finite_difference"]}
    assert found and len(found) == len(model["finite_difference"]) // len(ran)
    if "tensorflow" in (a, b) and tf_wrong(spec.layers):
        assert any(r["status"] == "mismatch" for r in found)
        assert "tf.nn.moments" in model["frameworks"]["tensorflow"]["hvp"]["known_cause"]
        return
    bad = [r for r in found if not r["passed"]]
    assert not bad, bad[:3]
    exact = [r for r in found if r["tolerance"] == EXACT]
    assert all(r["rel_err"] <= EXACT for r in exact)


def assert_own(model, spec, framework):
    need(framework)
    method = model["frameworks"][framework]["hvp"]["method"]
    found = rows(model, "own", framework=framework)
    if method == DIFFERENCES:  # its H v is those differences: nothing to compare
        assert not found
        return
    assert found and all(r["b"] == "differences" for r in found)
    if framework == "tensorflow" and tf_wrong(spec.layers):
        assert any(r["status"] == "mismatch" for r in found)
        return
    assert all(r["passed"] for r in found), [r for r in found if not r["passed"]][:3]


def test_the_mixes_hold_every_layer_type():
    assert types(layer for raw in LAYERS.values() for layer in raw["layers"]) == \
        types(layer for raw in MIXES.values() for layer in raw["layers"])


@pytest.mark.parametrize("pair", PAIRS, ids="~".join)
@pytest.mark.parametrize("case", sorted(MIXES))
def test_every_pair_agrees_on_h_v_through_every_layer_type(mix_checks, case, pair):
    assert_pair(*mix_checks[case], *pair)


@pytest.mark.parametrize("framework", ORDER)
@pytest.mark.parametrize("case", sorted(MIXES))
def test_h_v_agrees_with_differences_of_its_own_gradient(mix_checks, case, framework):
    assert_own(*mix_checks[case], framework)


@pytest.mark.parametrize("name", zoo_names())
def test_torch_and_numpy_agree_on_h_v_for_every_zoo_model(zoo_numpy_torch, name):
    model, spec = zoo_numpy_torch[name]
    assert_pair(model, spec, "numpy", "torch")
    assert_own(model, spec, "torch")
    assert_own(model, spec, "numpy")


@pytest.mark.parametrize("case", sorted(MIXES))
def test_numpy_differentiates_by_hand_where_it_has_the_r_operator(mix_checks, case):
    model, spec = mix_checks[case]
    hvp = model["frameworks"]["numpy"]["hvp"]
    if types(spec.layers) <= R_OPERATOR | {"tanh"}:
        assert hvp["method"] == "R-operator"
        assert all(r["tolerance"] == EXACT for r in rows(model, "pair", "numpy"))
    else:
        assert hvp["method"] == DIFFERENCES and "no hand-written R-operator" in hvp["why"]


@pytest.mark.slow
@pytest.mark.parametrize("pair", PAIRS, ids="~".join)
@pytest.mark.parametrize("case", sorted(LAYERS))
def test_every_pair_agrees_on_h_v_for_every_layer_type(layer_checks, case, pair):
    assert_pair(*layer_checks[case], *pair)


@pytest.mark.slow
@pytest.mark.parametrize("framework", ORDER)
@pytest.mark.parametrize("case", sorted(LAYERS))
def test_each_layer_types_h_v_agrees_with_differences_of_its_own_gradient(layer_checks, case,
                                                                           framework):
    assert_own(*layer_checks[case], framework)


@pytest.mark.slow
@pytest.mark.parametrize("pair", PAIRS, ids="~".join)
@pytest.mark.parametrize("name", zoo_names())
def test_every_pair_agrees_on_h_v_for_every_zoo_model(zoo_checks, name, pair):
    assert_pair(*zoo_checks[name], *pair)


@pytest.mark.slow
@pytest.mark.parametrize("framework", ORDER)
@pytest.mark.parametrize("name", zoo_names())
def test_zoo_h_v_agrees_with_differences_of_its_own_gradient(zoo_checks, name, framework):
    assert_own(*zoo_checks[name], framework)


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(LAYERS))
def test_numpy_uses_its_r_operator_on_every_layer_type_that_has_one(layer_checks, case):
    model, spec = layer_checks[case]
    hvp = model["frameworks"]["numpy"]["hvp"]
    if types(spec.layers) <= R_OPERATOR | {"tanh"}:
        assert hvp["method"] == "R-operator"
    else:
        assert hvp["method"] == DIFFERENCES and "no hand-written R-operator" in hvp["why"]


def test_the_verdict_follows_the_rows(mix_checks):
    for model, spec in mix_checks.values():
        expected = all(r["passed"] for r in model["hvp"]) and all(
            r["passed"] for key in ("comparisons", "finite_difference") for r in model[key])
        assert model["passed"] == expected, model["name"]
        assert model["passed"] == (not tf_wrong(spec.layers)), model["name"]


# ---- a right gradient with a wrong second derivative is caught --------------------------------

def plugin_spec(layer_type):
    raw = {"name": layer_type, "seed": 3, "plugins": [str(PLUGINS)], "input_shape": [64],
           "data": {"source": "digits", "batch_size": 8},
           "layers": [{"type": "dense", "units": 6}, {"type": layer_type},
                      {"type": "dense", "units": 10}],
           "loss": {"type": "softmax_cross_entropy"}}
    return parse_spec(raw, f"{layer_type}.toml", layer_type)


@pytest.fixture(scope="module")
def plugins_checked(executor):
    parsed = [plugin_spec(t) for t in ("swish_detached", "swish_stopped", "swish_custom_vjp")]
    return {m["name"]: m for m in check_order_2(parsed, executor, probes_per_model=6,
                                                frameworks=["numpy", "torch", "jax"]).models}


def first_order_passed(model):
    """The same check's first-order rows: every gradient pair and finite difference."""
    return all(r["passed"] for key in ("comparisons", "finite_difference") for r in model[key])


@pytest.mark.parametrize("layer_type, wrong", [("swish_detached", "torch"),
                                               ("swish_stopped", "jax")])
def test_a_backward_built_from_detached_values_passes_first_order_and_fails_second(
        plugins_checked, layer_type, wrong):
    need("torch"), need("jax")
    model = plugins_checked[layer_type]
    assert first_order_passed(model), "the gradient itself is right"
    assert not model["passed"]
    own = {fw: rows(model, "own", framework=fw) for fw in ("torch", "jax")}
    assert any(r["status"] == "mismatch" for r in own[wrong])  # H v along the last layer's
    # weights never reaches the plugin's backward, and is right
    right = "jax" if wrong == "torch" else "torch"
    assert all(r["passed"] for r in own[right])
    pair = rows(model, "pair", "torch", "jax")
    assert any(r["status"] == "mismatch" for r in pair)
    # NumPy has no R-operator for a plugin: its H v is differences of its hand gradient,
    # which agree with the right framework and not with the wrong one
    assert model["frameworks"]["numpy"]["hvp"]["method"] == DIFFERENCES
    assert all(r["passed"] for r in rows(model, "pair", "numpy", right))
    assert any(not r["passed"] for r in rows(model, "pair", "numpy", wrong))


def test_jax_forward_mode_refuses_a_custom_vjp_and_the_check_says_so(plugins_checked):
    need("jax")
    model = plugins_checked["swish_custom_vjp"]
    assert first_order_passed(model)
    assert not model["passed"]
    assert "custom_vjp" in model["frameworks"]["jax"]["hvp"]["error"]
    assert all(r["passed"] for r in model["hvp"])  # numpy and torch agree with each other


# ---- the worker side: differences of a gradient, extrapolated --------------------------------

def test_gradient_differences_recover_h_v_and_see_a_kink():
    """f(p) = sum(sin(p)) + p_0 |p_0| / 2: H v = -sin(p) v, and at p_0 = 0 the second
    derivative jumps from -1 to 1: the one-sided differences part."""
    p = {"w": np.array([0.3, -1.2, 2.0])}
    v = np.array([0.6, 0.0, 0.8])

    def smooth(q):
        return {"w": np.cos(q["w"])}

    got = differences(smooth, p, "w", v)
    assert np.max(np.abs(got["differences"]["w"] + np.sin(p["w"]) * v)) < 1e-10
    assert got["differences_err"] < 1e-9 and got["one_sided_gap"] < 1e-8

    def kinked(q):
        return {"w": np.cos(q["w"]) + np.abs(q["w"]) * [1, 0, 0]}

    at_kink = {"w": np.array([0.0, -1.2, 2.0])}
    kink = differences(kinked, at_kink, "w", v)
    # entry 0: forward |0.6| = 0.6, backward -0.6
    assert abs(kink["one_sided_gap"] - 1.2) < 1e-6 and kink["one_sided_err"] < 1e-6


# ---- the command line ------------------------------------------------------------------------

def test_order_2_in_float32_says_there_is_nothing_to_differentiate(tmp_path, capsys, executor,
                                                                   monkeypatch):
    need("torch")
    session_cli(monkeypatch, executor)
    out = tmp_path / "check.json"
    code = main(["check", "--zoo", "xor_2_2_1", "--dtype", "float32", "--order", "2",
                 "--frameworks", "numpy,torch", "--quiet", "--json", str(out)])
    assert code == 0
    model = json.loads(out.read_text())["models"][0]
    assert model["hvp"] == [] and "float64 only" in model["hvp_note"]
    assert "float64 only" in capsys.readouterr().out


def test_order_2_that_compares_nothing_says_so(tmp_path, capsys, executor, monkeypatch):
    """NumPy alone on a conv net (no hand-written R-operator): its H v is differences of its
    own gradient, held against nothing; the check passed on first order with no word that
    the second order it was asked for compared nothing."""
    session_cli(monkeypatch, executor)
    out = tmp_path / "check.json"
    code = main(["check", "--zoo", "digits_cnn", "--order", "2", "--frameworks", "numpy",
                 "--quiet", "--json", str(out)])
    model = json.loads(out.read_text())["models"][0]
    assert code == 0 and model["hvp"] == []
    assert model["hvp_note"].startswith("nothing compared at second order")
    assert "nothing compared at second order" in capsys.readouterr().out


def test_the_table_gets_hvp_columns_and_the_json_rows(tmp_path, capsys, executor, monkeypatch):
    need("torch")
    session_cli(monkeypatch, executor)
    out = tmp_path / "check.json"
    assert main(["check", "--zoo", "mlp_3_4_2", "--order", "2", "--frameworks", "numpy,torch",
                 "--quiet", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "hvp~fd" in text.splitlines()[0] and "H v: exact pairs <= 1e-10" in text
    model = json.loads(out.read_text())["models"][0]
    assert {r["kind"] for r in model["hvp"]} == {"pair", "own"}
    assert set(model["hvp"][0]) >= {"framework", "direction", "a", "b", "rel_err", "passed"}
    assert model["frameworks"]["torch"]["hvp"]["method"] == "double backward"


def test_a_bad_order_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["check", "--zoo", "xor_2_2_1", "--order", "3"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("crossgrad: --order:")


def test_the_cache_keys_tell_the_orders_apart():
    spec = zoo_spec("xor_2_2_1")
    assert job_key("check", spec, "torch", "2", False) != job_key("check", spec, "torch", "2",
                                                                   False, order=2)
    assert job_key("check", spec, "torch", "2", False) == job_key("check", spec, "torch", "2",
                                                                   False, order=1)
