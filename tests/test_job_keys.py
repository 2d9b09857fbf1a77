"""What a cached result is keyed by (run.jobs.job_key): everything it depends on, so that
`run --resume` never serves a result computed from other data, threads or code."""
import numpy as np

from crossgrad.harness.cli import main
from crossgrad.harness.run import jobs
from crossgrad.harness.spec import zoo_spec

SPEC = """name = "mine"
input_shape = [784]
[data]
source = "mnist"
path = "data.npz"
batch_size = 20
[[layers]]
type = "dense"
units = 10
[loss]
type = "softmax_cross_entropy"
[optimizer]
type = "sgd"
lr = 0.1
[train]
steps = 5
"""


def project(folder, seed):
    """A folder with the spec above and its own data.npz beside it; -> the spec's path."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    np.savez(folder / "data.npz", x=rng.integers(0, 256, (100, 28, 28)).astype(np.uint8),
             y=rng.integers(0, 10, 100))
    (folder / "spec.toml").write_text(SPEC)
    return str(folder / "spec.toml")


def test_resume_does_not_serve_the_results_of_other_data(tmp_path, capsys):
    """Two projects, the same spec text and data.path, other data.npz files: B's resumed
    run is B's fresh run, bit for bit, not A's results from the cache."""
    a, b = project(tmp_path / "a", 1), project(tmp_path / "b", 2)
    options = ["--frameworks", "numpy", "--skip-native", "--quiet"]
    assert main(["run", a, "--out", str(tmp_path / "ra"), *options]) == 0
    assert main(["run", b, "--out", str(tmp_path / "rb"), "--resume", *options]) == 0
    assert main(["run", b, "--out", str(tmp_path / "fresh"), *options]) == 0
    capsys.readouterr()
    assert main(["diff", str(tmp_path / "rb"), str(tmp_path / "fresh")]) == 0
    assert "identical results" in capsys.readouterr().out
    assert main(["diff", str(tmp_path / "ra"), str(tmp_path / "rb")]) == 1
    assert "spec hash differs" in capsys.readouterr().out


def test_the_key_follows_threads_and_crossgrad_version(monkeypatch):
    spec = zoo_spec("xor_2_2_1")
    one = jobs.job_key("check", spec, "torch", "2", False)
    assert jobs.job_key("check", spec, "torch", "2", False, threads=1) == one
    assert jobs.job_key("check", spec, "torch", "2", False, threads=2) != one
    monkeypatch.setattr(jobs, "tool_version", lambda: "0.0.0+other")
    assert jobs.job_key("check", spec, "torch", "2", False) != one


def test_resume_does_not_serve_the_results_of_other_threads(tmp_path, capsys):
    """--threads changes bits (README "Reproducibility"): a resumed run with another thread
    count computes its jobs again; with the same count it takes them from the cache."""
    spec = project(tmp_path / "a", 1)
    options = ["--frameworks", "numpy", "--skip-native"]
    assert main(["run", spec, "--out", str(tmp_path / "one"), "--quiet", *options]) == 0
    capsys.readouterr()
    assert main(["run", spec, "--out", str(tmp_path / "two"), "--resume", "--threads", "2",
                 *options]) == 0
    assert "cached" not in capsys.readouterr().err
    assert main(["run", spec, "--out", str(tmp_path / "again"), "--resume", *options]) == 0
    assert "cached" in capsys.readouterr().err
