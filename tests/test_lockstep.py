"""Lockstep training and the verdicts it backs: amplification told apart from bugs.

Every framework takes every step again from NumPy's state (parameters, running
statistics, optimizer state); the step's gradients are compared with NumPy's and its
update with NumPy's rule on the same gradients. The issue's network (issue 12) is
chaotic in float64: its curves leave 1e-10 while every step agrees, PASS* amplified.
A wrong rule, injected into a worker, is a FAIL at the first step it matters; each
native optimizer rule parts at the first step it differs.
"""
import json
import math
import os
import textwrap

import numpy as np
import pytest

from crossgrad.harness import api, registry
from crossgrad.harness.cli import main
from crossgrad.harness.compare import curves, lockstep
from crossgrad.harness.compare.pairwise import PAIRWISE
from crossgrad.harness.report.content import STARRED
from crossgrad.harness.report.tables import event, train_table
from crossgrad.harness.report.write import write_report
from crossgrad.harness.run.executor import LocalExecutor
from crossgrad.harness.spec import parse_spec

from cases import OPTIMIZERS, dense, spec, training
from cli_session import session_cli
from conftest import OTHERS, in_process, need

# issue 12: 5 inputs, dense 16 tanh, dense 3, softmax cross-entropy, 40 examples full batch,
# float64, rmsprop lr 0.01 rho 0.9 eps 1e-7, 60 steps
ISSUE = {"name": "issue12", "dtype": "float64", "seed": 0, "input_shape": [5],
         "data": {"source": "random_classification", "classes": 3, "examples": 40},
         "layers": [dense(16), {"type": "tanh"}, dense(3)],
         "loss": {"type": "softmax_cross_entropy"},
         "optimizer": {"type": "rmsprop", "lr": 0.01, "rho": 0.9, "eps": 1e-7},
         "train": {"steps": 60}}
ISSUE_TOML = textwrap.dedent("""\
    name = "issue12"
    dtype = "float64"
    seed = 0
    input_shape = [5]

    [data]
    source = "random_classification"
    classes = 3
    examples = 40

    [[layers]]
    type = "dense"
    units = 16

    [[layers]]
    type = "tanh"

    [[layers]]
    type = "dense"
    units = 3

    [loss]
    type = "softmax_cross_entropy"

    [optimizer]
    type = "rmsprop"
    lr = 0.01
    rho = 0.9
    eps = 1e-7

    [train]
    steps = 60
    """)


def load(raw, **overrides):
    return parse_spec(dict(raw, **overrides), f"{raw['name']}.toml", raw["name"])


def steps_of(result, model, framework, column):
    rows = result.curves[(result.curves["model"] == model) &
                         (result.curves["framework"] == framework)]
    return rows.sort_values("step")[column].to_numpy()


# ---- the issue's network: rounding amplified by the dynamics, not a bug -------------------------

@pytest.fixture(scope="module")
def issue(executor):
    return api.train([load(ISSUE)], executor=executor)


@pytest.mark.parametrize("framework", OTHERS)
def test_the_issue_network_is_amplified_not_failed(issue, framework):
    need(framework)
    model = issue.models[0]
    info = model["frameworks"][framework]
    assert model["passed"] and info["passed"] and info["verdict"] == "PASS*", info
    # the curves leave 1e-10 in the last steps ...
    assert info["max_rel_diff"] > curves.CURVES["float64"] and info["exceeded_at"] is not None
    # ... while every one of the 60 steps, started from NumPy's state, agrees to 1e-12
    assert info["lockstep_steps"] == 60 and info["lockstep_parted_at"] is None
    assert info["lockstep_max_rel_err"] <= PAIRWISE["float64"]
    per_step = steps_of(issue, "issue12", framework, "lockstep_rel_err")
    assert len(per_step) == 60 and per_step.max() <= PAIRWISE["float64"]
    # the difference left rounding level in the late 40s (the issue saw 42) and grew
    # steadily, several times per step
    assert 40 <= info["amplified_at"] < info["exceeded_at"] <= 59
    assert 2.0 <= info["growth_per_step"] <= 10.0
    assert "branched_at" not in info


