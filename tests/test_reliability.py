"""Reliability: same bits twice, contained failures, atomic reports, resume, Ray."""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from crossgrad.harness import api, registry
from crossgrad.harness.cli import main
from crossgrad.harness.run.executor import LocalExecutor, WorkerProcess
from crossgrad.harness.spec import parse_spec
from crossgrad.harness.sweep import digest

from cases import LAYERS
from conftest import need

SPECS = [parse_spec(dict(LAYERS[k], dtype=d), "x.toml", k) for k in
         ("dropout", "batchnorm", "attention_causal")
         for d in ("float64", "float32")]


def results_of(*outcomes):
    return [r for o in outcomes for m in o.saved.values() for r in m[1].values()]


def run_all(executor):
    steps = [s.with_overrides(**{"train.steps": 5}) for s in SPECS]
    check = api.check(steps, executor=executor)
    train = api.train(steps, executor=executor)
    assert all(r["status"] == "ok" for r in results_of(check, train))
    return digest(results_of(check, train))


@pytest.mark.slow
def test_bit_identical_reruns_in_fresh_workers():
    """Every framework: params, batches, losses, gradients, curves, final params; twice."""
    with LocalExecutor(workers=2) as first:
        a = run_all(first)
    with LocalExecutor(workers=1) as second:  # other processes, other scheduling
        b = run_all(second)
    assert a == b


@pytest.mark.slow
def test_same_bits_from_the_ray_executor():
    pytest.importorskip("ray")
    from crossgrad.harness.run.ray_executor import RayExecutor
    import ray
    specs = [s.with_overrides(**{"train.steps": 3}) for s in SPECS[:4]]
    with LocalExecutor(workers=2) as local:
        expected = digest(results_of(api.check(specs, executor=local),
                                     api.train(specs, executor=local)))
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR", configure_logging=False)
        with RayExecutor(workers=2) as remote:
            got = digest(results_of(api.check(specs, executor=remote),
                                    api.train(specs, executor=remote)))
    finally:
        ray.shutdown()
    assert got == expected


# ---- fault isolation -----------------------------------------------------------------------

FAULTS = {"raise": "injected fault", "segfault": "SIGSEGV", "kill": "SIGKILL",
          "exit": "exited with status 3", "hang": "timed out"}


@pytest.mark.parametrize("fault", [pytest.param(f, marks=pytest.mark.slow) if f == "hang" else f
                                   for f in sorted(FAULTS)])  # a hang waits out its timeout
def test_a_dying_framework_does_not_lose_the_others(tmp_path, monkeypatch, capsys, fault):
    need("torch")
    monkeypatch.setenv("CROSSGRAD_FAULT", f"torch:{fault}:mlp_3_4_2")
    out = tmp_path / "r.json"
    code = main(["check", "--zoo", "xor_2_2_1", "mlp_3_4_2", "--frameworks", "numpy,torch",
                 "--timeout", "15", "--json", str(out), "--quiet"])  # start-up included
    assert code == 1
    models = {m["name"]: m for m in json.loads(out.read_text())["models"]}
    broken = models["mlp_3_4_2"]["frameworks"]["torch"]
    assert broken["status"] == "failed" and FAULTS[fault] in broken["error"], broken
    assert models["mlp_3_4_2"]["frameworks"]["numpy"]["status"] == "ok"
    assert models["xor_2_2_1"]["passed"]  # the same worker kind served it before/after
    assert FAULTS[fault] in capsys.readouterr().out  # the table says why


def test_a_framework_that_cannot_be_imported_is_skipped_or_failed(tmp_path, monkeypatch):
    need("jax")
    fake = tmp_path / "fake"
    (fake / "jax").mkdir(parents=True)
    (fake / "jax" / "__init__.py").write_text("raise ImportError('this jax is broken')\n")
    monkeypatch.setenv("PYTHONPATH", str(fake))
    out = tmp_path / "r.json"
    assert main(["check", "--zoo", "xor_2_2_1", "--frameworks", "numpy,torch,jax",
                 "--json", str(out), "--quiet"]) == 1  # asked for by name: a failure
    jax = json.loads(out.read_text())["models"][0]["frameworks"]["jax"]
    assert jax["status"] == "failed" and "this jax is broken" in jax["error"]
    assert main(["check", "--zoo", "xor_2_2_1", "--json", str(out), "--quiet"]) == 0
    jax = json.loads(out.read_text())["models"][0]["frameworks"]["jax"]
    assert jax["status"] == "skipped" and "this jax is broken" in jax["error"]


