"""The pitfall catalog, proven: every pitfall reproduces alone in one batched run (native
beyond the tolerance, aligned within it), `crossgrad pitfalls` writes JSON of the
documented shape and fails when a pitfall's switch is gone, the implementations and
impls/README.md use the catalog's names, and `run`'s native causes come from ablation.
"""
import json
import re
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import numpy as np
import pytest

from conftest import BY_THE_NUMBERS, FRAMEWORKS, need
from crossgrad.harness import api, cli, registry
from crossgrad.harness.ablation import causes, command, measure
from crossgrad.harness.ablation.cases import CASES
from crossgrad.harness.compare import pitfalls
from crossgrad.harness.compare.curves import CURVES
from crossgrad.harness.report import findings, tables
from crossgrad.harness.run import manifest
from crossgrad.harness.run.executor import LocalExecutor
from crossgrad.harness.run.jobs import Inputs, train_job
from crossgrad.harness.spec.parse import parse_spec
from crossgrad.impls.canonical import native_on

ROOT = Path(__file__).parent.parent
SCHEMA = json.loads((ROOT / "harness/schemas/pitfalls.schema.json").read_text())
NAMES = [p.name for p in pitfalls.CATALOG]
AGREE = [p.name for p in pitfalls.AGREE]


# ---- one vocabulary ----------------------------------------------------------------------------

def test_native_is_false_true_or_a_set_of_names():
    assert not native_on(False, "torch.bce_clamp") and not native_on(None, "torch.bce_clamp")
    assert native_on(True, "torch.bce_clamp")
    assert native_on({"torch.bce_clamp"}, "torch.bce_clamp")
    assert native_on(["torch.bce_clamp"], "torch.bce_clamp")  # as a job carries it
    assert not native_on(["torch.default_lr"], "torch.bce_clamp") and not native_on([], "x")


def test_the_catalog_has_at_least_20_pitfalls_each_with_a_minimal_case():
    assert len(NAMES) >= 20 and len(set(NAMES + AGREE)) == len(NAMES + AGREE)
    assert set(CASES) == set(NAMES + AGREE)
    for name in NAMES + AGREE:
        spec = measure.case_spec(pitfalls.BY_NAME[name])  # valid as a spec file
        assert spec.dtype == "float64" and CASES[name].measure in ("gradients", "curves")


def test_every_switch_the_implementations_read_is_in_the_catalog_and_documented():
    """The names in impls/*/*.py, the catalog and impls/README.md are one vocabulary."""
    quoted = re.compile(r'"((?:torch|keras|tensorflow|jax|optax|flax)\.[a-z0-9_]+)"')
    used = {m for f in (ROOT / "impls").rglob("*.py") for m in quoted.findall(f.read_text())}
    assert used == set(NAMES + AGREE)
    readme = (ROOT / "impls/README.md").read_text()
    assert not [n for n in NAMES + AGREE if f"`{n}`" not in readme]


# ---- the ablation, in one batch ------------------------------------------------------------------

@pytest.fixture(scope="module")
def ablation(executor):
    for fw in ("torch", "tensorflow", "jax"):
        need(fw)
    return {r["name"]: r for r in measure.run(measure.select(), executor)}


@pytest.mark.parametrize("name", NAMES)
def test_each_pitfall_reproduces_alone(ablation, name):
    row = ablation[name]
    assert "error" not in row, row.get("error")
    assert row["naive_divergence"] > row["tolerance"] >= row["aligned_divergence"], row
    assert row["reproduced"] is True


@pytest.mark.parametrize("name", AGREE)
def test_each_agreeing_native_form_agrees(ablation, name):
    row = ablation[name]
    assert row["agrees"] is True and row["naive_divergence"] <= row["tolerance"], row


def test_the_json_document_validates_against_its_schema(ablation):
    info = manifest.build([], "local", 1, manifest.now())
    doc = command.document(list(ablation.values()), info)
    jsonschema.validate(json.loads(json.dumps(doc)), SCHEMA)
    assert [r["name"] for r in doc["pitfalls"]] == NAMES
    assert [r["name"] for r in doc["agree"]] == AGREE
    with pytest.raises(jsonschema.ValidationError):  # the schema can fail
        jsonschema.validate({"pitfalls": [dict(doc["pitfalls"][0], tolerance="1e-12")]}, SCHEMA)


