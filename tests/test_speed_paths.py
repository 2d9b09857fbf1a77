"""The fast paths of a run give the same bits as the plain ones: the finite-difference probes
through each implementation's `probe_losses` (one layer or one tensor set per step), workers
parked between phases, the schedule and the phases queued side by side, and figures drawn
in other processes."""
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from crossgrad.harness import api, registry
from crossgrad.harness.run import executor as executor_module
from crossgrad.harness.run import jobs, lockstep, reference_steps, worker
from crossgrad.harness.run.environment import SHARED_VARIABLE, shared_tempdir
from crossgrad.harness.run.execute import run_jobs
from crossgrad.harness.run.ownership import read_marker
from crossgrad.harness.run.executor import LocalExecutor, Service, schedule_order, side_by_side

from conftest import FRAMEWORKS, in_process, need

# probes in several layers (set back between them), a residual block, running statistics,
# GRU gates that Keras reorders, attention heads that JAX splits
PROBED = ["resid_mlp"] + [pytest.param(m, marks=pytest.mark.slow)  # the others: CI's slow run
                           for m in ("batchnorm_mlp", "seq_gru", "tiny_transformer")]


def _check_job(model, framework, dtype="float64"):
    spec = api.zoo(model).with_overrides(dtype=dtype)
    return jobs.check_job(spec, jobs.Inputs(spec), framework)


def _without_probe_losses(impl):
    """The implementation as an imported original is: no probe_losses, so the worker sets
    the whole moved params for every step."""
    plain = SimpleNamespace(**{k: getattr(impl.model, k) for k in impl.model.__all__
                               if k != "probe_losses"})
    return SimpleNamespace(model=plain, runtime=impl.runtime, train=impl.train)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("model", PROBED)
def test_probe_losses_give_the_bits_of_setting_every_param(framework, model):
    need(framework)
    impl = registry.load(framework)
    impl.runtime.configure(1)
    job = _check_job(model, framework)
    assert len({name.split(".")[0] for name, _ in job["probes"]}) > 1  # several layers
    fast = worker.perform(impl, job)
    plain = worker.perform(_without_probe_losses(impl), job)
    assert fast["fd_values"].shape == (len(job["probes"]), len(job["steps"]))
    assert fast["fd_values"].tobytes() == plain["fd_values"].tobytes()
    for group in ("grads", "layer_outputs", "layer_input_grads"):
        assert {k: v.tobytes() for k, v in fast[group].items()} == \
            {k: v.tobytes() for k, v in plain[group].items()}


def test_tensorflow_s_direct_call_takes_another_graph_for_other_arguments():
    """impls/tf_tape's `direct` hands a traced graph its tensors flat, skipping TensorFlow's
    binding; arguments of another shape, dtype or nesting must take their own graph. The
    function below bakes the traced batch size and dict keys into its graph, so a graph fed
    another call's arguments would give a wrong number, not an error."""
    impl = in_process("tensorflow")
    tf, direct = impl.runtime.tf, impl.model.direct
    weights = {"a": 1.0, "b": 10.0, "c": 100.0}

    @tf.function(autograph=False)
    def mean_weighted(x, parts):
        mean = tf.cast(tf.reduce_sum(x), tf.float64) / x.shape[0]
        return mean + sum(weights[k] * v for k, v in parts.items())

    call = direct(mean_weighted)
    one = tf.constant(1.0, tf.float64)
    cases = [(np.ones(4), {"a": one, "b": one}), (np.ones(4), {"a": one, "b": 2 * one}),
             (np.ones(2), {"a": one, "b": one}), (np.ones(2), {"a": one, "c": one}),
             (np.ones(2, np.float32), {"a": one, "c": one}), (np.ones((2, 1)), {"a": one})]
    for x, parts in cases:
        x = tf.constant(x)
        assert float(call(x, parts)) == float(mean_weighted(x, parts))

    @tf.function(autograph=False)
    def difference(x, y):
        return tf.reduce_sum(x - 2 * y)

    call, x, v = direct(difference), tf.constant(np.ones(3)), tf.Variable(np.ones(3))
    assert [float(call(*args)) for args in ((x, 2.0), (x, 3.0), (v, v), (x, v))] == \
        [-9.0, -15.0, -3.0, -3.0]  # a number is part of its graph, a variable taken once


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_tensorflow_builds_keras_layers_with_the_variables_a_first_call_makes(dtype):
    """impls/tf_tape's create_variables builds Keras' own layers from the spec's shapes
    instead of calling the model: the same variables (paths, shapes, dtypes) for every zoo
    model; the models it calls instead are counted, so that the test sees both ways."""
    impl = in_process("tensorflow")
    model = impl.model
    built = 0
    for name in api.zoo_names():
        spec = jobs.train_job(*_spec_inputs(name, dtype), "tensorflow", False)["spec"]
        ours, called = model.Network(spec, False), model.Network(spec, False)
        model.create_variables(ours, spec)
        called(*model.example_inputs(spec), training=False)
        built += all(type(b).__module__.startswith("keras.") for b in ours.blocks)
        assert _variables(model, ours, spec) == _variables(model, called, spec), name
    assert 0 < built < len(api.zoo_names())