@pytest.mark.parametrize("framework", OTHERS)
def test_every_worker_replays_the_reference_bit_for_bit(issue, framework):
    """The reference is deterministic: the NumPy trajectory each worker replays for lockstep
    is the NumPy worker's own free run, loss for loss."""
    need(framework)
    _, results = issue.saved[("issue12", "float64")]
    assert results[framework]["lockstep"]["reference_loss"] == results["numpy"]["curves"]["loss"]


def test_the_issue_network_exits_0_and_names_one_step(tmp_path, capsys, executor, monkeypatch):
    need("torch")
    session_cli(monkeypatch, executor)
    (tmp_path / "issue12.toml").write_text(ISSUE_TOML)
    out = tmp_path / "t.json"
    assert main(["train", str(tmp_path / "issue12.toml"), "--frameworks", "numpy,torch",
                 "--json", str(out), "--quiet"]) == 0
    printed = capsys.readouterr()
    info = json.loads(out.read_text())["models"][0]["frameworks"]["torch"]
    assert info["verdict"] == "PASS*"
    assert f"torch amplified at step {info['amplified_at']}:" in printed.out
    assert f"past 1e-10 at step {info['exceeded_at']}" in printed.out
    assert "PASS*" in printed.out and "from step None" not in printed.out + printed.err


def test_each_event_has_one_step_in_the_terminal_the_json_and_the_report(issue, tmp_path):
    """amplified_at and exceeded_at: the terminal's sentence, the JSON's fields and the
    report's table cell, summary and model section name the same steps; "step None" never."""
    write_report(tmp_path / "report", [load(ISSUE)], aligned=issue, manifest={})
    terminal = train_table(issue.models)
    md = (tmp_path / "report" / "report.md").read_text()
    html = (tmp_path / "report" / "report.html").read_text()
    for fw in OTHERS:
        if not registry.installed(fw):
            continue
        info = issue.models[0]["frameworks"][fw]
        onset, past = info["amplified_at"], info["exceeded_at"]
        sentence = f"{fw} amplified at step {onset}: "
        assert sentence in terminal and sentence in md and sentence in html
        assert f"past 1e-10 at step {past} " in terminal and f"past 1e-10 at step {past} " in md
        assert f"{curves_short(fw)} amplified @{onset}" in md
    assert "step None" not in terminal + md + html and "@None" not in md + html


def curves_short(framework):
    return registry.FRAMEWORKS[framework].short


def test_an_independent_torch_rmsprop_replay_differs_from_each_by_the_same_amount(issue):
    """The issue's claim: a plain torch.optim.RMSprop loop, written here from the README's
    canonical rule, parts from all four implementations alike, so none is the odd one."""
    need("torch")
    import torch
    spec = load(ISSUE)
    inputs = api.prepare([spec])[0][1]
    p = {k: torch.tensor(v, requires_grad=True) for k, v in inputs.params.items()}
    x, y = torch.as_tensor(inputs.x), torch.as_tensor(inputs.y)
    optimizer = torch.optim.RMSprop(list(p.values()), lr=0.01, alpha=0.9, eps=1e-7)
    replay = []
    for _ in range(60):  # full batch: every step sees the 40 examples
        optimizer.zero_grad()
        logits = torch.tanh(x @ p["0.W"] + p["0.b"]) @ p["2.W"] + p["2.b"]
        loss = torch.nn.functional.cross_entropy(logits, y)
        loss.backward()
        replay.append(loss.item())
        optimizer.step()
    replay = np.array(replay)
    apart = {fw: np.abs(steps_of(issue, "issue12", fw, "loss") - replay).max() / replay[-1]
             for fw in issue.models[0]["frameworks"] if registry.installed(fw)}
    assert len(apart) >= 2
    # every implementation is as far from the replay as the curves are from each other
    assert all(1e-11 < d < 1e-6 for d in apart.values()), apart
    assert max(apart.values()) / min(apart.values()) < 100, apart


