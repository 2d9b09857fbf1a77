"""MNIST from the user's files: IDX (optionally gzipped) or .npz, read as hostile input.

Sizes come from the headers first and are checked before any body is read, and no
read asks for more than a header declares plus one byte: a gzip bomb is refused after
inflating what its header promised, not inflated whole. `.npz` members are read as
plain arrays (never unpickled). Labels must be integers 0-9 and pixels within 0-255.
The whole files are checked, but only the examples the spec uses are converted to float64,
so memory follows `data.examples` as the estimate does. `mnist_sizes` reads the headers
only, for that estimate (spec/sizes.py).
"""
import gzip
import hashlib
import math
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import InputError
from .files import kind_of, open_regular, regular_file
from .npz import npy_header, open_npz, read_member

IDX_NAMES = {"images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
             "labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte")}
IMAGE = (28, 28)
NPZ_KEYS = (("x", "y"), ("x_train", "y_train"))
EXPECTED = "an .npz file or a folder with the IDX files"
# a data set of none has no batch to take and no gradient to compare
NO_EXAMPLES = "a data set needs at least one example"


def resolve(path, spec_file):
    """`data.path` relative to the spec's folder; -> (Path, "file" | "folder")."""
    p = Path(path)
    if not p.is_absolute() and spec_file and Path(spec_file).exists():
        p = Path(spec_file).parent / p
    kind, _ = kind_of(p, spec_file, "data.path")
    if kind not in ("file", "a folder"):
        raise InputError(spec_file, "data.path", f"{p} is {kind}, expected {EXPECTED}")
    return p, "folder" if kind == "a folder" else "file"


def load_mnist(path, spec_file, examples=None):
    """-> x (n, 28, 28) float64 in [0, 1], y (n,) int64: the first `examples` of the files'
    N examples (all of them if None), the rows `data.examples` selects."""
    p, kind = resolve(path, spec_file)
    if kind == "folder":
        images, labels = (_find_idx(p, k, spec_file) for k in ("images", "labels"))
        _same_count(images, labels)
        x, y = read_idx(images, 3), read_idx(labels, 1)
        check_pair(x, y, (images, None), (labels, None))
    else:
        x, y = read_npz(p)
        check_pair(x, y, (p, "x"), (p, "y"))
    if examples is not None and examples > len(x):  # silently fewer would train on other data
        raise InputError(spec_file or path, "data.examples",
                         f"{path} has {len(x)} examples; {examples} asked")
    # sliced as stored, before converting: memory follows `examples`, as the estimate
    # does, and not the file (a float64 copy of N uint8 images is 8 times its size)
    x, y = x[:examples], y[:examples]
    return x.reshape(len(x), *IMAGE).astype(np.float64) / 255.0, y.astype(np.int64)


def mnist_sizes(path, spec_file):
    """-> (examples, bytes of the arrays as stored) that the files declare, from their
    headers alone: what loading them will allocate before any conversion."""
    p, kind = resolve(path, spec_file)
    if kind == "folder":
        images, labels = (_find_idx(p, k, spec_file) for k in ("images", "labels"))
        n = _same_count(images, labels)
        return n, n * (math.prod(IMAGE) + 1)
    with _npz(p) as (_, (x, y)):
        return x.shape[0], x.data_bytes + y.data_bytes


def mnist_digest(path, spec_file):
    """sha256 of the data the files hold: the .npz's two members, or each IDX file of the
    folder ({"images", "labels"}), as they read once inflated. The spec hash takes it: the
    same `data.path` may hold other data on another day or beside another spec. The
    container is not hashed (a gzip or zip header records when it was written, so the same
    data written twice would read as other data). Read in blocks, never whole, and never
    more than a header declares plus one byte."""
    p, kind = resolve(path, spec_file)
    if kind == "folder":
        return {k: _idx_sha256(_find_idx(p, k, spec_file), rank)
                for k, rank in (("images", 3), ("labels", 1))}
    digest = hashlib.sha256()
    with _npz(p) as (zf, members):
        for m in members:
            digest.update(f"{m.name}\0".encode())
            try:
                with zf.open(m.name) as f:
                    _hash_blocks(digest, p, f, m.header_bytes + m.data_bytes + 1)
            except zipfile.BadZipFile as err:
                raise InputError(p, m.name, f"corrupt: {err}") from None
    return digest.hexdigest()


def _idx_sha256(path, rank):
    digest = hashlib.sha256()
    with _open_idx(path) as f:
        dims = _read_header(f, path, rank)
        digest.update(_header_bytes(dims, rank))
        _hash_blocks(digest, path, f, math.prod(dims) + 1)
    return digest.hexdigest()


def _header_bytes(dims, rank):
    return b"\x00\x00\x08" + bytes([rank]) + b"".join(d.to_bytes(4, "big") for d in dims)


def _hash_blocks(digest, path, f, limit):
    """Feed `digest` up to `limit` bytes of `f`, a block at a time."""
    while limit > 0:
        block = _guarded(path, lambda: f.read(min(1 << 20, limit)))
        if not block:
            return
        digest.update(block)
        limit -= len(block)


