"""The control of a failing pair: NumPy one format wider (compare/control.py).

An ill-conditioned network (a BatchNorm fed values near 10 or 1000 that differ by hundredths:
three or more digits cancel in x - mean) parts every pair of frameworks beyond the pairwise
tolerance in float32 and in float64, though none computes anything else: against the
control each is within rounding's level, and the model is PASS* (exit 0). A framework that
does compute something else (a plugin off by a relative 1e-9, or 1e-3, in PyTorch alone)
still fails, on the same ill-conditioned network too, and the note names it."""
import json

import numpy as np
import pytest

import crossgrad
from crossgrad.harness import registry
from crossgrad.harness.compare import control
from crossgrad.harness.report.tables import check_result, event, train_event, train_result

from conftest import FRAMEWORKS

INSTALLED = [fw for fw in FRAMEWORKS if registry.installed(fw)]

NUDGE = '''
import numpy as np

import crossgrad


@crossgrad.layer("nudge")
class Nudge:
    """y = x, but PyTorch's is (1 + torch_error) x: a framework computing something else;
    and NumPy's backward in every format but float64 is (1 + numpy_narrow_error) dy: NumPy's
    code computing something else in the checked format only."""
    keys = {"torch_error": 0.0, "numpy_narrow_error": 0.0}

    def params(self, in_shape):
        return {}

    def out_shape(self, in_shape):
        return in_shape

    def numpy_forward(self, p, x):
        return x, None

    def numpy_backward(self, p, cache, dy):
        if dy.dtype != np.float64:
            return dy * dy.dtype.type(1 + self.numpy_narrow_error), {}
        return dy, {}

    def torch(self, p, x):
        return x * (1 + self.torch_error)

    def tensorflow(self, p, x):
        return x

    def jax(self, p, x):
        return x
'''


def spec(offset, torch_error=0.0, numpy_narrow_error=0.0):
    """digits -> dense (init std 0.002, bias `offset`) -> batchnorm -> tanh -> nudge -> dense."""
    return {"name": f"ill_{offset:g}_{torch_error:g}", "input_shape": [64],
            "data": {"source": "digits", "batch_size": 32}, "plugins": ["nudge.py"],
            "layers": [{"type": "dense", "units": 16, "init": {"type": "normal", "std": 0.002},
                        "bias_init": {"type": "constant", "value": offset}},
                       {"type": "batchnorm"}, {"type": "tanh"},
                       {"type": "nudge", "torch_error": torch_error,
                        "numpy_narrow_error": numpy_narrow_error},
                       {"type": "dense", "units": 10}],
            "loss": {"type": "softmax_cross_entropy"}}


CASES = {  # name: (bias offset, PyTorch's error, dtype[, NumPy's error but in float64])
    "ill_float32": (10.0, 0.0, "float32"),
    "ill_float64": (1000.0, 0.0, "float64"),
    "bug_float64": (0.0, 1e-9, "float64"),
    "bug_on_ill_float64": (1000.0, 1e-6, "float64"),
    "bug_float32": (0.0, 1e-3, "float32"),
    "numpy_bug_float32": (0.0, 0.0, "float32", 0.5),
}


def written(folder, cases):
    """The specs of `cases` ({name: (offset, PyTorch's error, dtype)}), each a file beside
    the nudge plugin in `folder`, loaded."""
    if len(INSTALLED) < 3 or "torch" not in INSTALLED:
        pytest.skip("needs PyTorch and two more frameworks")
    (folder / "nudge.py").write_text(NUDGE)
    specs = []
    for name, (offset, error, dtype, *numpy_error) in cases.items():
        path = folder / f"{name}.json"
        path.write_text(json.dumps(dict(spec(offset, error, *numpy_error), name=name)))
        specs.append(crossgrad.load(path, dtype=dtype))
    return specs