def test_a_missing_framework_is_skipped_unless_asked_for(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(registry, "installed", lambda fw: fw != "jax")
    out = tmp_path / "r.json"
    assert main(["check", "--zoo", "xor_2_2_1", "--frameworks", "numpy", "--json", str(out),
                 "--quiet"]) == 0
    assert main(["check", "--zoo", "xor_2_2_1", "--frameworks", "numpy,jax"]) == 2
    assert "jax" in capsys.readouterr().err
    with LocalExecutor(workers=1) as local:
        result = api.check([api.zoo("xor_2_2_1")], frameworks=None, executor=local)
    assert result.models[0]["frameworks"]["jax"]["status"] == "skipped"


def test_worker_command_line_names_its_framework():
    worker = WorkerProcess("numpy", threads=1)
    try:
        cmdline = Path(f"/proc/{worker.proc.pid}/cmdline").read_bytes().split(b"\0")
        assert b"--framework" in cmdline and b"numpy" in cmdline
        assert worker.hello["threads"] == {"blas_threads": 1}
    finally:
        worker.close()


def test_a_worker_removes_only_a_folder_with_a_worker_s_marker(tmp_path, monkeypatch):
    """`--scratch` names the folder a worker removes as it ends: one the harness made, with
    crossgrad's marker of a worker's folder. A user's folder of the same name stays whole,
    and so does a link to one."""
    from crossgrad.harness.run.environment import worker_tempdir
    from crossgrad.harness.run.ownership import write_marker
    mine = tmp_path / "crossgrad-worker-mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "sub" / "notes.txt").write_text("keep\n")
    report = tmp_path / "crossgrad-worker-report"
    report.mkdir()
    write_marker(report, "report", [])  # crossgrad's, but not a worker's folder
    link = tmp_path / "crossgrad-worker-link"
    link.symlink_to(mine)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    made = Path(worker_tempdir())  # as the harness makes it, here under tmp_path
    for scratch in (mine, report, link, made):
        done = subprocess.run([sys.executable, "-m", "crossgrad.harness.run.worker",
                               "--framework", "numpy", "--scratch", str(scratch)],
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
                              env=dict(os.environ, TMPDIR=str(tmp_path)))
        assert done.returncode == 0, done.stderr
    assert (mine / "sub" / "notes.txt").read_text() == "keep\n"
    assert report.is_dir() and link.is_symlink() and not made.exists()


def test_a_worker_whose_harness_is_gone_removes_the_shared_folder_only_if_crossgrad_s(tmp_path):
    """The folder an executor's workers share (its executor removes it as it closes): a
    worker that finds its harness gone removes it too, if it carries the marker of such a
    folder; a user's folder named in the variable stays whole."""
    from crossgrad.harness.run.environment import SHARED_KIND, SHARED_VARIABLE
    from crossgrad.harness.run.ownership import write_marker
    made, mine = tmp_path / "crossgrad-shared-made", tmp_path / "crossgrad-shared-mine"
    made.mkdir()
    write_marker(made, SHARED_KIND)
    (made / "steps.pickle").write_bytes(b"steps")
    mine.mkdir()
    (mine / "notes.txt").write_text("keep\n")
    for folder in (mine, made):
        # --parent names a process that is not its parent: to the worker, its harness is gone
        worker = subprocess.Popen([sys.executable, "-m", "crossgrad.harness.run.worker",
                                   "--framework", "numpy", "--parent", "1"],
                                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL,
                                  env=dict(os.environ, TMPDIR=str(tmp_path),
                                           **{SHARED_VARIABLE: str(folder)}))
        try:
            assert worker.wait(timeout=60) == 4  # stdin still open: it noticed by itself
        finally:
            worker.kill()
    assert (mine / "notes.txt").read_text() == "keep\n" and not made.exists()


def test_a_worker_is_given_its_executor_s_shared_folder_and_no_other(tmp_path, monkeypatch):
    """A variable in the harness's own environment (another run's folder) never reaches a
    worker, which would write into it and remove it with its own."""
    from crossgrad.harness.run.environment import SHARED_VARIABLE, shared_tempdir
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    theirs, ours = shared_tempdir(), shared_tempdir()
    monkeypatch.setenv(SHARED_VARIABLE, theirs)
    named = []
    for shared in (None, ours):
        worker = WorkerProcess("numpy", 1, shared=shared)
        try:
            environ = Path(f"/proc/{worker.proc.pid}/environ").read_bytes().split(b"\0")
            named.append([v for v in environ if v.startswith(SHARED_VARIABLE.encode() + b"=")])
        finally:
            worker.close()
    assert named == [[], [f"{SHARED_VARIABLE}={ours}".encode()]]


def test_a_worker_started_ahead_serves_its_framework_s_first_job(tmp_path, monkeypatch):
    """LocalExecutor.start: the worker it starts is the one the first job of its framework
    gets (one import, its hello said); one that no job takes is killed at close, not left
    to finish an import nobody waits for, and its scratch folder goes with it."""
    from crossgrad.harness.run import executor as executor_module
    from crossgrad.harness.run import jobs
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    made = []

    class Counted(WorkerProcess):
        def __init__(self, framework, *args, **kwargs):
            super().__init__(framework, *args, **kwargs)
            made.append(self)

    monkeypatch.setattr(executor_module, "WorkerProcess", Counted)
    spec = api.zoo("xor_2_2_1")
    with LocalExecutor(workers=2) as executor:
        executor.start(["numpy", "jax"])  # jax first: the schedule's order
        [result] = executor.run([jobs.check_job(spec, jobs.Inputs(spec), "numpy")])
        hellos = executor.hellos
    assert [w.framework for w in made] == ["jax", "numpy"] and result["status"] == "ok"
    assert set(hellos) == {"numpy"} and made[0].proc.returncode == -signal.SIGKILL
    assert not list(tmp_path.iterdir())  # both workers' scratch folders and the shared one


# ---- atomic reports and resume ----------------------------------------------------------

def crossgrad(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "crossgrad.harness.cli", *args], **kw)