def check_pair(x, y, images, labels):
    """Shapes, dtypes and ranges of a loaded pair, every example of it. `images` and
    `labels` are the (file, field) that their errors name: the .npz and its member, or
    each IDX file. Allocates nothing the size of the images."""
    if x.shape[1:] not in ((784,), IMAGE, (*IMAGE, 1)) or y.ndim != 1 or len(x) != len(y):
        raise InputError(images[0], None, f"expected N images of 28x28 and N labels, "
                                          f"got images {x.shape} and labels {y.shape}")
    if x.dtype.kind not in "iuf":
        raise InputError(*images, f"pixels must be numbers, got dtype {x.dtype}")
    if x.size:
        low, high = x.min(), x.max()  # a NaN makes both NaN, an infinity one end infinite
        if not (np.isfinite(low) and np.isfinite(high)):
            raise InputError(*images, "pixels must be finite, found NaN or infinity")
        if low < 0 or high > 255:
            raise InputError(*images, f"pixels must be within 0-255, found {low}..{high}")
    if y.dtype.kind not in "iuf":
        raise InputError(*labels, f"labels must be integers 0-9, got dtype {y.dtype}")
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if len(bad):
            raise InputError(*labels, f"labels must be integers 0-9, found {y[bad[0]]} "
                                      f"(example {bad[0]})")
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise InputError(*labels, f"labels must be digits 0-9, found {y.min()}..{y.max()}")


# ---- IDX (LeCun's format): magic 0x0000 08 <rank>, big-endian sizes, unsigned bytes -----------

def _find_idx(folder, kind, spec_file):
    for stem in IDX_NAMES[kind]:
        for name in (stem, stem + ".gz"):
            if (folder / name).exists() or (folder / name).is_symlink():
                return folder / name
    raise InputError(spec_file, "data.path", f"{folder} has no {IDX_NAMES[kind][0]}[.gz]")


def _same_count(images, labels):
    """Both headers, checked against each other before any body is read; -> N."""
    n_images, *hw = idx_header(images, 3)
    (n_labels,) = idx_header(labels, 1)
    if tuple(hw) != IMAGE:
        raise InputError(images, "byte 8", f"images are {hw[0]}x{hw[1]}, expected 28x28")
    if n_images != n_labels:
        raise InputError(labels, "byte 4", f"declares {n_labels} labels for {n_images} images "
                                           f"(in {images.name})")
    if not n_images:
        raise InputError(images, "byte 4", f"declares 0 images; {NO_EXAMPLES}")
    return n_images


def idx_header(path, rank):
    """The sizes an IDX file declares (reads its first 4 + 4 * rank bytes only)."""
    with _open_idx(path) as f:
        return _read_header(f, path, rank)


def read_idx(path, rank):
    """An IDX file's array; never reads more than the header declares plus one byte."""
    with _open_idx(path) as f:
        dims = _read_header(f, path, rank)
        declared, start = math.prod(dims), 4 + 4 * rank
        if path.suffix != ".gz":  # the size on disk says it before reading
            body_size = regular_file(path) - start
            if body_size != declared:
                raise InputError(path, f"byte {start}", f"header says {dims} = {declared} "
                                 f"bytes of data, the file has {body_size}")
        body = _guarded(path, lambda: f.read(declared + 1))
    if len(body) != declared:
        more = "more than that" if len(body) > declared else len(body)
        raise InputError(path, f"byte {start}", f"header says {dims} = {declared} bytes of "
                         f"data, the file has {more}")
    return np.frombuffer(body, np.uint8).reshape(dims)


@contextmanager
def _open_idx(path):
    with open_regular(path, "an IDX file") as f:
        if path.suffix != ".gz":
            yield f
            return
        with gzip.GzipFile(fileobj=f, mode="rb") as z:  # closing it leaves f open
            yield z


def _read_header(f, path, rank):
    head = _guarded(path, lambda: f.read(4 + 4 * rank))
    if len(head) < 4 + 4 * rank or head[:3] != b"\x00\x00\x08" or head[3] != rank:
        raise InputError(path, "byte 0", f"not an IDX file of rank {rank} "
                                         f"(magic {head[:4].hex() or 'missing'})")
    return [int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big") for i in range(rank)]


def _guarded(path, read):
    """Run a read; gzip, zlib and end-of-file problems become one line naming the file."""
    try:
        return read()
    except gzip.BadGzipFile as err:
        raise InputError(path, None, f"not a valid gzip file: {err}") from None
    except zlib.error as err:
        raise InputError(path, None, f"corrupt compressed data: {err}") from None
    except EOFError:
        raise InputError(path, None, "compressed data ends early (truncated file)") from None
    except OSError as err:
        raise InputError(path, None, f"cannot read: {err}") from None


# ---- .npz: images x and labels y (spec/npz.py reads the archive) ------------------------------

def read_npz(path):
    """-> (x, y) from members x/y or x_train/y_train."""
    with _npz(path) as (zf, members):
        return tuple(read_member(zf, path, m) for m in members)


@contextmanager
def _npz(path):
    """-> (open ZipFile, [Member x, Member y]), every header checked, no body read."""
    with open_npz(path, EXPECTED, "crossgrad needs images and labels together: "
                                  "np.savez(path, x=images, y=labels)") as zf:
        names = set(zf.namelist())
        pair = next(((x, y) for x, y in NPZ_KEYS
                     if f"{x}.npy" in names and f"{y}.npy" in names), None)
        if pair is None:
            keys = ", ".join(sorted(n.removesuffix(".npy") for n in names)) or "none"
            raise InputError(path, None, f"needs arrays x and y (or x_train and y_train), "
                                         f"has {keys}")
        members = [npy_header(zf, path, f"{name}.npy") for name in pair]
        if not members[0].shape[0]:
            raise InputError(path, pair[0], f"has shape {members[0].shape}, 0 examples; "
                                                 f"{NO_EXAMPLES}")
        yield zf, members
