"""Every fact about a framework, in one place.

Adding a framework (MLX, tinygrad, ...) means one `Framework` entry here and one folder
under impls/ with the same files as the others; nothing else names a framework.
Presentation code reads `short`, `label` and `color`; the worker reads `package`;
the environment of every worker is the union of all `environment` pins (recorded in
the manifest), so no worker's settings depend on which framework it serves.
"""
import functools
import importlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable


@dataclass(frozen=True)
class Framework:
    name: str             # what users type: --frameworks torch
    package: str          # the implementation: crossgrad.impls.torch_autograd
    module: str           # what must be importable for it to run
    distributions: tuple  # pip names to read the version from, without importing
    short: str            # table column heads: "pt", "pt~tf"
    label: str            # what a sentence calls it: "PyTorch"
    color: str            # its colour in every plot
    extra: str            # the pip extra that installs it: pip install -e ".[torch]"
    environment: Callable = None  # (threads, current environment) -> variables to pin
    #                                 before it is imported


BLAS_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                  "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "BLIS_NUM_THREADS")


def _blas(threads, env):
    return dict.fromkeys(BLAS_VARIABLES, str(threads))


def _tensorflow(threads, env):
    return {"TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": str(threads),
            "TF_CPP_MIN_LOG_LEVEL": "2",    # start-up chatter out of the stderr tails
            "TF_ENABLE_ONEDNN_OPTS": "0"}   # oneDNN's fused kernels reorder float sums


def _xla(threads, env):
    pins = {"NPROC": str(threads)}          # what sizes XLA's CPU thread pool
    flags = env.get("XLA_FLAGS", "")
    if threads == 1 and "xla_cpu_multi_thread_eigen" not in flags:
        pins["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()
    return pins


FRAMEWORKS = {f.name: f for f in (
    Framework("numpy", "crossgrad.impls.numpy_manual", "numpy", ("numpy",), "np", "NumPy",
              "#444444", "", _blas),
    Framework("torch", "crossgrad.impls.torch_autograd", "torch", ("torch",), "pt", "PyTorch",
              "#ee4c2c", "torch", _blas),
    Framework("tensorflow", "crossgrad.impls.tf_tape", "tensorflow",
              ("tensorflow-cpu", "tensorflow"), "tf", "TensorFlow", "#ff9900", "tensorflow",
              _tensorflow),
    Framework("jax", "crossgrad.impls.jax_grad", "jax", ("jax",), "jax", "JAX", "#2f6fdf", "jax",
              _xla),
)}
ORDER = list(FRAMEWORKS)  # the reference first: every "a vs b" pair has a earlier than b
REFERENCE = ORDER[0]
# An imported model itself (harness/importers), run in its own framework's worker beside
# the four when a spec came from `crossgrad import`; it pairs after them.
ORIGINAL = "original"
PARTICIPANTS = ORDER + [ORIGINAL]
MODULES = ("runtime", "layout", "layers", "losses", "optimizers", "model", "train")


def installed(name):
    return importlib.util.find_spec(FRAMEWORKS[name].module) is not None


@functools.cache  # a metadata lookup scans sys.path (1.2 ms); every job's key asks for one
def version(name):
    """The installed version from package metadata (importing TensorFlow takes seconds)."""
    for dist in FRAMEWORKS[name].distributions:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def short(name):
    """Column head of a framework; names outside the registry (a participant) stand as they are."""
    return FRAMEWORKS[name].short if name in FRAMEWORKS else "orig" if name == ORIGINAL else name


def color(name):
    return FRAMEWORKS[name].color if name in FRAMEWORKS else "#8a2be2"


def load(name):
    """Import the implementation: a namespace with runtime, layout, ..., train."""
    package = FRAMEWORKS[name].package
    runtime = importlib.import_module(f"{package}.runtime")  # first: it configures the framework
    return SimpleNamespace(name=name, runtime=runtime, **{
        m: importlib.import_module(f"{package}.{m}") for m in MODULES if m != "runtime"})
