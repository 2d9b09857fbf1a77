"""A command-line tool's manners: --version, closed pipes, --zoo stopping at a path, every
option checked up front with its flag named, the progress line agreeing with the table,
and --timeout bounding a worker's start-up too."""
import json
import re
import subprocess
import sys
import time
from importlib import resources
from importlib.metadata import version

import pytest

import crossgrad
from crossgrad.harness.cli import main

from conftest import need

XOR = ["--zoo", "xor_2_2_1", "--frameworks", "numpy", "--quiet"]


def status_of(argv):
    """main()'s exit status, whether it returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


def test_version(capsys):
    assert crossgrad.__version__ == version("crossgrad")
    assert status_of(["--version"]) == 0
    assert capsys.readouterr().out == f"crossgrad {crossgrad.__version__}\n"


@pytest.mark.parametrize("args", [["zoo"], ["check", *XOR, "--json", "c.json"]])
def test_a_closed_pipe_ends_quietly_and_the_outputs_are_still_written(tmp_path, args):
    """`crossgrad zoo | head -1`, at its harshest: the reader is gone before the first byte."""
    proc = subprocess.Popen([sys.executable, "-m", "crossgrad.harness.cli", *args],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) in (0, 141) and err == ""
    if "--json" in args:
        assert json.loads((tmp_path / "c.json").read_text())["models"][0]["name"] == "xor_2_2_1"


def test_zoo_names_stop_at_a_path_and_take_commas(tmp_path):
    spec = tmp_path / "mine.toml"
    zoo = resources.files("crossgrad.harness.spec.zoo")
    spec.write_text(zoo.joinpath("mlp_3_4_2.toml").read_text()
                    .replace('name = "mlp_3_4_2"', 'name = "mine"'))
    out = tmp_path / "c.json"
    assert main(["check", "--zoo", "xor_2_2_1", str(spec), *XOR[2:], "--json", str(out)]) == 0
    assert sorted(m["name"] for m in json.loads(out.read_text())["models"]) == ["mine",
                                                                                "xor_2_2_1"]
    assert main(["check", "--zoo", "xor_2_2_1,mlp_3_4_2", *XOR[2:], "--json", str(out)]) == 0
    assert [m["name"] for m in json.loads(out.read_text())["models"]] == ["xor_2_2_1",
                                                                          "mlp_3_4_2"]


BAD_OPTIONS = {
    "timeout_zero": (["check", *XOR, "--timeout", "0"], "--timeout"),
    "timeout_negative": (["check", *XOR, "--timeout", "-5"], "--timeout"),
    "timeout_nan": (["check", *XOR, "--timeout", "nan"], "--timeout"),
    "timeout_word": (["check", *XOR, "--timeout", "soon"], "--timeout"),
    "frameworks_empty": (["check", *XOR, "--frameworks", ""], "--frameworks"),
    "frameworks_commas": (["check", *XOR, "--frameworks", " , "], "--frameworks"),
    "frameworks_unknown": (["check", *XOR, "--frameworks", "numpy,mxnet"], "--frameworks"),
    "zoo_empty": (["check", "--zoo", ",", "--quiet"], "--zoo"),
    "steps_negative_train": (["train", *XOR, "--steps", "-1"], "--steps"),
    "steps_zero_run": (["run", *XOR, "--steps", "0"], "--steps"),
    "steps_negative_sweep": (["sweep", *XOR, "--steps", "-1"], "--steps"),
    "workers_zero": (["check", *XOR, "--workers", "0"], "--workers"),
    "threads_zero": (["check", *XOR, "--threads", "0"], "--threads"),
    # one slot made per worker before any job: 10^20 hung, growing; a C int of threads
    "workers_huge": (["check", *XOR, "--workers", "99999999999999999999"], "--workers"),
    "threads_huge": (["check", *XOR, "--threads", "99999999999999999999"], "--threads"),
    "workers_list_huge": (["bench", *XOR, "--workers-list", "1,99999"], "--workers-list"),
    "seed_negative": (["check", *XOR, "--seed", "-1"], "--seed"),
    "seeds_backwards": (["sweep", *XOR, "--seeds", "3-1"], "--seeds"),
    "workers_list": (["bench", *XOR, "--workers-list", "1,x"], "--workers-list"),
    "ray_address_alone": (["check", *XOR, "--ray-address", "127.0.0.1:6379"], "--ray-address"),
    "ray_address_form": (["check", *XOR, "--executor", "ray", "--ray-address", "nowhere"],
                         "--ray-address"),
    # blamed on the spec once: `xor_2_2_1.toml: name: ... is also the name of ...`, and
    # `train.steps: must be at most 1,000,000,000`
    "dtypes_twice": (["sweep", *XOR, "--dtypes", "float64,float64"], "--dtypes"),
    "steps_over_the_spec_limit_train": (["train", *XOR, "--steps", "99999999999"], "--steps"),
    "steps_over_the_spec_limit_sweep": (["sweep", *XOR, "--steps", "1000000001"], "--steps"),
    "zoo_twice": (["check", "--zoo", "xor_2_2_1,xor_2_2_1", *XOR[2:]], "--zoo"),
    # an empty list, or a value twice, is refused by every list option alike
    "optimizers_empty": (["sweep", *XOR, "--optimizers="], "--optimizers"),
    "dtypes_empty": (["sweep", *XOR, "--dtypes="], "--dtypes"),
    "seeds_empty": (["sweep", *XOR, "--seeds="], "--seeds"),
    "optimizers_twice": (["sweep", *XOR, "--optimizers", "sgd,sgd"], "--optimizers"),
    "seeds_twice": (["sweep", *XOR, "--seeds", "0,0"], "--seeds"),
    "seeds_overlapping": (["sweep", *XOR, "--seeds", "0-5,3-8"], "--seeds"),
    "frameworks_twice": (["check", "--zoo", "xor_2_2_1", "--frameworks", "numpy,numpy"],
                         "--frameworks"),
    "workers_list_twice": (["bench", *XOR, "--workers-list", "1,1"], "--workers-list"),
    "batch_sizes_twice": (["bench", *XOR, "--step-time", "--batch-sizes", "8,8"],
                          "--batch-sizes"),
    # an option of one value given twice: argparse kept the last without a word
    "save_twice": (["train", *XOR, "--save", "{tmp}/a", "--save", "{tmp}/b"], "--save"),
    "steps_twice": (["train", *XOR, "--steps", "5", "--steps", "50"], "--steps"),
    "dtype_twice": (["check", *XOR, "--dtype", "float32", "--dtype", "float64"], "--dtype"),
    "out_twice_spelled_alike": (["run", *XOR, "--out", "{tmp}/a", "--out", "{tmp}/a"], "--out"),
    # a flag without effect in the mode asked for
    "seed_in_a_sweep": (["sweep", *XOR, "--seed", "3", "--seeds", "0-1"], "--seed"),
    "seeds_with_step_time": (["bench", *XOR, "--step-time", "--seeds", "0-3"], "--seeds"),
    "executor_with_step_time": (["bench", *XOR, "--step-time", "--executor", "ray"],
                                "--executor"),
    "batch_sizes_without_step_time": (["bench", *XOR, "--batch-sizes", "8"], "--batch-sizes"),
    "dtype_without_step_time": (["bench", *XOR, "--dtype", "float64"], "--dtype"),
    "workers_in_bench": (["bench", *XOR, "--workers", "3"], "--workers"),
    "json_with_pitfalls_list": (["pitfalls", "--list", "--quiet", "--json"], "--json"),
    "workers_with_pitfalls_list": (["pitfalls", "--list", "--workers", "2"], "--workers"),
}


@pytest.mark.parametrize("case", sorted(BAD_OPTIONS))
def test_every_option_is_checked_up_front_naming_its_flag(tmp_path, capsys, case):
    args, flag = BAD_OPTIONS[case]
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]  # outputs only under tmp_path
    out = tmp_path / "out"
    outputs = {"check": ["--json", str(out)], "train": ["--out", str(out)],
               "run": ["--out", str(out)], "sweep": ["--json", str(out)],
               "bench": ["--json", str(out)], "pitfalls": []}[args[0]]
    if args[-1] == "--json":  # the flag under test takes the output
        args, outputs = args[:-1], ["--json", str(out)]
    assert status_of(args + outputs) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"crossgrad: {flag}: "), err
    assert list(tmp_path.iterdir()) == []  # nothing written


def fake_jax(tmp_path, monkeypatch, body):
    """A jax whose import does `body`, found by the worker processes first."""
    need("jax")
    (tmp_path / "fake" / "jax").mkdir(parents=True)
    (tmp_path / "fake" / "jax" / "__init__.py").write_text(body)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "fake"))


PROGRESS = re.compile(r"\[\s*\d+/\d+\] (\w+)\s+(\w+)\s+(\S+)\s+(\w+)\s+(\w+)")


def progress_status(err, framework):
    """The status column of the progress lines of `framework`."""
    lines = [PROGRESS.match(line) for line in err.splitlines()]
    return [m[5] for m in lines if m and m[2] == framework]


def test_the_progress_line_says_what_the_table_says(tmp_path, monkeypatch, capsys):
    fake_jax(tmp_path, monkeypatch, "raise ImportError('this jax is broken')\n")
    out = tmp_path / "r.json"
    assert main(["check", "--zoo", "xor_2_2_1", "--frameworks", "numpy,jax",
                 "--json", str(out)]) == 1
    assert progress_status(capsys.readouterr().err, "jax") == ["failed"]
    assert json.loads(out.read_text())["models"][0]["frameworks"]["jax"]["status"] == "failed"
    monkeypatch.setattr("crossgrad.harness.registry.ORDER", ("numpy", "jax"))
    assert main(["check", "--zoo", "xor_2_2_1", "--json", str(out)]) == 0
    assert progress_status(capsys.readouterr().err, "jax") == ["skipped"]
    assert json.loads(out.read_text())["models"][0]["frameworks"]["jax"]["status"] == "skipped"



def test_a_shared_result_s_line_says_shared_unless_it_failed(capsys):
    """A job that took another phase's result says "shared", without that job's time; one
    whose result is a failure says "failed", as the table will."""
    from crossgrad.harness.options import Progress
    job = {"kind": "train", "framework": "jax", "model": "xor_2_2_1", "dtype": "float64"}
    progress = Progress(4)
    progress(job, {"status": "ok", "seconds": 1.5})
    progress(job, {"status": "ok", "seconds": 1.5, "shared": True})
    progress(job, {"status": "failed", "error": "worker died", "shared": True})
    progress(job, {"status": "ok", "seconds": 1.5, "cached": True})
    lines = capsys.readouterr().err.splitlines()
    assert [PROGRESS.match(line)[5] for line in lines] == ["ok", "shared", "failed", "cached"]
    assert [line.endswith("1.5 s") for line in lines] == [True, False, False, False]

def test_the_timeout_bounds_a_worker_start_up(tmp_path, monkeypatch, capsys):
    fake_jax(tmp_path, monkeypatch, "import time\ntime.sleep(600)\n")
    out = tmp_path / "r.json"
    start = time.monotonic()
    assert main(["check", "--zoo", "xor_2_2_1", "mlp_3_4_2", "--frameworks", "numpy,jax",
                 "--timeout", "3", "--json", str(out), "--quiet"]) == 1
    assert time.monotonic() - start < 60  # not the 300 s start-up allowance
    for model in json.loads(out.read_text())["models"]:
        jax = model["frameworks"]["jax"]
        assert jax["status"] == "failed", jax
        assert jax["error"] == "worker could not start: timed out starting (after 3 s)"
        assert model["frameworks"]["numpy"]["status"] == "ok"
