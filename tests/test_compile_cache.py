"""JAX's persistent compilation cache (run/compile_cache.py): where it lives, when it is
refused, and that a job loaded from it gives the bits a fresh compile gives."""
import os

import numpy as np
import pytest

from crossgrad.harness import api
from crossgrad.harness.run import jobs
from crossgrad.harness.run.compile_cache import compile_cache_env
from crossgrad.harness.run.executor import LocalExecutor
from conftest import need


def test_the_cache_is_a_private_folder_in_crossgrads_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.delenv("CROSSGRAD_COMPILE_CACHE", raising=False)
    env = compile_cache_env()
    folder = tmp_path / "crossgrad" / "xla"
    assert env["JAX_COMPILATION_CACHE_DIR"] == str(folder)
    assert env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "0"
    assert folder.is_dir() and folder.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("case", ["off", "users_own", "group_writable", "link", "a_file"])
def test_the_cache_is_left_out(tmp_path, monkeypatch, case):
    """Turned off, the user's own JAX setting, or a folder someone else could have written
    machine code into: the workers compile as if there were no cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.delenv("CROSSGRAD_COMPILE_CACHE", raising=False)
    folder = tmp_path / "crossgrad" / "xla"
    folder.parent.mkdir()
    if case == "off":
        monkeypatch.setenv("CROSSGRAD_COMPILE_CACHE", "off")
    elif case == "users_own":
        monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "mine"))
    elif case == "group_writable":
        folder.mkdir()
        folder.chmod(0o770)
    elif case == "link":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        folder.symlink_to(tmp_path / "elsewhere")
    else:
        folder.write_bytes(b"kept")
    assert compile_cache_env() == {}
    if case == "a_file":
        assert folder.read_bytes() == b"kept"
    if case in ("off", "users_own"):
        assert not folder.exists()


def _check_job(model, dtype):
    spec = api.zoo(model).with_overrides(dtype=dtype)
    return jobs.check_job(spec, jobs.Inputs(spec), "jax")


@pytest.mark.slow  # workers started afresh: seconds each
def test_a_second_worker_loads_the_same_bits(tmp_path, monkeypatch):
    """One check job in a fresh JAX worker with an empty cache, then in another fresh
    worker that loads every program from it: loss, gradients, probe losses and per-layer
    values bit for bit."""
    need("jax")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.delenv("CROSSGRAD_COMPILE_CACHE", raising=False)
    runs, listings = [], []
    for _ in range(2):
        with LocalExecutor(workers=1) as ex:
            [result] = ex.run([_check_job("tiny_transformer", "float64")])
        assert result["status"] == "ok", result
        runs.append(result)
        listings.append(sorted(os.listdir(tmp_path / "crossgrad" / "xla")))
    assert listings[0], "nothing was cached"
    assert listings[1] == listings[0], "the second worker compiled programs anew"
    first, second = runs
    assert first["loss"] == second["loss"]
    for key in ("grads", "layer_outputs", "layer_input_grads"):
        assert first[key].keys() == second[key].keys()
        for name in first[key]:
            assert first[key][name].tobytes() == second[key][name].tobytes(), (key, name)
    assert np.asarray(first["fd_values"]).tobytes() == np.asarray(second["fd_values"]).tobytes()


def test_the_benchmarks_compile_from_cold(tmp_path, monkeypatch):
    """`crossgrad bench` times compiling as a first run pays it: its executor's JAX worker
    gets no cache, and nothing is stored."""
    need("jax")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.delenv("CROSSGRAD_COMPILE_CACHE", raising=False)
    with LocalExecutor(workers=1, compile_cache=False) as ex:
        [result] = ex.run([_check_job("xor_2_2_1", "float64")])
    assert result["status"] == "ok", result
    assert not (tmp_path / "crossgrad" / "xla").exists()


@pytest.mark.slow
@pytest.mark.parametrize("cache", [False, True])
def test_the_ray_executor_passes_the_choice_to_its_workers(tmp_path, monkeypatch, cache):
    """`crossgrad bench --executor ray` compiles from cold too; a Ray run keeps the cache."""
    need("jax")
    pytest.importorskip("ray")
    from crossgrad.harness.run.ray_executor import RayExecutor
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # before Ray starts: its actors inherit it
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.delenv("CROSSGRAD_COMPILE_CACHE", raising=False)
    with RayExecutor(workers=1, compile_cache=cache) as ex:
        [result] = ex.run([_check_job("xor_2_2_1", "float64")])
    assert result["status"] == "ok", result
    folder = tmp_path / "crossgrad" / "xla"
    assert (folder.is_dir() and any(folder.iterdir())) == cache