def test_an_interrupted_run_leaves_the_previous_report_and_resume_completes_it(tmp_path,
                                                                                monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the runs below inherit it
    cache = tmp_path / "cache" / "crossgrad"
    out = tmp_path / "reports" / "latest"
    base = ["run", "--zoo", "digits_mlp", "mlp_3_4_2", "xor_2_2_1", "--frameworks", "numpy",
            "--steps", "20", "--workers", "1", "--out", str(out)]
    assert main(base + ["--quiet"]) == 0
    before = (out / "manifest.json").read_text()
    shutil.rmtree(cache)

    # the xor_2_2_1 jobs hang, so the run is surely in the middle when it is killed
    scratch = tmp_path / "tmp"  # the killed harness's TMPDIR
    scratch.mkdir()
    env = dict(os.environ, CROSSGRAD_FAULT="numpy:hang:xor_2_2_1", TMPDIR=str(scratch))
    proc = crossgrad(*base, stderr=subprocess.PIPE, text=True, env=env)
    ran = 0  # jobs that ran and stored their result before saying so ("ok"); the line of a
    for line in proc.stderr:  # job that took its twin's result says "shared" and stores none
        ran += line.startswith("[") and " ok " in line  # "[ 3/15] train numpy ... ok 0.0 s"
        if ran == 2:
            workers = subprocess.run(["ps", "-o", "pid=", "--ppid", str(proc.pid)],
                                     capture_output=True, text=True).stdout.split()
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert (out / "manifest.json").read_text() == before  # the old report, untouched
    cached = len(list(cache.glob("*.npz")))  # 2, or more if others finished before the kill
    assert cached >= 2
    assert workers  # the hanging numpy worker, at least
    time.sleep(2)  # the orphaned workers notice their harness is gone and exit
    alive = [pid for pid in workers if os.path.exists(f"/proc/{pid}")
             and not open(f"/proc/{pid}/stat").read().split(") ")[-1].startswith("Z")]
    assert not alive
    assert not list(scratch.iterdir())  # each worker removed the folder made for it

    resumed = crossgrad(*base, "--resume", stderr=subprocess.PIPE, text=True)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert err.count(" cached ") == cached
    assert (out / "manifest.json").read_text() != before
    # nothing beside it (`reports`, made to hold it, carries its own marker)
    assert sorted(p.name for p in out.parent.iterdir()) == [".crossgrad", "latest"]


def test_resumed_results_equal_fresh_ones(tmp_path):
    base = ["run", "--zoo", "xor_2_2_1", "--frameworks", "numpy", "--steps", "5", "--quiet",
            "--skip-native"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 0
    assert main(base + ["--out", str(tmp_path / "b"), "--resume"]) == 0  # all from the cache
    assert main(["diff", str(tmp_path / "a"), str(tmp_path / "b")]) == 0


def test_resume_serves_no_result_of_a_plugin_whose_helper_on_another_path_changed(tmp_path):
    """A module plugin in one PYTHONPATH folder imports a helper from another: editing the
    helper changes the results (its backward is right only while hb.K == 1), so --resume
    computes them again instead of serving the old PASS."""
    (tmp_path / "plA").mkdir()
    (tmp_path / "plB").mkdir()
    (tmp_path / "plA" / "cg_far_plug.py").write_text(
        "import crossgrad\nimport cg_far_helper\n\n\n@crossgrad.layer('far_scale')\n"
        "class Scale:\n    def params(self, in_shape):\n        return {}\n\n"
        "    def out_shape(self, in_shape):\n        return in_shape\n\n"
        "    def numpy_forward(self, p, x):\n        return cg_far_helper.K * x, None\n\n"
        "    def numpy_backward(self, p, cache, dy):\n        return dy, {}\n")
    helper = tmp_path / "plB" / "cg_far_helper.py"
    helper.write_text("K = 1.0\n")
    (tmp_path / "spec.json").write_text(json.dumps({
        "name": "far", "seed": 3, "input_shape": [64], "plugins": ["cg_far_plug"],
        "data": {"source": "digits", "batch_size": 7},
        "layers": [{"type": "dense", "units": 10}, {"type": "far_scale"}],
        "loss": {"type": "softmax_cross_entropy"}}))
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join([str(tmp_path / "plA"), str(tmp_path / "plB")]))

    def run(out, *more):
        return subprocess.run([sys.executable, "-m", "crossgrad.harness.cli", "run", "spec.json",
                               "--frameworks", "numpy", "--steps", "2", "--skip-native",
                               "--quiet", "--out", out, *more], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
    first = run("a")
    assert first.returncode == 0, first.stderr
    helper.write_text("K = 2.0\n")
    resumed = run("b", "--resume")
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr  # FAIL: computed again
    assert " FAIL" in resumed.stdout


# ---- the swap into place: a mount point, a failed rename, a signal ---------------------------

SAVE = ["check", "--zoo", "xor_2_2_1", "--frameworks", "numpy", "--quiet", "--workers", "1"]


def run_driver(tmp_path, driver, argv, *wrapper):
    """`driver` (Python, argv in sys.argv[1:]) in a child process under tmp_path, its cache
    there too; `wrapper`: a command it runs inside (unshare)."""
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), TMPDIR=str(tmp_path))
    return subprocess.run([*wrapper, sys.executable, "-c", driver, *argv], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)