def test_one_step_per_event_in_the_terminal_the_json_and_the_report(executor, tmp_path):
    """deep_relu_mlp in float32: JAX's curve leaves NumPy's, a PASS* (a jump at a ReLU kink
    with lockstep agreeing on an Intel Xeon with AVX-512; on an AVX2 machine, whose float32
    BLAS rounds otherwise, lockstep steps beyond tolerance within rounding's reach); the
    terminal, the JSON and the report name the same event at the same step (the report
    used to show the step where the curve passed 1e-3, two steps later)."""
    need("jax")
    spec = api.zoo("deep_relu_mlp").with_overrides(dtype="float32")
    result = api.train([spec], frameworks=["numpy", "jax"], executor=executor)
    m = result.models[0]
    info = m["frameworks"]["jax"]
    what, step = event(m, info)
    assert info["verdict"] == "PASS*" and what in STARRED, info
    assert info["parted_at"] != step  # where the curve passes 1e-3: not the event
    jax_line = next(line for line in train_table(result.models).splitlines()
                    if line.startswith("  deep_relu_mlp float32: jax"))
    assert f"at step {step}" in jax_line, jax_line
    write_report(tmp_path / "report", [spec], aligned=result, manifest={})
    md = (tmp_path / "report" / "report.md").read_text()
    assert f"jax {what} @{step}" in md and f"jax {what} at step {step}" in md
    assert f"@{info['parted_at']}" not in md
    assert f"jax {what} at step {step}" in (tmp_path / "report" / "report.html").read_text()
    csv = (tmp_path / "report" / "curves.csv").read_text().splitlines()
    assert csv[0].endswith(",rel_diff,lockstep_rel_err")


# ---- every optimizer, every framework, 100 steps with L1, L2 and clipping -----------------------

def trained(executor, dtype):
    specs = [load(training(o), dtype=dtype) for o in OPTIMIZERS]
    return {m["name"]: m for m in api.train(specs, executor=executor).models}


@pytest.fixture(scope="module")
def optimizer_lockstep(executor):
    return {"float64": trained(executor, "float64")}


@pytest.fixture(scope="module")
def optimizer_lockstep_float32(executor, optimizer_lockstep):
    return dict(optimizer_lockstep, float32=trained(executor, "float32"))


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("framework", OTHERS)
def test_every_optimizer_steps_in_lockstep(optimizer_lockstep, framework, optimizer):
    assert_in_lockstep(optimizer_lockstep, framework, optimizer, "float64")


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("framework", OTHERS)
def test_every_optimizer_steps_in_lockstep_in_float32(optimizer_lockstep_float32, framework,
                                                      optimizer):
    """In the default run float32 lockstep is deep_relu_mlp's, below (every step <= 1e-5)."""
    assert_in_lockstep(optimizer_lockstep_float32, framework, optimizer, "float32")


def assert_in_lockstep(trainings, framework, optimizer, dtype):
    need(framework)
    info = trainings[dtype][f"train_{optimizer}"]["frameworks"][framework]
    assert info["status"] == "ok", info.get("error")
    assert info["lockstep_steps"] == 100 and info["lockstep_parted_at"] is None, info
    assert info["lockstep_max_rel_err"] <= PAIRWISE[dtype]
    assert info["verdict"] == "PASS"


# ---- native defaults: the first step where each native rule differs -----------------------------

NET = ([dense(13), {"type": "tanh"}, dense(10)], [64], {"source": "digits", "batch_size": 16})


def native_case(name, optimizer, **train):
    """lr 0.125 is exact in float32: Keras' float32 learning rate then changes nothing, and
    the rule's own difference is the first to show."""
    return spec(f"native_{name}", *NET, optimizer=dict(optimizer, lr=0.125),
                train={"steps": 4, **train})


