"""crossgrad: one network, four implementations; do their gradients and curves agree?

The public Python API. Everything else (crossgrad.harness, crossgrad.impls) is internal
and may move between versions.
"""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("crossgrad")
except PackageNotFoundError:  # a checkout on sys.path, not installed
    __version__ = "0+unknown"