@pytest.fixture(scope="module")
def checked(tmp_path_factory, executor):
    specs = written(tmp_path_factory.mktemp("control"), CASES)
    return {m["name"]: m for m in crossgrad.check(specs, executor=executor).models}


@pytest.mark.parametrize("name", ["ill_float32", "ill_float64"])
def test_an_ill_conditioned_network_is_pass_star_against_the_control(checked, name):
    model = checked[name]
    beyond = [c for c in model["comparisons"] if c.get("status") == "amplified"]
    assert beyond, "the network no longer parts the pairs: make it worse conditioned"
    assert model["passed"] and check_result(model) == "PASS*" and model["amplified"]
    assert model["control"]["status"] == "ok"
    for c in beyond:
        measured = c["control"]
        assert c["rel_err"] > (1e-5 if name.endswith("32") else 1e-12)
        assert all(err <= measured["bound"] for err in measured["err"].values())
        assert measured["bound"] == max(model["control"]["floor"],
                                        control.SPREAD * measured["level"])
        assert measured["level"] >= measured["sensitivity"] > 0  # rounding moves it: measured


@pytest.mark.parametrize("name", ["bug_float64", "bug_on_ill_float64", "bug_float32"])
def test_a_framework_computing_something_else_still_fails_and_is_named(checked, name):
    model = checked[name]
    assert not model["passed"] and check_result(model) == "FAIL"
    failing = [c for c in model["comparisons"] if not c["passed"]]
    assert failing and all("torch" in (c["a"], c["b"]) for c in failing)
    for c in failing:
        assert c["note"].startswith("torch parts from "), c["note"]
        assert c["control"]["err"]["torch"] > c["control"]["bound"]


def test_numpy_s_own_code_wrong_in_the_checked_format_sets_no_level_and_fails(checked):
    """NumPy's backward 1.5x too large in float32 only: NumPy's float32 result is 0.5 from its
    own code in float64, and so were its draws, so rounding's level was 0.5 and every pair
    with NumPy passed as amplified rounding. Its draws agree with it to rounding, and the
    other frameworks are within rounding of float64: a float32 formula of NumPy's, failed."""
    model = checked["numpy_bug_float32"]
    assert not model["passed"] and check_result(model) == "FAIL"
    failing = [c for c in model["comparisons"] if not c["passed"]]
    assert failing and all("numpy" in (c["a"], c["b"]) for c in failing)
    for c in failing:
        assert "a float32 formula of numpy's, not rounding" in c["note"], c["note"]
        assert c["control"]["spread"] * control.SPREAD < c["control"]["err"]["numpy"]


def test_numpy_s_own_code_wrong_in_reduced_precision_sets_no_reach(tmp_path, executor):
    """The same NumPy backward in float16: rounding's reach against float64 was NumPy's own
    0.5, and NumPy's row passed as amplified. (In bfloat16, whose roundings move a gradient
    by 1e-2, only a departure beyond 64 of those is told from rounding.)"""
    spec = written(tmp_path, {"numpy_bug_float16": (0.0, 0.0, "float16", 0.5)})[0]
    model = crossgrad.check([spec], executor=executor).models[0]
    assert not model["passed"] and check_result(model) == "FAIL"
    own = [r for r in model["precision"] if r["framework"] == "numpy" and not r["passed"]]
    assert own, model["precision"]
    for row in own:
        assert "a formula of NumPy's for this format, not rounding" in row["note"], row
        assert row["rel_err"] > row["reach"]["bound"]


def test_a_model_that_passes_runs_no_control(tmp_path, executor):
    model = crossgrad.check([crossgrad.zoo("xor_2_2_1")], executor=executor).models[0]
    assert model["passed"] and "control" not in model and check_result(model) == "PASS"


def test_the_control_is_one_format_wider_where_there_is_one():
    assert control.control_dtype("float32") == "float64"
    wider = np.finfo(np.longdouble).nmant > np.finfo(np.float64).nmant
    assert control.control_dtype("float64") == (np.dtype(np.longdouble).name if wider else None)
    assert control.control_dtype("bfloat16") is None  # reduced precision: precision.py's