def _spec_inputs(name, dtype):
    spec = api.zoo(name).with_overrides(dtype=dtype)
    return spec, jobs.Inputs(spec)


def _variables(model, net, spec):
    return {layer["name"]: {path: (tuple(v.shape), str(v.dtype), v.trainable)
                            for path, v in model.native_variables(block, layer).items()}
            for layer, block in zip(spec["layers"], net.blocks)}


@pytest.fixture
def started(monkeypatch):
    """The framework of every worker process started during the test, in order."""
    need("torch")
    names = []
    original = executor_module.WorkerProcess

    class Counted(original):
        def __init__(self, framework, *args, **kwargs):
            names.append(framework)
            super().__init__(framework, *args, **kwargs)

    monkeypatch.setattr(executor_module, "WorkerProcess", Counted)
    return names


def test_parked_workers_serve_later_phases(started):
    """Two frameworks on one slot, in four run() calls: each framework starts once; a parked
    worker that died is replaced, not handed a job."""
    with LocalExecutor(workers=1) as ex:
        for framework in ("numpy", "torch", "numpy", "torch"):
            [result] = ex.run([_check_job("xor_2_2_1", framework)])
            assert result["status"] == "ok", result
        assert started == ["numpy", "torch"]
        [parked] = ex.parking.idle["numpy"]
        parked.kill()
        parked.proc.wait()
        [result] = ex.run([_check_job("xor_2_2_1", "numpy")])
        assert result["status"] == "ok", result
        assert started == ["numpy", "torch", "numpy"]
    assert parked.proc.poll() is not None and not ex.parking.idle


def test_two_slots_import_each_framework_at_most_twice(started):
    """Phases that each run jobs of two frameworks on two slots: the workers a phase leaves
    idle (two of one framework at times) are parked, not closed, so a later phase never
    starts a framework again beyond one worker per slot."""
    with LocalExecutor(workers=2) as ex:
        for framework in ("numpy", "torch", "numpy", "torch"):  # both slots on one framework
            batch = [_check_job("xor_2_2_1", framework) for _ in range(4)]
            assert all(r["status"] == "ok" for r in ex.run(batch))
        assert started.count("numpy") <= 2 and started.count("torch") <= 2, started


def test_the_schedule_starts_tensorflow_and_the_larger_jobs_first():
    small, large = (_check_job(m, fw) for m, fw in (("xor_2_2_1", "numpy"),
                                                    ("mnist_mlp", "numpy")))
    tf_small = _check_job("xor_2_2_1", "tensorflow")
    train = jobs.train_job(*(lambda s: (s, jobs.Inputs(s)))(api.zoo("xor_2_2_1")), "numpy")
    order = sorted([small, train, large, tf_small], key=schedule_order)
    assert order[0] is tf_small and order.index(large) < order.index(small)