NATIVE = {
    "adam": native_case("adam", {"type": "adam", "beta1": 0.5, "beta2": 0.75, "eps": 1e-8}),
    "rmsprop": native_case("rmsprop", {"type": "rmsprop", "rho": 0.5, "eps": 1e-7}),
    "adagrad": native_case("adagrad", {"type": "adagrad", "eps": 1e-10}),
    "momentum": native_case("momentum", {"type": "momentum", "momentum": 0.9}),
    "adamw": native_case("adamw", {"type": "adamw", "beta1": 0.5, "beta2": 0.75, "eps": 1e-8}),
    "clip": native_case("clip", {"type": "sgd"}, clip_norm=0.5),
}
# (case, framework) -> (step, kind, slot or parameter suffix) of the first difference, for
# the native rules of the README's pitfall table; every other pair stays in lockstep
PARTS = {
    ("adam", "tensorflow"): (0, "param", ""),            # epsilon hat (betas exact in float32)
    ("rmsprop", "tensorflow"): (0, "param", ""),         # eps inside the square root
    ("rmsprop", "jax"): (0, "param", ""),                # optax.rmsprop(eps_in_sqrt=True)
    ("adagrad", "tensorflow"): (0, "optimizer", "/s"),   # the accumulator starts at 0.1
    ("adagrad", "jax"): (0, "optimizer", "/s"),          # optax.adagrad: 0.1 too
    ("momentum", "tensorflow"): (1, "optimizer", "/v"),  # m = mu m - lr g, mu through float32
    ("adamw", "tensorflow"): (0, "param", ""),           # epsilon hat, weight decay 0.004
    ("adamw", "jax"): (0, "param", ""),                  # optax.adamw: weight decay 1e-4
    ("clip", "torch"): (0, "param", ""),                 # clip_grad_norm_: norm + 1e-6
}


@pytest.fixture(scope="module")
def native_lockstep(executor):
    specs = [load(raw) for raw in NATIVE.values()]
    models = api.train(specs, executor=executor, native=True).models
    return {m["name"][len("native_"):]: m for m in models}


@pytest.mark.parametrize("case", sorted(NATIVE))
@pytest.mark.parametrize("framework", OTHERS)
def test_native_rules_part_in_lockstep_where_they_differ(native_lockstep, framework, case):
    need(framework)
    info = native_lockstep[case]["frameworks"][framework]
    assert info["status"] == "ok", info.get("error")
    if (case, framework) not in PARTS:
        assert info["lockstep_parted_at"] is None, info["lockstep_differs"]
        return
    step, kind, suffix = PARTS[(case, framework)]
    first = info["lockstep_differs"][0]
    assert info["lockstep_parted_at"] == step, info["lockstep_differs"]
    assert first["kind"] == kind and first["entry"].endswith(suffix), info["lockstep_differs"]


# ---- a wrong rule injected into a worker: FAIL at the first step it matters ---------------------

WRONG_RULE = '''
"""Test-only: in the JAX worker, RMSprop with eps inside the square root."""
import sys

if "--framework" in sys.argv and sys.argv[sys.argv.index("--framework") + 1] == "jax":
    import crossgrad.impls.jax_grad.runtime  # first, as the registry loads it
    import optax
    from crossgrad.impls.jax_grad import optimizers

    def rmsprop(optimizer, native):
        return optax.rmsprop(optimizer["lr"], decay=optimizer["rho"], eps=optimizer["eps"],
                             eps_in_sqrt=True)
    optimizers.OPTIMIZERS["rmsprop"] = rmsprop
'''