def test_a_rounding_of_every_layer_s_values_moves_numpy_s_results_by_about_one_unit():
    """The control's sensitivity draws (spec key "jitter"): a random relative move of at most
    `unit` on each value leaving a layer, the same draws for the same seed."""
    impl = registry.load("numpy")
    body = crossgrad.zoo("digits_mlp").for_impls()
    from crossgrad.harness.run.jobs import Inputs
    inputs = Inputs(crossgrad.zoo("digits_mlp"), steps=1)
    idx = inputs.batches[0]
    runs = []
    for jitter in (None, {"unit": 1e-10, "seed": [0, 0]}, {"unit": 1e-10, "seed": [0, 0]},
                   {"unit": 1e-10, "seed": [0, 1]}):
        model = impl.model.build_model(dict(body, jitter=jitter) if jitter else body)
        impl.model.set_params(model, inputs.params, inputs.state)
        runs.append(impl.model.loss_and_gradients(model, inputs.x[idx], inputs.y[idx], {}))
    (loss, grads, _), same, again, other = runs
    assert same[0] == again[0] and same[0] != loss and other[0] != same[0]
    assert abs(same[0] - loss) <= 1e-8 * abs(loss)
    for k, g in grads.items():
        moved = np.max(np.abs(same[1][k] - g)) / np.max(np.abs(g))
        assert 0 < moved < 1e-7, k


