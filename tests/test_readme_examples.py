"""The README's examples, run exactly as written: the plugin layer and its spec through
`crossgrad check`, the `crossgrad.compare` session, and the user's own test file.

Code blocks are marked in README.md by an HTML comment on the line before the fence:
`<!-- file: NAME -->` (a file, written as is), `<!-- example: NAME -->` (Python run in
order, in one namespace) and `<!-- output: NAME -->` (what the run prints; for a file
example the block's first line is the command, after "$ ")."""
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from crossgrad.harness import registry
from crossgrad.harness.run import manifest

README = Path(__file__).parents[1] / "README.md"
BLOCK = re.compile(r"<!-- (file|example|output): (\S+) -->\n```[a-z]*\n(.*?)```", re.S)
ALL = all(registry.installed(fw) for fw in registry.ORDER)

# The README's pasted outputs were made on this CPU, and match a run there word for word.
# On another CPU the frameworks' kernels round otherwise (PyTorch's MKL, TensorFlow's
# Eigen): between an Intel Xeon and an AMD EPYC the printed errors of one check moved by
# up to 1.6x. There a line must match word for word but for its numbers in scientific
# notation, each within a factor of 4 of the pasted one: a stale example, whose layout,
# verdicts or orders of magnitude changed, still fails.
PASTED_ON = "Intel(R) Xeon(R) Processor"
SCIENTIFIC = re.compile(r"-?\d\.\de[-+]\d\d")


def as_pasted(got, expected):
    """Whether output lines `got` are the README's `expected`: the same, on PASTED_ON."""
    if got == expected:
        return True
    return manifest.cpu().get("model") != PASTED_ON and len(got) == len(expected) and all(
        _same_words(a.split(), b.split()) for a, b in zip(got, expected))


def _same_words(got, expected):
    return len(got) == len(expected) and all(
        a == b or (SCIENTIFIC.fullmatch(a) and SCIENTIFIC.fullmatch(b) and float(b) != 0
                   and 0.25 <= float(a) / float(b) <= 4)
        for a, b in zip(got, expected))


def blocks(kind, name):
    return [text for k, n, text in BLOCK.findall(README.read_text()) if (k, n) == (kind, name)]


def write_files(folder, *names):
    for name in names:
        (text,) = blocks("file", name)
        (folder / name).write_text(text)


def run(argv, cwd, timeout=900):
    env = dict(os.environ, XDG_CACHE_HOME=str(cwd / "cache"))
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_readme_marks_its_examples():
    assert blocks("file", "scaled_swish.py") and blocks("file", "swish_mlp.toml")
    assert len(blocks("example", "compare")) == len(blocks("output", "compare")) == 3
    assert blocks("output", "swish_mlp.toml")[0].startswith("$ crossgrad check swish_mlp.toml")


def test_the_hyperparameter_example_is_refused_as_pasted(tmp_path):
    """Refused while the spec is read: no framework starts, and nothing is written."""
    write_files(tmp_path, "tiny_eps.toml")
    command, *expected = blocks("output", "tiny_eps.toml")[0].splitlines()
    argv = shlex.split(command.removeprefix("$ "))
    got = run([sys.executable, "-m", "crossgrad.harness.cli", *argv[1:]], tmp_path, 120)
    assert got.returncode == 2, got.stderr
    assert (got.stdout, got.stderr.splitlines()) == ("", expected)
    assert [p.name for p in tmp_path.iterdir()] == ["tiny_eps.toml"]


@pytest.mark.parametrize("cpu, rounding_passes", [(PASTED_ON, False), ("AMD EPYC", True)])
def test_a_pasted_output_allows_another_cpu_s_rounding_not_a_stale_example(
        monkeypatch, cpu, rounding_passes):
    monkeypatch.setattr(manifest, "cpu", lambda: {"model": cpu})
    pasted = ["model  float64  ok  2.0e-15  7.9e-16   1.5e-08   PASS"]
    assert as_pasted(list(pasted), pasted)
    assert as_pasted(["model  float64  ok  1.3e-15  8.7e-16   1.5e-08   PASS"],
                     pasted) is rounding_passes
    for stale in ("model  float64  ok  2.0e-13  7.9e-16   1.5e-08   PASS",   # 100x
                  "model  float64  ok  2.0e-15  7.9e-16   1.5e-08   FAIL",   # the verdict
                  "model  float32  ok  2.0e-15  7.9e-16   1.5e-08   PASS",   # a word
                  "model  float64  ok  2.0e-15  7.9e-16   PASS"):            # a column
        assert not as_pasted([stale], pasted)


@pytest.mark.slow
def test_the_plugin_example(tmp_path):
    write_files(tmp_path, "scaled_swish.py", "swish_mlp.toml")
    command, *expected = blocks("output", "swish_mlp.toml")[0].splitlines()
    argv = shlex.split(command.removeprefix("$ "))
    done = run([sys.executable, "-m", "crossgrad.harness.cli", *argv[1:]], tmp_path)
    assert done.returncode == 0, done.stderr
    if ALL:  # the pasted output comes from a machine with all four frameworks
        assert as_pasted(done.stdout.splitlines(), expected), done.stdout


DRIVER = """
import json, sys
for code in json.load(open(sys.argv[1])):
    try:
        exec(code, globals())
    except AssertionError as err:
        print(f"AssertionError: {err}")
"""


@pytest.mark.slow
def test_the_compare_example(tmp_path):
    if not all(registry.installed(fw) for fw in ("torch", "tensorflow", "jax")):
        pytest.skip("the example uses torch, tensorflow and jax")
    (tmp_path / "blocks.json").write_text(json.dumps(blocks("example", "compare")))
    (tmp_path / "driver.py").write_text(DRIVER)
    done = run([sys.executable, "driver.py", "blocks.json"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert rounding_masked(done.stdout) == rounding_masked("".join(blocks("output", "compare")))


# a float64 error at rounding level (0, or below 1e-12): its last digits are the machine's
# (JAX's loss pair is 4.1e-16 on an AVX-512 Xeon, 2.1e-16 on an AVX2 EPYC)
ROUNDING_LEVEL = re.compile(r"\b(?:\d\.\d+e-(?:1[3-9]|[2-9]\d|\d{3})|0\.0+e\+00)\b")


def rounding_masked(text):
    return ROUNDING_LEVEL.sub("<rounding>", text)


@pytest.mark.slow
def test_the_test_suite_example(tmp_path):
    if not ALL or not registry.installed("jax"):
        pytest.skip("the example checks the plugin in all four frameworks")
    write_files(tmp_path, "scaled_swish.py", "swish_mlp.toml", "test_my_code.py")
    done = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                "test_my_code.py"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