def test_a_wrong_rule_is_a_fail_at_lockstep_step_0_or_1(tmp_path, monkeypatch):
    need("jax")
    (tmp_path / "sitecustomize.py").write_text(WRONG_RULE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])]))
    with LocalExecutor(workers=2, threads=1) as executor:  # workers see the module
        result = api.train([load(ISSUE, **{"train": {"steps": 10}})],
                           frameworks=["numpy", "jax"], executor=executor)
    model = result.models[0]
    info = model["frameworks"]["jax"]
    assert info["verdict"] == "FAIL" and model["passed"] is False
    assert info["lockstep_parted_at"] in (0, 1)
    assert info["lockstep_differs"][0]["kind"] == "param", info["lockstep_differs"]
    line = train_table(result.models)
    step = info["lockstep_parted_at"]
    assert f"jax FAIL: in lockstep it leaves numpy's step at step {step}" in line


# ---- the verdict rules, on made-up curves ------------------------------------------------------

def grown(onset, factor, steps=60, floor=1e-16):
    """A float64 curve difference at rounding level, growing `factor` per step from `onset`."""
    return np.array([floor if k < onset else floor * 8 * factor ** (k - onset + 1)
                     for k in range(steps)])


def locked(parted=None):
    return {"lockstep_steps": 60, "lockstep_max_rel_err": 1e-14, "lockstep_parted_at": parted,
            "lockstep_differs": []}


@pytest.mark.parametrize("onset, factor", [(20, 3.0), (42, 4.0), (5, 10.0)])
def test_amplified_names_its_onset_and_growth(onset, factor):
    rel = grown(onset, factor)
    info = curves.verdict(dict(locked(), passed=False), rel, "float64")
    assert info["verdict"] == "PASS*" and info["passed"]
    assert info["amplified_at"] == onset
    assert info["growth_per_step"] == pytest.approx(factor, rel=0.3)
    assert info["exceeded_at"] == int(np.flatnonzero(rel > 1e-10)[0])


def test_lockstep_out_of_tolerance_fails_even_when_the_curves_agree():
    info = curves.verdict(dict(locked(parted=3), passed=True), np.zeros(60), "float64")
    assert info["verdict"] == "FAIL" and info["passed"] is False and info["exceeded_at"] is None


def test_without_lockstep_a_curve_beyond_tolerance_stays_a_fail():
    info = curves.verdict({"passed": False}, grown(42, 4.0), "float64")
    assert info["verdict"] == "FAIL" and "amplified_at" not in info