def test_the_control_judges_each_failing_row_from_the_results_it_is_given():
    """attach on made-up results, their rows from compare.pairwise: a loss-only framework (a
    plugin without numpy_backward) is in the loss rows only; a zero by construction keeps
    its note; a framework that failed keeps the model failed though its rows are amplified;
    one far from the others is named; NumPy agreeing with the control (which runs its code)
    while the others agree with each other is not refereed; no control says why."""
    from types import SimpleNamespace
    from crossgrad.harness.compare.pairwise import pairwise
    layers = [{"type": "dense", "name": "0", "in_shape": [2], "use_bias": True,
               "params": {"W": {}, "b": {}}},
              {"type": "batchnorm", "name": "1", "in_shape": [3], "params": {}}]
    spec = SimpleNamespace(dtype="float32", layers=layers)
    zeros = {"0.b": "x"}
    exact = {"loss": 1.0, "grads": {"0.W": np.ones((2, 3)), "0.b": np.zeros(3)}, "state": {}}
    perturbed = [{"loss": 1.0 + 1e-5, "grads": {"0.W": np.ones((2, 3)) * (1 + 1e-5),
                                                 "0.b": np.full(3, 1e-5)}, "state": {}}]
    control_result = dict(exact, status="ok", perturbed=perturbed)

    def near(e, f=None):
        f = e if f is None else f
        return {"status": "ok", "loss": 1.0 + e, "state": {},
                "grads": {"0.W": np.ones((2, 3)) * (1 + f), "0.b": np.full(3, f)}}

    def judged(results, control_result=control_result, failed=()):
        rows = pairwise(results, "float32", zeros)
        entry = {"comparisons": rows, "finite_difference": [], "passed": False,
                 "frameworks": {fw: {"status": "failed" if fw in failed else "ok"}
                                for fw in results}}
        return control.attach(entry, spec, results, control_result)

    loss_only = {"status": "ok", "loss": 1.0 + 2e-6, "gradients": "skipped", "grads": {},
                 "state": {}}
    spread = {"numpy": loss_only, "torch": near(3e-5), "tensorflow": near(-3e-5),
              "jax": near(2e-5)}
    model = judged(spread)
    assert model["passed"] and model["amplified"] and check_result(model) == "PASS*"
    amplified = [c for c in model["comparisons"] if c.get("status") == "amplified"]
    assert amplified and all(c["passed"] for c in model["comparisons"])
    zero_rows = [c for c in amplified if c["param"] == "0.b"]
    assert zero_rows and all(c["note"].startswith("zero by construction (x)") and
                             "; both within" in c["note"] for c in zero_rows)
    assert {fw for c in amplified if c["param"] == "loss" for fw in c["control"]["err"]} >= \
        {"numpy"}
    broken = judged(spread, failed=("jax",))
    assert not broken["passed"] and "amplified" not in broken
    odd = judged(dict(spread, jax=near(-1e-3)))
    assert not odd["passed"]
    assert all("jax parts from" in c["note"] and "formula" not in c["note"]
               for c in odd["comparisons"] if not c["passed"])
    alone = judged({"numpy": near(2e-6), "jax": near(-1e-3)})  # nobody else to confirm numpy
    assert all("jax parts from" in c["note"] and "a formula of numpy's" in c["note"]
               for c in alone["comparisons"] if not c["passed"])
    shared = judged({"numpy": near(1e-9), "torch": near(5e-3, 5e-3), "jax": near(5e-3, 5e-3)})
    assert not shared["passed"]
    assert all("numpy agrees with the control" in c["note"]
               for c in shared["comparisons"] if not c["passed"])
    none = judged(spread, None)
    assert not none["passed"] and none["control"]["status"] == "failed"
    assert none["control"]["error"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_control_runs_on_every_zoo_model(dtype):
    """Every layer type of the zoo computes in the wider format and in the checked one with
    its values moved, in NumPy, in this process: the control's job as a worker runs it.
    GELU in long double is the one exception, and says so in one line."""
    from crossgrad.harness import api
    from crossgrad.harness.run import jobs, worker
    from crossgrad.harness.run.reference import reference_job
    impl = registry.load("numpy")
    wider = control.control_dtype(dtype)
    if wider is None:
        pytest.skip("no format wider than float64 here")
    for name in api.zoo_names():
        spec = api.zoo(name).with_overrides(dtype=dtype)
        job = jobs.keyed(jobs.check_job(spec, jobs.Inputs(spec), registry.REFERENCE), spec,
                         False)
        try:
            result = worker.perform(impl, reference_job(job, wider, control.perturbation(spec)))
        except TypeError as err:
            assert dtype == "float64" and name == "tiny_transformer", (name, err)
            assert str(err) == f"SciPy's erf (GELU) has no {wider} form"
            continue
        assert {g.dtype.name for g in result["grads"].values()} == {wider}, name
        drawn = result["perturbed"]
        assert len(drawn) == control.PERTURBATIONS, name
        for draw in drawn:
            assert {g.dtype.name for g in draw["grads"].values()} == {dtype}, name
            assert any(not np.array_equal(draw["grads"][k], result["grads"][k].astype(dtype))
                       for k in draw["grads"]), name  # moved, and rounded in the format


# ---- lockstep: a step beyond its tolerance, judged one format wider ---------------------------

TRAINED = {  # name: (bias offset, PyTorch's error, dtype[, NumPy's error but in float64])
    "ill_float32": (10.0, 0.0, "float32"),
    "bug_on_ill_float64": (1000.0, 1e-6, "float64"),
    "numpy_bug_float32": (0.0, 0.0, "float32", 0.5),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, executor):
    specs = [s.with_overrides(**{"train.steps": 30})
             for s in written(tmp_path_factory.mktemp("lockstep_control"), TRAINED)]
    return {m["name"]: m for m in crossgrad.train(specs, executor=executor).models}


def test_lockstep_beyond_its_tolerance_on_an_ill_conditioned_network_is_pass_star(trained):
    model = trained["ill_float32"]
    assert model["passed"] and train_result(model) == "PASS*"
    for fw, info in model["frameworks"].items():
        if fw == registry.REFERENCE:
            continue
        assert info["lockstep_parted_at"] is not None, f"{fw} no longer parts: worse conditioning"
        judged = info["lockstep_control"]
        assert info["verdict"] == "PASS*" and info["lockstep_amplified"] and judged["amplified"]
        assert judged["status"] == "ok" and judged["dtype"] == "float64" and judged["entries"] > 0
        worst = judged["worst"]
        assert worst["rel_err"] > 1e-5 and worst["rel_err"] <= worst["bound"] <= worst["allowed"]
        assert worst["allowed"] == max(judged["floor"], control.SPREAD * worst["level"])
        assert "rounding in lockstep" in " ".join(map(str, event(model, info)))
        assert "within rounding's reach of float64" in train_event(model, fw, info)


def test_a_framework_computing_something_else_still_fails_lockstep_and_is_named(trained):
    """On the same network in float64, PyTorch's nudge of 1e-6 stays a FAIL against long
    double, while TensorFlow and JAX, parting by rounding alone, are excused."""
    model = trained["bug_on_ill_float64"]
    if control.control_dtype("float64") is None:
        pytest.skip("no format wider than float64 here")
    assert not model["passed"] and train_result(model) == "FAIL"
    torch = model["frameworks"]["torch"]
    worst = torch["lockstep_control"]["worst"]
    assert torch["verdict"] == "FAIL" and not torch["lockstep_control"]["amplified"]
    assert worst["bound"] > worst["allowed"] and "lockstep_amplified" not in torch
    assert "not within rounding's reach of long double" in train_event(model, "torch", torch)
    others = [i for fw, i in model["frameworks"].items() if fw not in ("numpy", "torch")]
    assert others and all(i["verdict"] == "PASS*" and i["lockstep_amplified"] for i in others)


def test_numpy_s_own_step_wrong_in_the_checked_format_fails_lockstep(trained):
    """The same NumPy backward, 1.5x too large in float32 alone: every framework parts from
    NumPy's step at step 0, and NumPy's own distance from float64 no longer sets the level."""
    model = trained["numpy_bug_float32"]
    assert not model["passed"] and train_result(model) == "FAIL"
    for fw, info in model["frameworks"].items():
        if fw == registry.REFERENCE:
            continue
        worst = info["lockstep_control"]["worst"]
        assert info["verdict"] == "FAIL" and info["lockstep_parted_at"] == 0
        assert worst["reference_off"] > control.SPREAD * worst["level"]
        assert "a formula of numpy's for this format, not rounding" in \
            train_event(model, fw, info)


def test_the_lockstep_control_judges_what_it_is_given():
    """attach on made-up lockstep measurements: the bound is lockstep's difference plus the
    reference's distance from the control, against max(floor, SPREAD x level), relative to
    what lockstep measured the entry against; an update entry beyond tolerance is not
    judged; without a control the FAIL stays and says why."""
    from types import SimpleNamespace
    from crossgrad.harness.compare import lockstep_control
    layers = [{"type": "dense", "name": "0", "in_shape": [2], "use_bias": True,
               "params": {"W": {}, "b": {}}}]
    spec = SimpleNamespace(dtype="float32", layers=layers)
    entries = [["loss", "loss"], ["grad", "0.W"], ["grad", "0.b"], ["param", "0.W"]]
    measured = {"entries": entries, "abs_err": [[0.0, 3e-5, 0.0, 0.0], [0.0, 2e-5, 0.0, 0.0]],
                "scale": [[1.0, 1.0, 0.5, 1.0], [1.0, 1.0, 0.5, 1.0]]}
    ctl = {"status": "ok", "entries": entries[:3], "steps": [0, 1],
           "ref_err": [[0.0, 1e-6, 0.0], [0.0, 1e-6, 0.0]],
           "level": [[1e-7, 5e-6, 1e-7], [1e-7, 1e-6, 1e-7]],
           "scale": [[1.0, 1.0, 0.5], [1.0, 1.0, 0.5]]}

    def attached(measured, ctl):
        entry = {"frameworks": {"numpy": {"status": "ok", "passed": True},
                                "jax": {"status": "ok", "passed": False, "verdict": "FAIL",
                                        "lockstep_parted_at": 0}}, "passed": False}
        parts = lockstep_control.parted(entry, {"jax": {"lockstep": measured}}, spec)
        assert lockstep_control.first_steps(parts) == (
            [0] if lockstep_control._pass_only(*parts["jax"]) else [])
        assert lockstep_control.later_steps(parts, ctl, spec) == []  # ctl has both steps
        return lockstep_control.attach(entry, spec, parts, ctl)

    model = attached(measured, ctl)  # step 1: 2.1e-5 against 8 x 1e-6: beyond
    jax = model["frameworks"]["jax"]
    assert not model["passed"] and jax["verdict"] == "FAIL"
    worst = jax["lockstep_control"]["worst"]
    assert (worst["step"], worst["entry"]) == (1, "0.W")
    assert worst["bound"] == pytest.approx(2.1e-5) and worst["allowed"] == pytest.approx(8e-6)
    ctl["level"][1][1] = 3e-6  # now 2.1e-5 <= 2.4e-5, and step 0: 3.1e-5 <= 4e-5
    model = attached(measured, ctl)
    jax = model["frameworks"]["jax"]
    assert model["passed"] and jax["verdict"] == "PASS*" and jax["lockstep_amplified"]
    assert jax["lockstep_control"]["entries"] == 2 and jax["lockstep_control"]["steps"] == 2
    one = {k: (v[:1] if k in ("steps", "ref_err", "level", "scale") else v) for k, v in ctl.items()}
    two = dict(one, steps=[1], **{k: ctl[k][1:] for k in ("ref_err", "level", "scale")})
    def fresh():
        return {"frameworks": {"jax": {"status": "ok", "passed": False, "verdict": "FAIL",
                                       "lockstep_parted_at": 0}}}
    parts = lockstep_control.parted(fresh(), {"jax": {"lockstep": measured}}, spec)
    assert lockstep_control.later_steps(parts, one, spec) == [1]  # excused at step 0: go on
    model = lockstep_control.attach(fresh(), spec, parts, one, two)
    assert model["passed"] and model["frameworks"]["jax"]["lockstep_control"]["judged"] == 2
    model = lockstep_control.attach(fresh(), spec, parts, one, None)  # the second job failed
    assert not model["passed"] and model["frameworks"]["jax"]["lockstep_control"][
        "status"] == "failed"
    ctl["level"][0][1] = 1e-7  # beyond at step 0 (3.1e-5 against 8e-7): no second job
    one["level"][0][1] = 1e-7
    assert lockstep_control.later_steps(parts, one, spec) == []
    model = lockstep_control.attach(fresh(), spec, parts, one, None)
    said = model["frameworks"]["jax"]["lockstep_control"]
    assert not model["passed"] and said["status"] == "ok" and said["judged"] == 1
    assert said["worst"]["step"] == 0 and not said["amplified"]
    update = dict(measured, abs_err=[[0.0, 3e-5, 0.0, 1e-3], [0.0, 2e-5, 0.0, 0.0]])
    model = attached(update, ctl)
    assert not model["passed"] and model["frameworks"]["jax"]["lockstep_control"][
        "status"] == "not judged"
    model = attached(measured, None)
    said = model["frameworks"]["jax"]["lockstep_control"]
    assert not model["passed"] and said["status"] == "failed" and said["error"]


def test_a_step_the_framework_took_on_a_relu_s_other_side_is_judged_from_that_side():
    """attach on made-up measurements: jax's 0.W gradient 0.1 from NumPy's at step 0 (beyond
    any bound on distances), and the control's pass with a ReLU input on its other side
    (`flips`) within 1e-7 of jax's own values (`pass_values`): the step is explained, its
    bound that distance, the model PASS* with the branch named. Values that match no flipped
    pass, or no flipped pass, keep the FAIL."""
    from types import SimpleNamespace
    from crossgrad.harness.compare import lockstep_control
    spec = SimpleNamespace(dtype="float32", layers=[
        {"type": "dense", "name": "0", "in_shape": [2], "use_bias": False, "params": {"W": {}}},
        {"type": "relu", "name": "1", "in_shape": [2], "params": {}}])
    entries = [["loss", "loss"], ["grad", "0.W"]]
    jax_w = np.array([[1.0, 0.5], [0.2, 0.0]], np.float32)
    measured = {"entries": entries, "abs_err": [[0.0, 0.1]], "scale": [[1.0, 1.0]],
                "pass_values": {"0": {"loss": 0.5, "grads": {"0.W": jax_w}, "state": {}}}}
    flip = {"at": {"1": [3]}, "from_zero": [2e-7], "loss": np.float64(0.5),
            "grads": {"0.W": jax_w.astype(np.float64) + 1e-7}, "state": {}}
    ctl = {"status": "ok", "entries": entries, "steps": [0], "ref_err": [[0.0, 1e-7]],
           "level": [[1e-7, 1e-7]], "scale": [[1.0, 1.0]], "spread": [[0.0, 5e-8]],
           "flips": [[flip]]}

    def attached(ctl):
        entry = {"frameworks": {"jax": {"status": "ok", "passed": False, "verdict": "FAIL",
                                        "lockstep_parted_at": 0}}}
        parts = lockstep_control.parted(entry, {"jax": {"lockstep": measured}}, spec)
        return lockstep_control.attach(entry, spec, parts, ctl)["frameworks"]["jax"]
    jax = attached(ctl)
    said = jax["lockstep_control"]
    assert jax["verdict"] == "PASS*" and said["amplified"], said
    assert said["branched"] == [{"step": 0, "inputs": {"1": 1}, "from_zero": 2e-7}]
    assert said["worst"]["bound"] == pytest.approx(1e-7, rel=1e-3)
    assert "took a ReLU's other side" in lockstep_control.line(jax)
    flip["grads"]["0.W"] = jax_w.astype(np.float64) + 1e-3  # another branch than jax took
    assert attached(ctl)["verdict"] == "FAIL"
    ctl["flips"] = [[]]  # no ReLU input near 0 at that step
    jax = attached(ctl)
    assert jax["verdict"] == "FAIL" and "branched" not in jax["lockstep_control"]


def test_a_relu_flipped_by_rounding_inside_a_lockstep_step_is_pass_star(tmp_path, executor):
    """Two bias-free dense layers, each followed by a BatchNorm and a ReLU, in float32: at
    step 19 an input of the second ReLU lies 2.4e-7 from 0 in float64, about a rounding of
    that BatchNorm's output. On an AVX2 machine JAX's rounding puts it below 0, NumPy's
    above: that example's gradient through the ReLU is cut in one and not the other (3.W
    2.4e-2 apart), which no bound on distances excuses; it was a FAIL. Each framework that
    parts is now within its bound of NumPy's float64 pass on that ReLU's other side. (Where a
    machine's roundings keep every input on NumPy's side, nothing parts: the verdict alone
    is checked.)"""
    body = {"name": "bn_relu_twice", "input_shape": [64], "dtype": "float32",
            "data": {"source": "digits", "batch_size": 32},
            "layers": [{"type": "dense", "units": 64, "use_bias": False},
                       {"type": "batchnorm", "momentum": 0.1}, {"type": "relu"},
                       {"type": "dense", "units": 32, "use_bias": False},
                       {"type": "batchnorm", "momentum": 0.1}, {"type": "relu"},
                       {"type": "dense", "units": 10}],
            "loss": {"type": "softmax_cross_entropy"},
            "optimizer": {"type": "momentum", "lr": 0.05, "momentum": 0.9},
            "train": {"steps": 25}}
    path = tmp_path / "bn_relu_twice.json"
    path.write_text(json.dumps(body))
    frameworks = [fw for fw in ("numpy", "jax", "torch") if fw in INSTALLED]
    model = crossgrad.train([crossgrad.load(path)], frameworks=frameworks,
                            executor=executor).models[0]
    assert model["passed"], {fw: i.get("lockstep_control") for fw, i in
                             model["frameworks"].items()}
    for fw, info in model["frameworks"].items():
        if info.get("lockstep_parted_at") is not None:
            judged = info["lockstep_control"]
            assert info["verdict"] == "PASS*" and judged["amplified"], judged
            assert judged.get("branched"), judged


def test_a_relu_input_taken_to_its_other_side_moves_numpy_s_gradients_as_that_side_does():
    """The NumPy model's "flip" (the lockstep control's only): the inputs of a top-level layer
    at the given flat indices negated, so a ReLU passes (or cuts) what it cut (or passed)."""
    impl = registry.load("numpy")
    body = {**crossgrad.zoo("deep_relu_mlp").for_impls()}
    from crossgrad.harness.run.jobs import Inputs
    inputs = Inputs(crossgrad.zoo("deep_relu_mlp"), steps=1)
    x, y = inputs.x[inputs.batches[0]], inputs.y[inputs.batches[0]]
    relu = next(layer["name"] for i, layer in enumerate(body["layers"])
                if i and layer["type"] == "relu")

    def values(spec):
        model = impl.model.build_model(spec)
        impl.model.set_params(model, inputs.params, inputs.state)
        return impl.model.layer_values(model, x, y, {})
    names = [layer["name"] for layer in body["layers"]]
    outputs, grads = values(body)
    before = outputs[names[names.index(relu) - 1]].reshape(-1)
    chosen = [int(np.flatnonzero(before < 0)[0]), int(np.flatnonzero(before > 0)[0])]
    flipped_outputs, flipped_grads = values(dict(body, flip={relu: chosen}))
    after = flipped_outputs[relu].reshape(-1)
    dz, upstream = (flipped_grads[name].reshape(-1)
                    for name in (relu, names[names.index(relu) + 1]))
    for i in chosen:  # the ReLU of -z passes what it cut and cuts what it passed
        assert after[i] == max(-before[i], 0.0)
        assert dz[i] == (upstream[i] if before[i] < 0 else 0.0) and upstream[i] != 0
    assert not np.array_equal(grads[relu].reshape(-1)[chosen], dz[chosen])


def test_the_lockstep_control_job_walks_numpy_s_trajectory_to_each_step():
    """The worker side, in this process: step k's figures come from NumPy's own lockstep
    start at k, whichever other steps are asked (the walk goes on between them); the
    reference's distance from the control is within rounding's level, and float32 rounding
    shows against float64."""
    from crossgrad.harness.run import jobs, lockstep_control as worker_side
    from crossgrad.harness.compare import lockstep_control
    impl = registry.load("numpy")
    spec = crossgrad.zoo("batchnorm_mlp").with_overrides(dtype="float32",
                                                         **{"train.steps": 4})
    train = jobs.keyed(jobs.train_job(spec, jobs.Inputs(spec), registry.REFERENCE), spec, False)
    both = worker_side.measure(impl, lockstep_control.job(train, [1, 3], spec))
    alone = worker_side.measure(impl, lockstep_control.job(train, [3], spec))
    assert both["steps"] == [1, 3] and alone["steps"] == [3]
    assert {kind for kind, _ in both["entries"]} == {"state", "loss", "grad"}
    for part in ("ref_err", "level", "scale"):
        assert len(both[part]) == 2 and both[part][1] == alone[part][0]
    assert both["ref_err"][0] != both["ref_err"][1]  # two steps, two starts
    for ref_err, level, scale in zip(both["ref_err"], both["level"], both["scale"]):
        assert all(0 <= r <= lv for r, lv in zip(ref_err, level))
        assert 0 < max(level) < 1e-4 * max(scale)