class Ledger:
    """A `run_on` for Service without processes: records which slot ran which job, and
    holds the first job until `release` is set, so that later run() calls queue behind it."""

    def __init__(self, fail=()):
        self.ran, self.fail = [], set(fail)
        self.release, self.started = threading.Event(), threading.Event()

    def __call__(self, n, job):
        self.started.set()
        self.release.wait(10)
        if job["framework"] in self.fail:
            return {"status": "skipped", "error": "no such module"}, None, True
        if job["name"] == "raises":
            raise TypeError("cannot pickle")
        self.ran.append((n, job["name"]))
        return {"status": "ok", "name": job["name"]}, {"versions": {}}, False


def _within(seconds, call):
    """call()'s return, or its exception; a failure if it has not ended after `seconds`,
    where a caller left waiting for ever would hang the suite."""
    out = {}

    def run():
        try:
            out["value"] = call()
        except BaseException as err:
            out["error"] = err
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s"
    if "error" in out:
        raise out["error"]
    return out["value"]


def _fake(name, framework="numpy"):
    return {"name": name, "framework": framework, "kind": "check", "probes": (), "steps": ()}


def test_phases_side_by_side_share_the_slots_in_their_priority():
    """One slot, three phases: the first job holds the slot while the others queue, the
    last phase's before the middle one's; then every job of the middle phase runs before
    the last one's, and each caller gets its own results, in its own order."""
    ledger = Ledger()
    service = Service(1, ledger)

    def queued(count):
        while len(service.queue.pending) < count:
            time.sleep(0.01)

    def phase(names, after=lambda: None):
        def run(ex):
            after()
            return ex.run([_fake(n) for n in names])
        return run

    threading.Timer(0.5, ledger.release.set).start()
    first, second, third = side_by_side(service, [
        phase(["a0"]), phase(["b0", "b1"], lambda: queued(1)),
        phase(["c0"], lambda: ledger.started.wait(10))])
    assert [r["name"] for r in first] == ["a0"]
    assert [r["name"] for r in second] == ["b0", "b1"] and [r["name"] for r in third] == ["c0"]
    assert [name for _, name in ledger.ran] == ["a0", "b0", "b1", "c0"]


def test_a_slot_takes_a_job_of_the_first_priority_before_one_of_its_own_framework():
    """The phase that other work waits for (native runs, before their pitfall runs) is not
    held back by a slot that could stay on its framework with a later phase's job."""
    ledger = Ledger()
    threading.Timer(0.5, ledger.release.set).start()
    side_by_side(Service(1, ledger), [
        lambda ex: ex.run([_fake("n0")]),
        lambda ex: ledger.started.wait(10) and ex.run([_fake("t0", "torch")]),
        lambda ex: ledger.started.wait(10) and ex.run([_fake("n1")])])
    assert [name for _, name in ledger.ran] == ["n0", "t0", "n1"]


def test_a_job_whose_slot_raises_fails_and_the_others_run():
    """An exception in the slot's own machinery (not the worker's) is a failed result: the
    caller waits for no result that cannot come."""
    ledger = Ledger()
    ledger.release.set()
    results = _within(30, lambda: Service(2, ledger).run([_fake("raises"), _fake("fine")]))
    assert results[0]["status"] == "failed" and "cannot pickle" in results[0]["error"]
    assert results[1]["status"] == "ok"


def test_a_framework_that_cannot_start_ends_its_jobs_in_every_phase():
    ledger = Ledger(fail={"jax"})
    ledger.release.set()
    service = Service(1, ledger)
    jax_first, mixed = side_by_side(service, [
        lambda ex: ex.run([_fake("j0", "jax"), _fake("j1", "jax")]),
        lambda ex: ex.run([_fake("j2", "jax"), _fake("n0")])])
    assert [r["status"] for r in jax_first + mixed[:1]] == ["skipped"] * 3
    assert mixed[1]["status"] == "ok" and ledger.ran == [(0, "n0")]


def test_a_phase_s_exception_reaches_the_caller_after_the_others_end():
    ledger = Ledger()
    ledger.release.set()

    def broken(ex):
        raise ValueError("bad spec")
    with pytest.raises(ValueError, match="bad spec"):
        side_by_side(Service(1, ledger), [broken, lambda ex: ex.run([_fake("n0")])])
    assert ledger.ran == [(0, "n0")]



def _keyed(name, key, framework="numpy"):
    return dict(_fake(name, framework), key=key)