def test_a_float32_jump_with_lockstep_agreeing_is_a_branch():
    rel = np.r_[np.full(30, 2e-7), np.full(30, 3e-3)]
    info = curves.verdict(dict(locked(), passed=False), rel, "float32")
    assert info["verdict"] == "PASS*" and info["branched_at"] == 30 == info["exceeded_at"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_lockstep_judging(dtype):
    """Gradients against their layer's largest entry; a structural zero's gradient against
    the model's, its parameter and slots not judged; a step count not kept, not judged."""
    entries = [["loss", "loss"], ["grad", "0.W"], ["grad", "0.b"], ["grad", "2.b"],
               ["param", "2.b"], ["optimizer", "2.b/v"], ["optimizer", "step"]]
    tol = PAIRWISE[dtype]
    scale = np.array([[1.0, 0.5, 1e-3, 1e-17, 1.0, 1.0, 1.0]] * 3)
    diff = np.zeros_like(scale)
    diff[:, 2] = 0.1 * tol * 0.5  # 0.b: 50 tol of its own 1e-3, 0.1 tol of its layer's 0.5
    diff[:, 4:6] = 1.0            # 2.b is zero by construction: its parameter and slot move
    diff[:, 6] = math.nan         # a framework without a step count
    diff[2, 3] = 3 * tol * 0.5    # step 2: 2.b's gradient noise, 3 tol of the model's largest
    measured = {"entries": entries, "abs_err": diff, "scale": scale, "seconds": 0.1}
    fields, per_step = lockstep.judge(measured, dtype, {"2.b": "bias before BatchNorm"})
    assert fields["lockstep_parted_at"] == 2 and fields["lockstep_steps"] == 3
    assert fields["lockstep_differs"] == [{"kind": "grad", "entry": "2.b", "rel_err": 3 * tol}]
    assert per_step[:2].max() == pytest.approx(0.1 * tol)
    assert lockstep.judge({"error": "boom"}, dtype, {}) == ({"lockstep_error": "boom"}, None)


# ---- optimizer state, canonical, both ways -----------------------------------------------------

@pytest.fixture(scope="module", params=[  # TensorFlow and JAX imported here cost seconds; their
    # lockstep runs set and get the state at every step in the workers anyway
    fw if fw in ("numpy", "torch") else pytest.param(fw, marks=pytest.mark.slow)
    for fw in registry.ORDER])
def impl(request):
    """One implementation, imported in this process with the worker's environment pins."""
    return in_process(request.param)


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_optimizer_state_round_trips(impl, optimizer):
    """get(set(state)) is the state, in canonical names and layouts: the slots of
    canonical.SLOTS for every parameter, and the step count where the framework keeps one."""
    from crossgrad.impls.canonical import SLOTS
    framework = impl.name
    raw = training(optimizer, steps=3)
    job_spec = load(raw).for_impls()
    inputs = api.prepare([load(raw)])[0][1]
    model = impl.model.build_model(job_spec)
    impl.model.set_params(model, inputs.params, inputs.state)
    steps = list(impl.train.lockstep(model, inputs.x, inputs.y, inputs.batches, inputs.masks,
                                     iter([(inputs.params, inputs.state, None)] * 3)))
    state = steps[-1]["optimizer"]
    slots = {k for k in state if k != "step"}
    assert slots == {f"{p}/{s}" for p in inputs.params for s in SLOTS[optimizer]}
    rng = np.random.default_rng(0)
    wanted = {k: (rng.standard_normal(v.shape) + (2 if k.endswith(("/v", "/s")) else 0))
              .astype(v.dtype) for k, v in state.items() if k != "step"}
    wanted["step"] = 7
    holder = optimizer_holder(impl, model, framework)
    back = impl.optimizers.get_optimizer_state(
        impl.optimizers.set_optimizer_state(holder, model, wanted), model)
    for k, v in wanted.items():
        if k == "step" and k not in back:  # torch.optim.SGD and most of Optax keep no count
            assert framework in ("torch", "jax") and optimizer not in ("adam", "adamw")
            continue
        np.testing.assert_allclose(back[k], v, rtol=1e-15 if k != "step" else 0, atol=0,
                                   err_msg=k)


def optimizer_holder(impl, model, framework):
    """What holds the optimizer's state: the optimizer, or in JAX the Optax state."""
    if framework == "jax":
        return impl.train.trainer(model)[0].init(model.params)
    if framework == "tensorflow":
        return impl.train.trainer(model)[0]
    if framework == "torch":
        return impl.train.start(model)[1]
    return impl.optimizers.build_optimizer(model.spec["optimizer"], False)


SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e300]


