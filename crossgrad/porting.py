"""from_torch, from_keras: a model of yours -> a Spec, its weights with it (nothing written).

    spec = crossgrad.from_torch(net, (1, 28, 28), loss="softmax_cross_entropy")
    crossgrad.check(spec)           # the four implementations, from the model's own weights

    spec = crossgrad.from_torch("my_model.py:build", (1, 28, 28), loss="mse")
    crossgrad.check(spec)           # ... and the model itself, as the participant "original"

A model given as an object has no file a worker could rebuild it from: its spec checks
the four. Given as a file ("FILE.py:FACTORY", or a .keras file), the spec also runs the
model itself, as `crossgrad import` writes it. Bad input raises `crossgrad.InputError`,
naming the module path that does not map.
"""
from .harness.importers.build import import_keras, import_torch

__all__ = ["from_torch", "from_keras"]


def from_torch(model, input_shape, *, loss, data=None, weights=None):
    """An nn.Module, or "FILE.py:FACTORY" (a function returning one) -> Spec.

    `input_shape`: one example's shape in the model's own layout ((C, H, W) for an NCHW
    image); `loss`: a spec loss type; `data`: a data source (default: random data of that
    shape); `weights`: a state_dict file to load into the module first."""
    # the shape as given: the import checks it (an int, a string, a negative size: one line)
    return import_torch(model, input_shape, loss, weights=weights, data=data,
                        shape_flag="input_shape").spec


def from_keras(model, *, loss, data=None):
    """A keras.Model, or a .keras file -> Spec (the input shape is the model's own)."""
    return import_keras(model, loss, data=data).spec