def test_a_job_two_phases_ask_for_runs_once_at_the_better_priority():
    """The same key queued by a later phase, then by an earlier one: it runs once, as the
    earlier phase's job (after that phase's first, before the later phase's), and the later
    phase takes its result, marked "shared"."""
    ledger = Ledger()
    service = Service(1, ledger)

    def queued(count):
        while len(service.queue.pending) < count:
            time.sleep(0.01)

    threading.Timer(0.5, ledger.release.set).start()
    _, early, late = _within(30, lambda: side_by_side(service, [
        lambda ex: ex.run([_fake("a0")]),
        lambda ex: queued(1) or ex.run([_fake("b0"), _keyed("b1", "k")]),
        lambda ex: ledger.started.wait(10) and ex.run([_keyed("c0", "k"), _fake("c1")])]))
    assert [name for _, name in ledger.ran] == ["a0", "b0", "b1", "c1"]
    assert early[1]["name"] == "b1" and not early[1].get("shared")
    assert late[0] == dict(early[1], shared=True) and late[1]["name"] == "c1"


def test_a_finished_job_is_shared_only_while_sharing_and_only_if_it_succeeded():
    """Outside `sharing`, a job asked for again runs again (a determinism test means it);
    inside, a later ask of a key that ran takes its result, unless that one failed."""
    ledger = Ledger()
    ledger.release.set()
    service = Service(1, ledger)
    service.run([_keyed("a", "k")])
    service.run([_keyed("b", "k")])
    with service.sharing():
        service.run([_keyed("c", "k2")])
        [again] = service.run([_keyed("d", "k2")])
        [failed] = service.run([_keyed("raises", "k3")])
        service.run([_keyed("e", "k3")])
    service.run([_keyed("f", "k2")])
    assert [name for _, name in ledger.ran] == ["a", "b", "c", "e", "f"]
    assert again == {"status": "ok", "name": "c", "shared": True}
    assert failed["status"] == "failed"


def test_the_twins_of_a_failed_job_fail_with_it():
    """Twins queued while a job runs take its result whatever it is: they asked for the same
    computation, and a caller must never wait for one that will not come."""
    ledger = Ledger()
    service = Service(1, ledger)
    threading.Timer(0.5, ledger.release.set).start()
    first, second = _within(30, lambda: side_by_side(service, [
        lambda ex: ex.run([_keyed("raises", "k")]),
        lambda ex: ledger.started.wait(10) and ex.run([_keyed("other", "k")])]))
    assert first[0]["status"] == "failed" and second[0] == dict(first[0], shared=True)
    assert ledger.ran == []



class _Cache:
    """The result cache's get and put, in memory."""

    def __init__(self, **entries):
        self.entries = entries

    def get(self, key):
        return self.entries.get(key)

    def put(self, key, result):
        self.entries[key] = result


def test_a_cached_result_two_phases_read_is_cached_once_and_then_shared():
    """With --resume, a native run that is its aligned run finds its result in the cache as
    the aligned phase does: one reads it "cached", the other "shared", so each entry is
    counted once. Outside `sharing`, each read is "cached"."""
    ledger = Ledger()
    ledger.release.set()
    service = Service(1, ledger)
    cache = _Cache(k={"status": "ok", "name": "from the cache"})
    with service.sharing():
        [first] = run_jobs([_keyed("a", "k")], service, cache)
        [second] = run_jobs([_keyed("b", "k")], service, cache)
    [later] = run_jobs([_keyed("c", "k")], service, cache)
    assert first == {"status": "ok", "name": "from the cache", "cached": True}
    assert second == {"status": "ok", "name": "from the cache", "shared": True}
    assert later["cached"] and ledger.ran == []

# ---- the reference's lockstep steps, computed once per run ---------------------------------------

def _lockstep_job(model, steps=5):
    """A train job of `model` as the harness makes it for a framework with lockstep; its
    arrays are the same for every framework, so NumPy's implementation can replay it here."""
    spec = api.zoo(model)
    return jobs.train_job(spec, jobs.Inputs(spec, steps=steps), "torch")