def beside(folder):
    """What the folder holding an output holds, the cache and outputs of the driver aside."""
    return sorted(p.name for p in folder.iterdir() if p.name != "cache")


MOUNTED = """
import os, subprocess, sys
from crossgrad.harness.cli import main
from crossgrad.harness.run import ownership
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "none", "vol"], check=True)
if sys.argv[1] == "unrefused":  # as if the mount point had been missed: the swap meets it
    os.path.ismount, ownership._mount_points = (lambda path: False), set
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("refusal", ["refused", "unrefused"])
def test_a_mount_point_is_refused_and_a_swap_it_stops_leaves_nothing(tmp_path, refusal):
    """A Docker volume as --save: renaming it away fails (EBUSY), so it is refused in one line
    before anything is written; and where the swap meets it anyway, the new output and the
    name made for the previous one are both removed."""
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode:
        pytest.skip("no private mount namespace here (unshare -rm)")
    (tmp_path / "vol").mkdir()
    done = run_driver(tmp_path, MOUNTED, [refusal, *SAVE, "--save", "vol"], "unshare", "-rm")
    if refusal == "refused":
        assert done.returncode == 2 and done.stderr.splitlines() == [
            "crossgrad: vol: is a mount point, which crossgrad cannot replace; name a folder "
            "inside it as --save"], done.stderr
    else:
        assert done.returncode == 1 and "vol: could not be written (Device or resource busy)" \
            in done.stderr, done.stderr
    assert beside(tmp_path) == ["vol"]  # nothing hidden beside it (the mount is gone with
    assert not list((tmp_path / "vol").iterdir())  # its namespace: vol is the empty folder)


BIND_MOUNTED = """
import subprocess, sys
from crossgrad.harness.cli import main
subprocess.run(["mount", "--bind", "kept.json", "out.json"], check=True)
sys.exit(main(sys.argv[1:]))
"""


def test_a_file_bind_mounted_as_json_is_refused_before_any_work(tmp_path):
    """A single file mounted into a container as --json cannot be replaced by a rename (EBUSY):
    refused in one line, exit 2, before the work, and the mounted file's bytes kept. Its device
    is its parent's (a bind mount from the same disk), so os.path.ismount misses it."""
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode:
        pytest.skip("no private mount namespace here (unshare -rm)")
    (tmp_path / "kept.json").write_text("")  # empty: a file crossgrad would otherwise replace
    (tmp_path / "out.json").write_text("")
    done = run_driver(tmp_path, BIND_MOUNTED, [*SAVE, "--json", "out.json"], "unshare", "-rm")
    assert done.returncode == 2 and done.stderr.splitlines() == [
        "crossgrad: out.json: is a mount point, which crossgrad cannot replace; name a file in "
        "a mounted folder as --json"], done.stderr
    assert (tmp_path / "kept.json").read_text() == "" and beside(tmp_path) == ["kept.json",
                                                                             "out.json"]