def random_record(rng, dtype, like=None):
    """A lockstep record of random entries: small and large, some holding a NaN, an inf or a
    signed zero; beside `like` (the reference's), entries missing, misshapen or of the other
    dtype, and an integer step count."""
    other = {np.float32: np.float64, np.float64: np.float32}[dtype]
    grads = {}
    for name in like["grads"] if like else [f"{i}.W" for i in range(rng.integers(1, 9))]:
        if like is None:
            shape = (5000,) if rng.random() < 0.15 else tuple(rng.integers(0, 5, rng.integers(0, 3)))
            grads[name] = rng.standard_normal(shape).astype(dtype)
        else:
            ref, pick = like["grads"][name], rng.random()
            if pick < 0.05:
                continue  # missing
            grads[name] = (np.zeros(ref.shape + (1,)) if pick < 0.1 else
                           (ref + 1e-7 * rng.standard_normal(ref.shape)).astype(
                               other if pick < 0.2 else dtype))
        if grads[name].size and rng.random() < 0.25:
            grads[name].reshape(-1)[rng.integers(grads[name].size)] = rng.choice(SPECIAL)
    optimizer = {} if like is not None and rng.random() < 0.3 else {
        "step": np.int64(rng.integers(0, 9)), "0.W/m": rng.standard_normal(3).astype(dtype)}
    return {"loss": float(rng.choice([1.5, 1.5 + 1e-7, np.nan, np.inf])), "grads": grads,
            "params": {}, "state": {}, "optimizer": optimizer}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_step_s_entries_measured_together_give_each_entry_s_own_figures(dtype):
    """The worker measures a step's small entries in one pass over their concatenation
    (run/lockstep._row); every figure must be the one its entry's own measure gives,
    bit for bit, NaN, inf, -0, missing, misshapen and mixed-dtype entries included."""
    from crossgrad.harness.run import lockstep as worker_side
    rng = np.random.default_rng(0)
    for _ in range(400):
        with np.errstate(over="ignore"):  # 1e300 in float32 is inf: one more special value
            ref = random_record(rng, dtype)
            mine = random_record(rng, dtype, like=ref)
        entries = worker_side._entries(ref) + [["optimizer", "not kept"]]
        alone = [worker_side._difference(worker_side._value(mine, kind, name),
                                         worker_side._value(ref, kind, name), name)
                 if worker_side._value(ref, kind, name) is not None
                 else (worker_side.NOT_KEPT, 0.0) for kind, name in entries]
        together = worker_side._row(mine, ref, entries)
        assert np.array(together).tobytes() == np.array(alone).tobytes(), entries


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_a_step_moved_where_the_reference_s_norm_is_finite(dtype):
    """Whether a step updated (run/lockstep._moved) is told from one dot product per
    gradient where that proves the norm finite, else from the norm as the reference sums
    it; the answer must be the norm's, near the dtype's largest sum of squares, with NaN,
    inf, subnormal, empty and mixed-dtype gradients."""
    from crossgrad.harness.run import lockstep as worker_side
    rng, info = np.random.default_rng(2), np.finfo(dtype)
    shortcut = 0
    for _ in range(3000):
        sizes = rng.integers(0, 40, rng.integers(0, 4))
        size = max(int(sizes.sum()), 1)
        scale = math.sqrt(float(info.max) / size) * rng.choice([1e-3, 0.3, 0.5, 0.9, 1.0, 2.0])
        if rng.random() < 0.1:
            scale = float(info.smallest_subnormal)
        grads = {f"{i}.W": (scale * rng.random(n)).astype(dtype) for i, n in enumerate(sizes)}
        for g in grads.values():
            if g.size and rng.random() < 0.1:
                g[rng.integers(g.size)] = rng.choice([np.nan, np.inf, -np.inf])
        if grads and rng.random() < 0.1:
            grads["0.W"] = grads["0.W"].astype(np.float64)
        record = {"loss": float(rng.choice([1.5, 1.5, 1.5, np.nan, np.inf])), "grads": grads}
        with np.errstate(all="ignore"):
            norm = np.sqrt(sum((g * g).sum() for g in grads.values()))
        assert worker_side._moved(record) == (math.isfinite(record["loss"])
                                              and bool(np.isfinite(norm))), grads
        shortcut += worker_side._norm_fits(grads)
    assert shortcut > 500


# ---- TensorFlow's lockstep takes the free run's traced step --------------------------------------

