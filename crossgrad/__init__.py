"""crossgrad: one network, four implementations; do their gradients and curves agree?

The public Python API (the README's "Python API" documents it):

    crossgrad.check(specs)      loss and gradients in every framework, pair by pair -> CheckResult
    crossgrad.train(specs)      training curves in every framework -> TrainResult
    crossgrad.load(path)        a spec file -> Spec;  crossgrad.zoo(name) a built-in one
    crossgrad.compare(...)      your own loss function, written once per framework, compared
    crossgrad.layer(name)       class decorator: your own layer type for specs (a plugin)
    crossgrad.from_torch(...)   a PyTorch model of yours -> Spec (from_keras: a Keras one)
    crossgrad.InputError        bad input (a spec, an option, a model that does not map)
    crossgrad.testing           assert_gradients_agree, assert_spec_agrees for pytest

Everything else (crossgrad.harness, crossgrad.impls) is internal and may move between
versions. Importing crossgrad imports no framework: each name loads what it needs when
first used.
"""
import importlib
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("crossgrad")
except PackageNotFoundError:  # a checkout on sys.path, not installed
    __version__ = "0+unknown"

# public name -> the module that defines it (imported on first use)
_HOMES = {
    "check": "crossgrad.api", "train": "crossgrad.api", "load": "crossgrad.api",
    "zoo": "crossgrad.api", "compare": "crossgrad.functions",
    "Comparison": "crossgrad.functions", "CompareError": "crossgrad.functions",
    "layer": "crossgrad.harness.spec.plugins", "testing": None,
    "from_torch": "crossgrad.porting", "from_keras": "crossgrad.porting",
    "InputError": "crossgrad.harness.errors",
}
__all__ = ["__version__", *_HOMES]


def __getattr__(name):
    if name not in _HOMES:
        raise AttributeError(f"module 'crossgrad' has no attribute {name!r}")
    home = _HOMES[name]
    value = importlib.import_module(f"crossgrad.{name}") if home is None \
        else getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