def test_a_failed_swap_puts_the_previous_output_back(tmp_path, monkeypatch, capsys):
    """Without renameat2, the previous output is renamed aside and the new one into its place;
    when that second rename fails, the previous comes back and no temporary is left."""
    from crossgrad.harness.run import atomic
    from crossgrad.harness.run.ownership import read_marker
    out = tmp_path / "golden"
    assert main([*SAVE, "--save", str(out)]) == 0
    previous = read_marker(out)
    real_rename, failed = os.rename, []

    def rename(a, b):
        if Path(b) == out and not failed:
            failed.append(a)
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(b))
        return real_rename(a, b)

    monkeypatch.setattr(atomic, "_renameat2", lambda a, b, flags: None)
    monkeypatch.setattr(os, "rename", rename)
    assert main([*SAVE, "--save", str(out)]) == 1
    assert failed and "could not be written (Device or resource busy)" in capsys.readouterr().err
    assert beside(tmp_path) == ["golden"] and read_marker(out) == previous


INTERRUPTED = """
import os, signal, sys
from crossgrad.harness.run import atomic
from crossgrad.harness.cli import main
where, signum = sys.argv[1], getattr(signal, sys.argv[2])
real, sent = {"exchange": atomic._exchange, "aside": atomic._rename_new}, []

def interrupt(step, after):
    # the step, with the signal sent just before or just after its first call
    def wrapped(a, b):
        if not after and not sent:
            sent.append(os.kill(os.getpid(), signum))
        done = real[step](a, b)
        if after and not sent:
            sent.append(os.kill(os.getpid(), signum))
        return done
    return wrapped

if where == "aside":  # no exchange: the previous output is renamed aside first
    atomic._exchange = lambda a, b: False
    atomic._rename_new = interrupt("aside", after=True)
else:
    atomic._exchange = interrupt("exchange", after=where == "after the exchange")
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.parametrize("where, signum, replaced", [
    ("before the exchange", "SIGINT", False),
    ("after the exchange", "SIGINT", True),
    ("after the exchange", "SIGTERM", True),
    ("aside", "SIGINT", False),
])
def test_a_signal_during_the_swap_leaves_one_output_and_no_temporary(tmp_path, where, signum,
                                                                      replaced):
    """Ctrl-C or SIGTERM as the finished output is swapped into place: the new output is in
    place (the previous removed), or the previous is (the new one removed, the previous put
    back from where it was moved); nothing hidden stays beside it."""
    out = tmp_path / "golden"
    assert main([*SAVE, "--save", str(out)]) == 0
    before = os.stat(out).st_ino
    done = run_driver(tmp_path, INTERRUPTED, [where, signum, *SAVE, "--save", "golden"])
    assert done.returncode == 128 + getattr(signal, signum), done.stderr
    assert done.stderr.splitlines()[-1].endswith("nothing half-written was left behind")
    assert beside(tmp_path) == ["golden"]
    assert (os.stat(out).st_ino != before) == replaced
    assert sorted(p.name for p in out.iterdir()) == [".crossgrad", "xor_2_2_1"]


STARTING = """
import os, signal, sys