@pytest.mark.parametrize("model", ["batchnorm_mlp", "resid_mlp"])  # BatchNorm; RMSprop
def test_tensorflow_lockstep_takes_the_free_run_s_traced_step(model, monkeypatch):
    """Tracing and optimising a step's graph is most of a short TensorFlow run, so the free
    run traces one graph, `step`, and lockstep calls it between its load and read: it traces
    only those two. From the free run's own start, lockstep's first step is the free run's,
    bit for bit."""
    need("tensorflow")
    from tensorflow.python.eager.polymorphic_function import tracing_compilation
    from crossgrad.harness.run.jobs import Inputs, train_job
    impl = registry.load("tensorflow")
    impl.runtime.configure(1)
    zoo = api.zoo(model)
    job = train_job(zoo, Inputs(zoo), "tensorflow")
    free = impl.model.build_model(job["spec"])
    impl.model.set_params(free, job["params"], job["state"])
    traced, trace = [], tracing_compilation._create_concrete_function

    def counted(function_type, type_context, func_graph, tracing_options):
        traced.append(tracing_options.name)
        return trace(function_type, type_context, func_graph, tracing_options)
    monkeypatch.setattr(tracing_compilation, "_create_concrete_function", counted)
    curves = impl.train.train(free, job["x"], job["y"], job["batches"][:1], job["masks"])
    after = impl.model.get_params(free)
    assert traced == ["step"]
    first = next(impl.train.lockstep(free, job["x"], job["y"], job["batches"], job["masks"],
                                     iter([(job["params"], job["state"], None)])))
    assert sorted(traced[1:]) == ["load", "read"]
    assert first["loss"] == curves["loss"][0]
    for got, expected in zip((first["params"], first["state"]), after):
        assert {k: v.tobytes() for k, v in got.items()} == \
            {k: v.tobytes() for k, v in expected.items()}


def test_tensorflow_steps_call_their_graphs_without_matching_arguments(monkeypatch):
    """Each tf.function of a run (step; lockstep's load and read) is matched to its graph
    once, then called through it: the number of matchings does not grow with the steps."""
    need("tensorflow")
    from tensorflow.python.eager.polymorphic_function import tracing_compilation
    from crossgrad.harness.run.jobs import Inputs, train_job
    impl = registry.load("tensorflow")
    impl.runtime.configure(1)
    zoo = api.zoo("digits_mlp")
    job = train_job(zoo, Inputs(zoo), "tensorflow")
    matched, match = [], tracing_compilation._maybe_define_function

    def counted(*args, **kwargs):
        matched.append(1)
        return match(*args, **kwargs)
    monkeypatch.setattr(tracing_compilation, "_maybe_define_function", counted)

    def matchings(steps):
        model = impl.model.build_model(job["spec"])
        impl.model.set_params(model, job["params"], job["state"])
        matched.clear()
        impl.train.train(model, job["x"], job["y"], job["batches"][:steps], job["masks"])
        starts = [(job["params"], job["state"], None)] * steps
        list(impl.train.lockstep(model, job["x"], job["y"], job["batches"][:steps],
                                 job["masks"], iter(starts)))
        return len(matched)
    assert matchings(2) == matchings(6) > 0


# ---- PyTorch's start of a step: copied into the model's own tensors -----------------------------

def test_torch_refuses_a_start_of_another_shape_rather_than_broadcasting_it():
    """set_params, and lockstep at every step, copy the start into the tensors the model holds
    (copy_), as load_state_dict did; copy_ alone would broadcast a bias of one entry over every
    unit, so a value of another shape is refused, as load_state_dict refused it."""
    need("torch")
    from crossgrad.harness.run.jobs import Inputs, train_job
    impl = in_process("torch")
    zoo = api.zoo("mlp_3_4_2")
    job = train_job(zoo, Inputs(zoo), "torch")
    model = impl.model.build_model(job["spec"])
    start = dict(job["params"], **{"0.b": job["params"]["0.b"][:1]})
    with pytest.raises(RuntimeError, match="size mismatch for bias"):
        impl.model.set_params(model, start, job["state"])
    steps = impl.train.lockstep(model, job["x"], job["y"], job["batches"], job["masks"],
                                iter([(start, job["state"], None)]))
    with pytest.raises(RuntimeError, match="size mismatch for bias"):
        next(steps)
