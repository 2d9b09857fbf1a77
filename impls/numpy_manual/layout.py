"""Canonical layout -> NumPy layout: the canonical layout *is* NumPy's, so nothing moves.

The other three frameworks convert here (PyTorch transposes Linear weights, Keras
reorders GRU gates, ...); this file exists so that the four folders line up. A plugin
layer's parameters pass through, as everything does here.
"""

__all__ = ["to_native", "from_native", "activation_from_native"]


def to_native(layer, params):
    return dict(params)


def from_native(layer, native):
    return dict(native)


def activation_from_native(shape, value):
    """A layer's input or output (or its gradient): NumPy runs the canonical layouts."""
    return value