def test_the_command_writes_its_table_and_json(tmp_path, capsys):
    need("torch")
    out = tmp_path / "pitfalls.json"
    code = cli.main(["pitfalls", "torch.bce_clamp", "torch.default_lr", "--json", str(out),
                     "--quiet", "--workers", "1"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "torch.bce_clamp" in text and "REPRODUCED" in text and "2 reproduced" in text
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, SCHEMA)
    assert [r["name"] for r in doc["pitfalls"]] == ["torch.default_lr", "torch.bce_clamp"]


def removed(name):
    """The pitfall under a name no implementation reads: its native switch is gone."""
    return replace(pitfalls.BY_NAME[name], name=name + "_removed")


def test_a_pitfall_whose_switch_is_removed_does_not_reproduce(executor, monkeypatch):
    need("torch")
    monkeypatch.setitem(CASES, "torch.bce_clamp_removed", CASES["torch.bce_clamp"])
    row, = measure.run([removed("torch.bce_clamp")], executor)
    assert row["reproduced"] is False
    assert row["naive_divergence"] == row["aligned_divergence"] <= row["tolerance"]


def test_the_command_fails_when_a_pitfall_does_not_reproduce(monkeypatch, capsys, tmp_path):
    need("torch")
    gone = removed("torch.bce_clamp")
    monkeypatch.setitem(CASES, gone.name, CASES["torch.bce_clamp"])
    monkeypatch.setitem(pitfalls.BY_NAME, gone.name, gone)
    monkeypatch.setattr(measure, "CATALOG", (gone,))
    code = cli.main(["pitfalls", gone.name, "--quiet", "--workers", "1",
                     "--json", str(tmp_path / "p.json")])
    assert code == 1
    assert "NOT REPRODUCED" in capsys.readouterr().out
    assert json.loads((tmp_path / "p.json").read_text())["pitfalls"][0]["reproduced"] is False


def test_a_pitfall_named_twice_is_bad_input(capsys, tmp_path):
    """It ran once, exit 0: a repeat is a typo for another pitfall more often than not."""
    out = tmp_path / "p.json"
    assert cli.main(["pitfalls", "torch.default_lr", "torch.default_lr", "--json",
                     str(out)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "crossgrad: pitfalls: torch.default_lr: named twice; name each pitfall once"]
    assert not out.exists()


def test_unknown_pitfall_names_are_bad_input(capsys, tmp_path):
    out = tmp_path / "p.json"
    assert cli.main(["pitfalls", "keras.no_such_thing", "--json", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["crossgrad: pitfalls: keras.no_such_thing: no such pitfall "
                   "(`crossgrad pitfalls --list` names them)"]
    assert not out.exists()


def test_a_named_pitfall_of_a_framework_left_out_is_bad_input(capsys, tmp_path):
    """Both asked for and one cannot be had: said, not dropped in silence."""
    out = tmp_path / "p.json"
    assert cli.main(["pitfalls", "torch.clip_grad_norm_eps", "keras.rmsprop_eps_in_sqrt",
                     "--frameworks", "numpy,torch", "--json", str(out)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "crossgrad: --frameworks: numpy,torch: keras.rmsprop_eps_in_sqrt is a tensorflow "
        "pitfall; add tensorflow or leave the pitfall out"]
    assert not out.exists()


# ---- which pitfalls a spec runs into -------------------------------------------------------------

def names(spec, framework):
    return [p.name for p in pitfalls.in_play(spec, framework)]


def test_in_play_follows_the_spec():
    spec = api.zoo("tiny_transformer")  # AdamW, layernorm, gelu, attention, clipping
    assert {"keras.adam_epsilon_hat", "keras.layernorm_epsilon", "keras.attention_float32_scale",
            "tensorflow.gelu_float32_constant", "keras.float32_hyperparameters"} <= set(
        names(spec, "tensorflow"))
    assert {"jax.gelu_tanh", "flax.layernorm_epsilon"} <= set(names(spec, "jax"))
    assert names(spec, "torch") == ["torch.clip_grad_norm_eps"]
    assert "optax.adamw_default_weight_decay" not in names(spec, "jax")  # the spec writes it
    unset = spec.with_overrides(optimizer={"type": "adamw", "lr": 0.003})
    assert "optax.adamw_default_weight_decay" in names(unset, "jax")
    assert not [n for n in names(spec, "jax") + names(spec, "tensorflow") if n in AGREE]
    assert names(api.zoo("mlp_3_4_2"), "torch") == []  # sgd with lr written: nothing differs


def test_native_is_aligned_where_neither_a_pitfall_nor_an_agreeing_form_applies():
    plain = api.zoo("mlp_3_4_2")  # sgd with its lr written, no clipping
    assert [fw for fw in FRAMEWORKS if pitfalls.native_is_aligned(plain, fw)] == \
        [fw for fw in FRAMEWORKS if fw != "tensorflow"]  # Keras' float32 hyperparameters
    assert pitfalls.native_is_aligned(plain.with_overrides(dtype="float32"), "tensorflow")
    clipped = api.zoo("seq_lstm")  # no JAX pitfall, but optax.clip_by_global_norm's form
    assert names(clipped, "jax") == [] and not pitfalls.native_is_aligned(clipped, "jax")
    assert pitfalls.native_is_aligned(api.zoo("tiny_transformer"), "numpy")


class Recording:
    """An executor that notes every job it is given."""

    def __init__(self, executor):
        self.executor, self.jobs = executor, []

    def run(self, jobs, on_result=None):
        self.jobs += jobs
        return self.executor.run(jobs, on_result)


def test_a_native_run_with_nothing_in_play_is_its_aligned_job(executor):
    """Where a framework's native run is its aligned run, `train(native=True)` asks for the
    aligned job itself, key and all, which runs once beside the aligned phase (crossgrad
    run); the others run natively."""
    spec = api.zoo("mlp_3_4_2")
    native, aligned = Recording(executor), Recording(executor)
    api.train([spec], native=True, steps=3, executor=native)
    api.train([spec], steps=3, executor=aligned)
    keys = {job["framework"]: job["key"] for job in aligned.jobs}
    for job in native.jobs:
        twin = job["framework"] != "tensorflow"  # Keras' float32 hyperparameters
        assert (job["native"] is False, job["key"] == keys[job["framework"]]) == (twin, twin), \
            job["framework"]


@pytest.fixture(scope="module")
def native_and_aligned():
    """Every zoo model in both dtypes, all its steps, in each framework whose native run of
    it is its aligned run: the aligned job, and a native one that really runs natively. In
    workers of its own where MKL rounds by the numbers alone (conftest.BY_THE_NUMBERS): the
    two runs build their models apart."""
    cases, batch = [], []
    for name in api.zoo_names():
        for dtype in ("float64", "float32"):
            spec = api.zoo(name).with_overrides(dtype=dtype)
            inputs = Inputs(spec)
            for fw in FRAMEWORKS:
                if registry.installed(fw) and pitfalls.native_is_aligned(spec, fw):
                    cases.append((name, dtype, fw))
                    batch += [train_job(spec, inputs, fw, False), train_job(spec, inputs, fw, True)]
    with pytest.MonkeyPatch.context() as mp, LocalExecutor(workers=2, threads=1) as ex:
        for variable, value in BY_THE_NUMBERS.items():
            mp.setenv(variable, value)  # read as each worker starts
        results = ex.run(batch)
    return {case: (results[2 * i], results[2 * i + 1]) for i, case in enumerate(cases)}


def _bits(result):
    """Everything a train job returns that a run reports, as bytes or plain values."""
    lockstep = result.get("lockstep") or {}
    return (result["status"], json.dumps(result["curves"], sort_keys=True),
            {k: v.tobytes() for k, v in {**result["params"], **result["state"]}.items()},
            {k: _bytes(v) for k, v in lockstep.items() if k != "seconds"})


def _bytes(value):
    """An array's bytes, or a table's (the pass values of lockstep's failing steps, by step
    and entry) as {key: bytes}, all the way down."""
    if isinstance(value, dict):
        return {str(k): _bytes(v) for k, v in value.items()}
    return np.asarray(value).tobytes()


@pytest.mark.slow
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_native_run_with_nothing_in_play_gives_the_aligned_bits(native_and_aligned,
                                                                  framework):
    """What api.train relies on to run the aligned job instead: with no pitfall and no
    agreeing form applying, every switch the native run reads is off where it acts."""
    need(framework)
    cases = [case for case in native_and_aligned if case[2] == framework]
    assert cases  # every framework has zoo models whose native run is the aligned one
    for case in cases:
        aligned, native = native_and_aligned[case]
        assert aligned["status"] == "ok", (case, aligned.get("error"))
        assert _bits(native) == _bits(aligned), case


# ---- the causes of a native parting --------------------------------------------------------------

SGD_UNWRITTEN_LR = {"name": "sgd_default_lr", "seed": 2, "input_shape": [4],
                    "data": {"source": "random_regression", "outputs": 2, "examples": 10},
                    "layers": [{"type": "dense", "units": 3}, {"type": "tanh"},
                               {"type": "dense", "units": 2}],
                    "loss": {"type": "mse"}, "optimizer": {"type": "sgd"},
                    "train": {"steps": 8}}


def test_a_native_parting_names_the_pitfalls_that_alone_move_it(executor):
    """torch's only pitfall in play here is its default lr: alone, it is the whole native
    run, so its effect is the native curve's own difference up to the parting step."""
    need("torch")
    spec = parse_spec(SGD_UNWRITTEN_LR, "<test>", "sgd_default_lr")
    result = api.train([spec], frameworks=["numpy", "torch"], native=True, executor=executor)
    info = result.models[0]["frameworks"]["torch"]
    k = info["parted_at"]
    assert k is not None
    (cause,) = info["native_ablation"]
    assert cause["pitfall"] == "torch.default_lr" and cause["confirmed"] and cause["steps"] == k + 1
    curve = result.curves[(result.curves["framework"] == "torch") & (result.curves["step"] <= k)]
    assert cause["effect"] == curve["rel_diff"].max()  # the same batches, bit for bit
    assert info["native_defaults"] == [pitfalls.described(pitfalls.BY_NAME["torch.default_lr"],
                                                          cause["effect"], k)]
    assert cause["effect"] > CURVES["float64"]
    line = tables.train_event(result.models[0], "torch", info)
    assert line.endswith(f"relative difference by then): torch.default_lr {cause['effect']:.1e}")
    assert result.models[0]["frameworks"]["numpy"]["native_defaults"] == []


def test_shortened_inputs_draw_the_same_first_steps():
    spec = api.zoo("digits_mlp").with_overrides(**{"train.steps": 30})
    (spec, inputs), = api.prepare([spec])
    short = causes.shortened(inputs, 5)
    assert len(short.batches) == 5 and len(inputs.batches) == 30
    assert all((short.batches[k] == inputs.batches[k]).all() for k in range(5))


# ---- switches combine with every optimizer rule --------------------------------------------------

RULE = {"sgd": "keras.weight_decay_decoupled", "momentum": "keras.sgd_momentum",
        "nesterov": "keras.sgd_momentum", "adam": "keras.adam_epsilon_hat",
        "adamw": "keras.adam_epsilon_hat", "rmsprop": "keras.rmsprop_eps_in_sqrt",
        "adagrad": "keras.adagrad_eps_in_sqrt"}


@pytest.mark.parametrize("kind", list(RULE))
def test_keras_switches_alone_train_every_optimizer_with_decay_and_clipping(executor, kind):
    """Each of Keras' optimizer switches on alone must build and train (a float32 learning
    rate in an aligned rule with a decoupled decay once failed on dtypes)."""
    need("tensorflow")
    raw = dict(SGD_UNWRITTEN_LR, name=f"switches_{kind}",
               optimizer={"type": kind, "lr": 0.05, "weight_decay": 0.01},
               train={"steps": 2, "clip_norm": 0.5})
    spec = parse_spec(raw, "<test>", raw["name"])
    (spec, inputs), = api.prepare([spec])
    switches = ["keras.float32_hyperparameters", "keras.weight_decay_decoupled", RULE[kind],
                "keras.adagrad_initial_accumulator", "keras.global_clipnorm"]
    jobs = [measure.job("curves", spec, inputs, "tensorflow", [s]) for s in switches]
    results = measure.run_jobs(jobs, executor)
    assert [r["status"] for r in results] == ["ok"] * len(switches), [
        r.get("error") for r in results]


@pytest.mark.parametrize("kind", ["mse", "binary_cross_entropy",
                                  "binary_cross_entropy_with_logits"])
def test_keras_sum_of_means_alone_divides_every_summed_loss_by_its_outputs(kind):
    """keras.loss_sum_of_means switched on alone moves the loss by 1/K, also where the
    loss's own form stays the aligned one (binary cross-entropy without Keras' clipping)."""
    pytest.importorskip("tensorflow")
    import tensorflow as tf
    from crossgrad.impls.tf_tape import losses
    rng = np.random.default_rng(0)
    p, y = tf.constant(rng.uniform(0.1, 0.9, (4, 3))), tf.constant(rng.integers(0, 2, (4, 3)) / 1)
    loss = {"type": kind, "reduction": "sum"}
    aligned = float(losses.build_loss(loss, False)(p, y))
    alone = float(losses.build_loss(loss, {"keras.loss_sum_of_means"})(p, y))
    assert alone == pytest.approx(aligned / 3, rel=1e-12)


def test_a_native_parting_that_lockstep_does_not_see_is_amplification():
    """Lockstep agreeing at every step up to the parting: no default changed a step beyond
    rounding, so none is a cause (every single-pitfall run would part by then as much)."""
    from crossgrad.harness.ablation.causes import amplified
    from crossgrad.harness.report.tables import train_event
    assert amplified({"lockstep_parted_at": None}, 65)
    assert amplified({"lockstep_parted_at": 70}, 65)
    assert not amplified({"lockstep_parted_at": 0}, 65)
    assert not amplified({}, 65)  # no lockstep: the single-pitfall runs decide
    m = {"mode": "native", "dtype": "float64", "reference": "numpy"}
    info = {"status": "ok", "parted_at": 65, "lockstep_parted_at": None,
            "native_amplified": True}
    assert "rounding amplified by the dynamics, not a framework default" in \
        train_event(m, "torch", info)


def test_no_default_is_blamed_where_the_framework_fails_aligned():
    """A plugin wrong in TensorFlow by 1 %: every single-default run carries that 1 %, and
    keras.float32_hyperparameters (with lr 0.5, exact in float32) was named the cause."""
    ablation = [{"pitfall": "keras.float32_hyperparameters", "effect": 1.5e-3, "steps": 1,
                 "confirmed": True}]
    native = SimpleNamespace(models=[{"name": "m", "dtype": "float64", "frameworks": {
        fw: {"status": "ok", "parted_at": 0, "native_ablation": [dict(a) for a in ablation],
             "native_defaults": ["keras.float32_hyperparameters (1.5e-03 by step 0): ..."]}
        for fw in ("tensorflow", "jax")}}])
    aligned = SimpleNamespace(models=[{"name": "m", "dtype": "float64", "frameworks": {
        "tensorflow": {"passed": False}, "jax": {"passed": True}}}])
    causes.discount(native, aligned)
    tf, jax = (native.models[0]["frameworks"][fw] for fw in ("tensorflow", "jax"))
    assert tf["native_aligned_fails"] and tf["native_defaults"] == []
    assert not tf["native_ablation"][0]["confirmed"]
    assert findings.native_causes(tf) == [findings.ALIGNED_FAILS]
    assert "native_aligned_fails" not in jax and jax["native_ablation"][0]["confirmed"]


def test_train_native_defaults_blames_no_default_where_the_aligned_run_parts_too(executor):
    """`train --native-defaults` has no aligned training to discount by: its control run
    (the aligned run of the same steps) parts there when TensorFlow's plugin is 1 % off,
    and keras.adagrad_initial_accumulator, confirmed for the right plugin, is then not named."""
    need("tensorflow")
    variants = Path(__file__).parent / "plugins" / "swish_variants.py"
    specs = [parse_spec({"name": kind, "seed": 1, "plugins": [str(variants)],
                         "input_shape": [64], "data": {"source": "digits", "batch_size": 16},
                         "layers": [{"type": "dense", "units": 8}, {"type": kind},
                                    {"type": "dense", "units": 10}],
                         "loss": {"type": "softmax_cross_entropy"},
                         "optimizer": {"type": "adagrad", "lr": 0.1}, "train": {"steps": 6}},
                        f"{kind}.toml", kind) for kind in ("scaled_swish", "swish_tf_off")]
    result = api.train(specs, frameworks=["numpy", "tensorflow"], native=True,
                       executor=executor)
    right, off = (m["frameworks"]["tensorflow"] for m in result.models)
    assert "native_aligned_fails" not in right
    assert any(d.startswith("keras.adagrad_initial_accumulator") for d in right["native_defaults"]), right
    assert off["parted_at"] is not None and off["native_aligned_fails"]
    assert off["native_defaults"] == [] and off["native_ablation"]
    assert not any(a["confirmed"] for a in off["native_ablation"])


@pytest.mark.parametrize("ablation", [[], [{"pitfall": "keras.default_epsilon", "effect": 1e-12,
                                            "steps": 3, "confirmed": False}]])
def test_a_parting_without_a_cause_is_said_in_the_same_words_everywhere(ablation):
    """The terminal, the report's bullets and its plots once said "none of those in play
    alone" and "no known cause" of the same parting; now each says findings.no_cause."""
    info = {"status": "ok", "parted_at": 2, "native_defaults": [], "native_ablation": ablation}
    m = {"name": "m", "mode": "native", "dtype": "float64", "reference": "numpy",
         "frameworks": {"tensorflow": info}}
    said = findings.no_cause(info)
    assert said.startswith("no known cause: ")
    assert ("1 framework default(s) in play" in said) == bool(ablation)
    assert findings.partings(SimpleNamespace(models=[m]))[0]["causes"] == [said]
    assert tables.train_event(m, "tensorflow", info).endswith(said)


def test_a_native_parting_at_tensorflow_s_average_pool_names_that_pool(executor):
    """A 'same' pool whose window is wider than its input: TensorFlow's AvgPoolGrad is wrong
    there. Its single-pitfall runs once all took Keras' pool (a list of pitfalls is a true
    `native`), so keras.float32_hyperparameters (lr 0.5, exact in float32: no effect) was
    'confirmed' with the pool's difference. The pool is a switch of its own now."""
    need("tensorflow")
    raw = {"name": "pool", "seed": 1, "input_shape": [4, 4, 1],
           "data": {"source": "random_classification", "classes": 3, "examples": 16,
                    "batch_size": 8},
           "layers": [{"type": "conv2d", "filters": 2, "kernel_size": 1}, {"type": "tanh"},
                      {"type": "avgpool2d", "pool_size": 5, "strides": 1, "padding": "same"},
                      {"type": "flatten"}, {"type": "dense", "units": 3}],
           "loss": {"type": "softmax_cross_entropy"}, "optimizer": {"type": "sgd", "lr": 0.5},
           "train": {"steps": 10}}
    spec = parse_spec(raw, "pool.toml", "pool")
    assert "tensorflow.avgpool_grad_wider_window" in {p.name for p in
                                                      pitfalls.in_play(spec, "tensorflow")}
    tf = api.train([spec], frameworks=["numpy", "tensorflow"], native=True,
                   executor=executor).models[0]["frameworks"]["tensorflow"]
    assert tf["parted_at"] is not None, tf
    confirmed = {a["pitfall"]: a for a in tf["native_ablation"] if a["confirmed"]}
    assert set(confirmed) == {"tensorflow.avgpool_grad_wider_window"}, tf["native_ablation"]
