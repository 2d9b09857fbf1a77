"""What an importer makes of a model: a chain of pieces, one per spec layer.

A `Piece` is one spec layer (its TOML keys), where it sits in the original model (a
module path or a Keras layer name, and the class), the layout its input and output take
there, and how its weights map to the canonical ones (`Link`s). The importers build the
chain from a model; the "original" participant builds the same chain from the model it
rebuilt, and uses it to hand the original its weights and dropout masks in its own
layouts and to read its gradients and layer values back in canonical ones.

Layouts of an activation in the original (batch axis first, not named here):
CANONICAL  what the spec says: images (H, W, C), features last;
NCHW       an image with its channels first (PyTorch, Keras channels_first);
("chw", C, H, W)  the features of such an image flattened in (C, H, W) order: the rows of
           the next dense layer are permuted to the canonical (H, W, C) order (an image
           of one pixel or one channel flattens to the same order both ways).
Everything here is NumPy: weights cross between the layouts as arrays.
"""
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import InputError

CANONICAL, NCHW = ("canonical",), ("nchw",)


class NotMapped(Exception):
    """A part of the model crossgrad cannot express; `where` is its path in the model."""

    def __init__(self, where, message):
        super().__init__(f"{where}: {message}")
        self.where, self.message = where, message

    def input_error(self, source):
        """Named by the source, then by where in it; a model given as an object is its own
        source ("model"), named once."""
        return InputError(source, None if self.where == source else self.where, self.message)


@dataclass
class Link:
    """One canonical tensor of a layer and the native tensors it comes from.

    `natives` are the names inside the original layer ("weight", "bias_ih_l0", "kernel");
    `canonical(values)` maps {native name: array} to the canonical array (also for
    gradients: every map is linear), `native(array)` maps back to {native name: array},
    or {(native name, start, stop): array} for rows of a tensor several links share."""
    natives: tuple
    canonical: Callable
    native: Callable


@dataclass
class Piece:
    table: dict                     # the spec layer's keys: {"type": "dense", "units": 10}
    where: str                      # "model.features.3", or a Keras layer's name
    kind: str                       # "nn.Linear", "keras.layers.Dense", "torch.relu"
    in_layout: tuple = CANONICAL
    out_layout: tuple = CANONICAL
    links: dict = field(default_factory=dict)   # canonical local name -> Link
    state: tuple = ()               # the local names among links that are state, not parameters
    layers: list = None             # a residual block's pieces
    notes: list = field(default_factory=list)   # what the import converted, for the spec's comments
    node: object = None             # the importer's handle on it (an fx node, a Keras layer)
    result: object = None           # where its output appears, if not `node` (rnn(x)[0][:, -1])
    shape: tuple = None             # its output per example, in the original's layout
    part: str = ""                  # Keras: "linear" or "activation", half of one layer


ANSI = re.compile(r"\x1b\[[0-9;]*m")  # a terminal's colour and bold codes (torch bolds words)


def first_sentence(err, limit=200):
    """"ValueError: its first sentence": a framework's error in one line. What follows the
    first sentence is advice (weights_only, safe_mode) that, cut at a length, reads as
    advice to run the file's code."""
    line = (ANSI.sub("", str(err)).strip().splitlines() or [""])[0]
    sentence = re.match(r"(.*?)(?:\.\s|\.?$)", line).group(1)[:limit]
    return ": ".join(filter(None, (type(err).__name__, sentence)))


def same(name):
    """A canonical tensor that is one native tensor as it is."""
    return Link((name,), lambda n: n[name], lambda a: {name: a})


def walk(pieces, prefix=""):
    """(canonical layer name, piece) of every piece, depth first, blocks before their layers."""
    for i, piece in enumerate(pieces):
        name = f"{prefix}{i}"
        yield name, piece
        if piece.layers:
            yield from walk(piece.layers, name + ".")


# ---- layouts -------------------------------------------------------------------------------------

def in_canonical_order(layout):
    """Whether values in `layout` are in the canonical order as they are: CANONICAL, or the
    (C, H, W) flattening of an image of one pixel or one channel (the 1x1 image a fully
    convolutional model ends in), where (C, H, W) and (H, W, C) order are the same."""
    if layout[0] == "chw":
        c, h, w = layout[1:]
        return c == 1 or h * w == 1
    return layout == CANONICAL


def to_canonical(value, layout):
    """An activation (B, ...) in the original's layout -> the canonical layout."""
    if layout == NCHW:
        return value.transpose(0, 2, 3, 1)                            # (B, C, H, W) -> (B, H, W, C)
    if layout[0] == "chw":
        c, h, w = layout[1:]
        return value.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(len(value), -1)
    return value


def to_native(value, layout):
    """An activation (B, ...) in the canonical layout -> the original's."""
    if layout == NCHW:
        return value.transpose(0, 3, 1, 2)                            # (B, H, W, C) -> (B, C, H, W)
    if layout[0] == "chw":
        c, h, w = layout[1:]
        return value.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(len(value), -1)
    return value


def rows_to_canonical(a, layout):
    """The leading axis of `a` indexes features in `layout` order -> in canonical order:
    (C*H*W, ...) in (C, H, W) order -> (H*W*C, ...) in (H, W, C) order."""
    if layout[0] != "chw":
        return a
    c, h, w = layout[1:]
    return a.reshape(c, h, w, *a.shape[1:]).transpose(1, 2, 0, *range(3, a.ndim + 2)) \
        .reshape(a.shape)


def rows_to_native(a, layout):
    """The inverse of rows_to_canonical."""
    if layout[0] != "chw":
        return a
    c, h, w = layout[1:]
    return a.reshape(h, w, c, *a.shape[1:]).transpose(2, 0, 1, *range(3, a.ndim + 2)) \
        .reshape(a.shape)


def per_feature(name, layout):
    """A per-feature vector (gamma, beta, running statistics) after an NCHW flatten."""
    return Link((name,), lambda n: rows_to_canonical(n[name], layout),
                lambda a: {name: rows_to_native(a, layout)})


def canonical_shape(shape, layout):
    """A per-example shape in `layout` -> in the canonical layout."""
    return (shape[1], shape[2], shape[0]) if layout == NCHW else tuple(shape)


def layout_note(layout):
    return (f"its input features come flattened in (C, H, W) = {tuple(layout[1:])} order; "
            "crossgrad's flatten is (H, W, C): rows permuted") if layout[0] == "chw" else ""


def canonical_weights(pieces, read):
    """{canonical name: array} of every link, `read(piece, native name)` giving native arrays."""
    out = {}
    for name, piece in walk(pieces):
        for local, link in piece.links.items():
            out[f"{name}.{local}"] = np.asarray(link.canonical(
                {n: read(piece, n) for n in link.natives}))
    return out
