"""Canonical layout -> NumPy layout: the canonical layout *is* NumPy's, so nothing moves.

The other three frameworks convert here (PyTorch transposes Linear weights, Keras
reorders GRU gates, ...); this file exists so that the four folders line up.
"""

__all__ = ["to_native", "from_native"]


def to_native(layer, params):
    return dict(params)


def from_native(layer, native):
    return dict(native)
