"""Shared fixtures: one pool of framework workers for the whole session.

Importing TensorFlow takes seconds, so the cross-framework tests run every case in
one batch through a session-wide executor (workers stay alive between batches) and
the parametrized tests then look at their own rows.
"""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/cases.py

from crossgrad.harness import registry  # noqa: E402
from crossgrad.harness.run.executor import LocalExecutor  # noqa: E402

FRAMEWORKS = registry.ORDER
OTHERS = [fw for fw in FRAMEWORKS if fw != "numpy"]

# PyTorch's float64 GEMMs through MKL can round by where an operand lies in memory (on AMD
# EPYC a copy of one LSTM weight, the same numbers elsewhere, moves a loss by 1 ulp).
# MKL_CBWR=COMPATIBLE makes MKL round by the numbers alone, on its SSE2 code paths (several
# times slower, so not the workers' default). The tests that compare two separately built
# models of the same numbers bit for bit (a built-in layer and its plugin twin) run with it.
BY_THE_NUMBERS = {"MKL_CBWR": "COMPATIBLE"}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """`crossgrad run` stores results in the user's cache folder; a test's go under tmp."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def executor():
    with LocalExecutor(workers=2, threads=1) as ex:
        yield ex


def need(framework):
    if not registry.installed(framework):
        pytest.skip(f"{framework} is not installed")


def in_process(framework):
    """One implementation imported in this process with the worker's environment pins
    (teach.gallery.worker_environment, as the explain pages import it) and one thread."""
    from crossgrad.harness.teach.gallery import worker_environment
    need(framework)
    worker_environment(framework)
    loaded = registry.load(framework)
    loaded.runtime.configure(1)
    return loaded