class CtrlC:  # Ctrl-C as the commands (NumPy, pandas, the harness) are being imported
    def find_spec(self, name, path=None, target=None):
        if name == "crossgrad.harness.commands":
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, CtrlC())
from crossgrad.harness.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_while_crossgrad_starts_is_one_line(tmp_path):
    done = run_driver(tmp_path, STARTING, SAVE)
    assert done.returncode == 130 and done.stderr.splitlines() == [
        "crossgrad: interrupted; nothing half-written was left behind"], done.stderr


def test_replacing_files_together_puts_back_the_first_when_the_second_fails(tmp_path,
                                                                              monkeypatch):
    """atomic_files: the second rename fails, so the first file, already replaced, gets its
    previous content back: the pair stays as it was."""
    from crossgrad.harness.run.atomic import OutputFailed, atomic_files
    spec, weights = tmp_path / "m.toml", tmp_path / "m.params.npz"
    spec.write_text("old spec\n")
    weights.write_text("old weights\n")
    real_replace = os.replace

    def replace(a, b):
        if Path(b) == weights:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(b))
        return real_replace(a, b)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OutputFailed, match="m.toml: could not be written"):
        with atomic_files((spec, "w"), (weights, "w")) as (a, b):
            a.write("new spec\n")
            b.write("new weights\n")
    assert spec.read_text() == "old spec\n" and weights.read_text() == "old weights\n"
    assert beside(tmp_path) == ["m.params.npz", "m.toml"]


def test_a_file_put_where_an_import_writes_while_it_works_is_kept(tmp_path):
    """crossgrad import claims --out before it loads the model and again before it replaces
    anything (atomic_files' recheck): notes the user saved there meanwhile stay, exit 2, and
    neither new file is left."""
    from crossgrad.harness.errors import InputError
    from crossgrad.harness.porting import _claim
    from crossgrad.harness.run.atomic import atomic_files
    out = tmp_path / "m.toml"
    target, params = _claim(str(out))
    with pytest.raises(InputError, match="not a spec written by crossgrad import"):
        with atomic_files((target, "w"), (params, "wb"), recheck=lambda: _claim(str(out))) \
                as (spec, weights):
            out.write_text("my notes\n")  # the user, while the model imported
            spec.write("name = 'm'\n")
            weights.write(b"weights")
    assert out.read_text() == "my notes\n" and beside(tmp_path) == ["m.toml"]