@pytest.fixture
def replays(monkeypatch):
    """measure(job) with NumPy in this process as the framework; -> (measure, the number of
    step sequences NumPy's lockstep walked in each measure: its own, and the reference's
    unless read)."""
    impl = registry.load("numpy")
    walked = []
    original = impl.train.lockstep

    def counted(*args):
        walked[-1] += 1
        return original(*args)
    monkeypatch.setattr(impl.train, "lockstep", counted)

    def measure(job):
        walked.append(0)
        model = impl.model.build_model(job["spec"])
        impl.model.set_params(model, job["params"], job["state"])
        return lockstep.measure(impl, model, job)
    return measure, walked


def _same_measures(a, b):
    return (a["entries"] == b["entries"] and a["reference_loss"] == b["reference_loss"]
            and a["abs_err"].tobytes() == b["abs_err"].tobytes()
            and a["scale"].tobytes() == b["scale"].tobytes())


def _shared_folder(tmp_path, monkeypatch):
    """A folder as an executor makes for its workers (with its marker), named to them."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    folder = Path(shared_tempdir())
    monkeypatch.setenv(SHARED_VARIABLE, str(folder))
    return folder


@pytest.fixture
def shared(tmp_path, monkeypatch):
    return _shared_folder(tmp_path, monkeypatch)


def _stored(folder):
    return [p for p in folder.iterdir() if p.suffix == reference_steps.SUFFIX]


def test_a_later_job_reads_the_reference_steps_an_earlier_one_stored(tmp_path, monkeypatch,
                                                                     replays):
    measure, walked = replays
    alone = measure(_lockstep_job("batchnorm_mlp"))  # no shared folder: nothing stored
    mine = tmp_path / "mine"  # a user's folder in the variable: nothing written there
    mine.mkdir()
    monkeypatch.setenv(SHARED_VARIABLE, str(mine))
    theirs = measure(_lockstep_job("batchnorm_mlp"))
    folder = _shared_folder(tmp_path, monkeypatch)
    first, second = (measure(_lockstep_job("batchnorm_mlp")) for _ in range(2))
    assert walked == [2, 2, 2, 1] and not list(mine.iterdir()) and len(_stored(folder)) == 1
    assert all(_same_measures(m, alone) for m in (theirs, first, second))


def test_unreadable_or_too_large_reference_steps_are_computed(shared, monkeypatch, replays):
    measure, walked = replays
    job = _lockstep_job("xor_2_2_1")
    path = reference_steps.stored_path(job)
    with open(path, "wb") as f:
        f.write(b"not a trajectory")
    first, second = measure(job), measure(job)  # computed and stored again, then read
    monkeypatch.setattr(reference_steps, "LIMIT", reference_steps.trajectory_bytes(job) - 1)
    third = measure(job)
    assert walked == [2, 1, 2] and reference_steps.stored_path(job) is None
    assert _same_measures(first, second) and _same_measures(first, third)
    adam = _lockstep_job("digits_cnn")  # its m and v take it past the limit once gathered
    monkeypatch.setattr(reference_steps, "LIMIT", reference_steps.trajectory_bytes(adam) + 1)
    measure(adam), measure(adam)
    assert walked[3:] == [2, 2] and len(_stored(shared)) == 1
    assert not list(shared.glob("*.partial"))  # the abandoned write left nothing


STEPS = [{"loss": 0.5, "grads": {"0.W": np.arange(6.0).reshape(2, 3)},
          "params": {"0.W": np.ones((2, 3), np.float32), "0.b": np.float64(2.0)},
          "state": {}, "optimizer": {"step": 1, "0.W/m": np.zeros(0)}},
         {"loss": float("nan"), "grads": {"0.W": np.full((2, 3), np.inf)},
          "params": {"0.W": np.asfortranarray(np.eye(2, 3)), "0.b": np.float64(-0.0)},
          "state": {}, "optimizer": {"step": 2, "0.W/m": np.arange(3, dtype=np.int64)}}]
SMALL_JOB = {"params": {"0.W": np.ones((2, 3))}, "state": {}, "batches": [0, 1]}


def _write_steps(path, steps=STEPS):
    with reference_steps.writing(str(path), SMALL_JOB) as record:
        for step in steps:
            record(step)


def _same_steps(a, b):
    def same(x, y):
        if isinstance(x, dict):
            return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
        x, y = np.asarray(x), np.asarray(y)
        return x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
    return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))


def test_stored_steps_come_back_as_they_went_whole_or_not_at_all(shared, monkeypatch):
    """Every array back with its dtype, shape, bits (NaN, inf, -0) and order, writable (a
    copy-on-write view of the file); a cut file, a step that raises, a folder removed under
    the walk, a folder over its budget or a disk short of its reserve leave nothing to read."""
    path = shared / f"steps{reference_steps.SUFFIX}"
    _write_steps(path)
    back = reference_steps.load(str(path))
    assert _same_steps(back, STEPS) and back[1]["params"]["0.W"].flags.f_contiguous
    back[0]["grads"]["0.W"] += 1  # the reader's own copy of the page, not the file
    assert _same_steps(reference_steps.load(str(path)), STEPS)
    cut = shared / f"cut{reference_steps.SUFFIX}"
    cut.write_bytes(path.read_bytes()[:-8])
    assert reference_steps.load(str(cut)) is None
    with pytest.raises(RuntimeError), reference_steps.writing(str(shared / "raised"),
                                                              SMALL_JOB) as record:
        record(STEPS[0])
        raise RuntimeError("the walk failed")
    gone = shared / "gone"  # the folder removed under a walk: no file, and no error
    gone.mkdir()
    with reference_steps.writing(str(gone / f"steps{reference_steps.SUFFIX}"),
                                 SMALL_JOB) as record:
        record(STEPS[0])
        shutil.rmtree(gone)
        record(STEPS[1])
    for limit, value in (("BUDGET", path.stat().st_size + cut.stat().st_size + 100),
                         ("RESERVE", 1 << 62)):
        with monkeypatch.context() as m:
            m.setattr(reference_steps, limit, value)
            _write_steps(shared / f"{limit}{reference_steps.SUFFIX}")
    assert sorted(p.name for p in shared.iterdir() if not p.name.startswith(".")) == [
        cut.name, path.name]


def test_an_executor_s_workers_share_a_folder_removed_as_it_closes(tmp_path, monkeypatch):
    """Its workers get the folder: the second job reads the steps the first stored (marked
    here, to tell them from computed ones). It carries crossgrad's marker and goes with the
    executor."""
    need("torch")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    spec = api.zoo("xor_2_2_1")
    inputs = jobs.Inputs(spec, steps=5)
    with LocalExecutor(workers=1) as ex:
        aligned, = ex.run([jobs.train_job(spec, inputs, "torch")])
        [folder] = list(tmp_path.glob("crossgrad-shared-*"))
        assert read_marker(folder)["kind"] == "shared"
        [stored] = _stored(folder)
        steps = reference_steps.load(str(stored))
        steps[0]["loss"] = 123.0
        with reference_steps.writing(str(stored), {"params": {}, "state": {},
                                                   "batches": []}) as record:
            for step in steps:
                record(step)
        native, = ex.run([jobs.train_job(spec, inputs, "torch", native=True)])
    assert stored.name == f"{jobs.reference_key(spec, inputs)}{reference_steps.SUFFIX}"
    assert aligned["status"] == native["status"] == "ok"
    assert native["lockstep"]["reference_loss"] == [123.0] + aligned["lockstep"][
        "reference_loss"][1:]
    assert not folder.exists() and not list(tmp_path.glob("crossgrad-shared-*"))

FIGURES_IN_A_POOL = """
from crossgrad.harness.report import drawing, plots
layers = [{"layer": "0", "type": "dense", "forward_rel_err": 1e-16, "backward_rel_err": 2e-16,
           "dtype": "float64"},
          {"layer": "1", "type": "tanh", "forward_rel_err": 0.0, "backward_rel_err": None,
           "dtype": "float64"}]
