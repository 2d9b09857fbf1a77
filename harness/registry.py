"""The one place that knows where each framework's implementation lives."""
import importlib.metadata
import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class Framework:
    name: str            # what users type: --frameworks torch
    package: str         # the implementation: impls.torch_autograd
    module: str          # what must be importable for it to run
    distributions: tuple  # pip names to read the version from, without importing


FRAMEWORKS = {f.name: f for f in (
    Framework("numpy", "impls.numpy_manual", "numpy", ("numpy",)),
    Framework("torch", "impls.torch_autograd", "torch", ("torch",)),
    Framework("tensorflow", "impls.tf_tape", "tensorflow", ("tensorflow-cpu", "tensorflow")),
    Framework("jax", "impls.jax_grad", "jax", ("jax",)),
)}
ORDER = list(FRAMEWORKS)  # the reference first: every "a vs b" pair has a earlier than b
MODULES = ("runtime", "layout", "layers", "losses", "optimizers", "model", "train")


def installed(name):
    return importlib.util.find_spec(FRAMEWORKS[name].module) is not None


def version(name):
    """The installed version from package metadata (importing TensorFlow takes seconds)."""
    for dist in FRAMEWORKS[name].distributions:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def load(name):
    """Import the implementation: a namespace with runtime, layout, ..., train."""
    from types import SimpleNamespace
    package = FRAMEWORKS[name].package
    runtime = importlib.import_module(f"{package}.runtime")  # first: it configures the framework
    return SimpleNamespace(name=name, runtime=runtime, **{
        m: importlib.import_module(f"{package}.{m}") for m in MODULES if m != "runtime"})