here = plots.layer_figure("m", layers)
with drawing.rendering(processes=2):
    drawn = drawing.later(plots.layer_figure, "m", layers)
    assert drawn.future is not None  # really in another process
    there = drawing.png_bytes(drawn)
assert there == here and there[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
assert drawing.png_bytes(drawing.later(plots.layer_figure, "m", layers)) == here  # no pool
"""


def test_a_figure_is_drawn_once_in_tight_layout_s_places(monkeypatch):
    """savefig draws a figure twice when a layout engine is left on it, as tight_layout
    leaves one; the layout without an engine gives the same bytes, drawn once."""
    from matplotlib.figure import Figure
    from crossgrad.harness.report import plots
    layers = [{"layer": "0", "type": "dense", "forward_rel_err": 1e-16,
               "backward_rel_err": 2e-16, "dtype": "float64"}]
    draws, draw = [], Figure.draw
    monkeypatch.setattr(Figure, "draw",
                        lambda fig, renderer: draws.append(fig) or draw(fig, renderer))
    once = plots.layer_figure("m", layers)
    assert len(draws) == 1
    monkeypatch.setattr(plots, "_tight", lambda fig, rect: fig.tight_layout(rect=rect))
    assert plots.layer_figure("m", layers) == once and len(draws) == 3


def test_figures_drawn_in_other_processes_have_the_same_bytes():
    """In a fresh process, as the command line's harness (this one may hold JAX's threads)."""
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", FIGURES_IN_A_POOL], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_no_fork_where_a_framework_runs_native_threads():
    """A child forked while JAX's or TensorFlow's threads hold a lock would wait forever."""
    import subprocess
    import sys
    code = ("import jax, jax.numpy as jnp; jnp.ones(3).sum().block_until_ready(); "
            "from crossgrad.harness.report import drawing; print(drawing._forking())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.stdout.strip().splitlines()[-1] == "None", done.stderr


def test_the_digits_are_scikit_learns_without_importing_it():
    """Read from scikit-learn's own file as load_digits reads it: the same bits, and a check
    of the digits models does not pay scikit-learn's import."""
    import subprocess
    import sys
    code = ("import sys; from crossgrad.harness.spec import data; x, y = data._digits(True); "
            "print('sklearn' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
    datasets = pytest.importorskip("sklearn.datasets")
    from crossgrad.harness.spec import data
    digits = datasets.load_digits()
    x, y = data._digits(False)
    assert x.tobytes() == (digits.images / 16.0).tobytes()
    assert y.dtype == np.int64 and (y == digits.target).all()


def test_the_harness_imports_no_framework_it_runs_in_workers(tmp_path):
    """A check in every framework's worker leaves the harness process without torch,
    tensorflow or jax: what crosses the pipe is NumPy and plain Python (a torch version
    object unpickled here would import torch, seconds of the main job's critical path)."""
    import subprocess
    import sys
    code = ("import sys; from crossgrad.harness import api; "
            "from crossgrad.harness.run.executor import LocalExecutor\n"
            "with LocalExecutor(workers=2) as ex:\n"
            "    result = api.check([api.zoo('xor_2_2_1')], executor=ex)\n"
            "assert result.passed\n"
            "print(sorted(m for m in ('torch', 'tensorflow', 'jax', 'keras') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path)))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


# what a worker's start must not import: the modules, and what pulls them in
# (TensorFlow: TFLite tries JAX; Keras its scikit-learn wrappers, pandas for fit(), matplotlib
# for plots; the legacy tf.keras SciPy's sparse matrices)
NOT_AT_START = {"tensorflow": (("jax", "sklearn", "scipy", "pandas", "matplotlib"),
                               "import jax, sklearn, scipy.sparse, pandas, matplotlib.pyplot"),
                "torch": (("torch._inductor", "torch._dynamo", "sympy"),  # deterministic mode
                          "import torch._dynamo")}


@pytest.mark.slow  # workers started afresh: seconds each
@pytest.mark.parametrize("framework", sorted(NOT_AT_START))
def test_a_worker_starts_without_modules_it_never_runs(framework):
    """A TensorFlow worker's start does not import JAX, scikit-learn, SciPy, pandas or
    matplotlib (TFLite and Keras try them: 3.9 s), a PyTorch worker's does not import
    torch.compile's machinery (2 s); both import normally afterwards, and the settings
    stand."""
    import subprocess
    import sys
    need(framework)
    modules, later = NOT_AT_START[framework]
    code = (f"import sys; from crossgrad.harness import registry\n"
            f"impl = registry.load({framework!r}); settings = impl.runtime.configure(1)\n"
            f"print(sorted(m for m in {modules!r} if m in sys.modules))\n"
            f"{later}\nprint(settings)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded, settings = done.stdout.strip().splitlines()[-2:]
    assert loaded == "[]"
    assert ("'op_determinism': True" if framework == "tensorflow"
            else "'deterministic_algorithms': True") in settings


def test_a_result_callback_that_raises_reaches_its_caller_and_the_slot_serves_on():
    """The progress line or the cache's store failing is the caller's exception, raised
    once the call's jobs are done, not a slot's thread gone and a caller waiting for ever."""
    ledger = Ledger()
    ledger.release.set()
    service = Service(1, ledger)

    def broken(job, result):
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        _within(30, lambda: service.run([_fake("n0"), _fake("n1")], broken))
    assert [r["status"] for r in service.run([_fake("n2")])] == ["ok"]
    assert [name for _, name in ledger.ran] == ["n0", "n1", "n2"]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # squares that overflow, on purpose
@pytest.mark.parametrize("dtype, bits", [(np.float32, np.uint32), (np.float64, np.uint64)])
def test_numpy_s_scan_for_minus_zero_and_its_squares_give_the_plain_forms_bits(dtype, bits):
    """NumPy's training step looks for a -0 by the smallest integer view of a gradient, and sums
    its squares by np.add.reduce: the answers and bits of a compare of every element's bits
    and of ndarray.sum, on signed zeros, NaNs with and without the sign bit (random bit
    patterns), infinities, subnormals, empty, 0-d and strided arrays."""
    impl = registry.load("numpy")
    sign = bits(1) << bits(8 * np.dtype(dtype).itemsize - 1)  # -0's bits
    info = np.finfo(dtype)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, info.max, info.smallest_subnormal,
                        -1.5], dtype)
    rng = np.random.default_rng(0)
    patterns = [rng.integers(0, np.iinfo(bits).max, size, dtype=bits, endpoint=True).view(dtype)
                for size in rng.integers(1, 40, 300)]
    for a in patterns[::3]:  # a third with a -0 or two
        a[rng.integers(0, len(a), 2)] = -0.0
    arrays = patterns + [special[[i]] for i in range(len(special))] + [
        special, -special, special[1:], special[2:], special[::2], special[1, ...],
        np.resize(special, (4, 6)).T, np.zeros((3, 0), dtype),
        rng.standard_normal((64, 300)).astype(dtype)]  # long enough for pairwise sums
    for a in arrays:
        assert impl.losses.has_negative_zero(a) == bool((a.view(bits) == sign).any()), a
        fast, plain = impl.train.squared(a, {}), np.multiply(a, a).sum()
        assert type(fast) is type(plain) and bytes(fast) == bytes(plain), a


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_s_outer_product_gives_a_matrix_product_s_bits(dtype):
    """A dense layer's dW = x^T dy for a batch of one is taken as an outer product, which NumPy
    computes ~4x faster than its matmul of inner size 1: the same bits for every pairing of
    signed zeros, infinities, NaN, subnormals and random values (a -0 product comes out +0,
    as from a sum that starts at +0); other batch sizes stay matrix products."""
    rows_outer = registry.load("numpy").layers.rows_outer
    info = np.finfo(dtype)
    special = np.array([0.0, -0.0, 1.5, -1.5, np.inf, -np.inf, np.nan, info.max,
                        info.smallest_subnormal, -info.smallest_subnormal], dtype)
    values = np.concatenate([special, np.random.default_rng(0).standard_normal(54).astype(dtype)])
    for n in (1, 2, 3):
        x = np.resize(values, (n, len(values)))
        dy = np.resize(values[::-1], (n, len(values) + 3))
        got, matmul = rows_outer(x, dy), x.T @ dy
        assert got.dtype == matmul.dtype and got.tobytes() == matmul.tobytes(), n
    assert rows_outer(x[:1], dy[:1]).tobytes() != np.multiply.outer(x[0], dy[0]).tobytes()
