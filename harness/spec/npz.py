"""Reading an .npz archive as hostile input: headers first, plain arrays only.

An .npz is a zip of .npy members. Each member's header is read and checked against the
bytes actually stored before any body is read, object arrays (pickles) are refused, and
no read asks for more than a header declares plus one byte. Used by the MNIST reader
(spec/mnist.py) and the `params` file reader (spec/params_file.py).
"""
import math
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from numpy.lib import format as npy

from ..errors import InputError
from .files import open_regular


CHUNK = 1 << 24  # bytes inflated per read: one read of a member's body holds it twice


@dataclass
class Member:
    """One .npy member of an .npz, from its header: what reading it will allocate."""
    name: str
    shape: tuple
    fortran: bool
    dtype: np.dtype
    header_bytes: int
    data_bytes: int


@contextmanager
def open_npz(path, expected, npy_hint):
    """-> the open ZipFile of the .npz at `path`; a lone .npy is refused with `npy_hint`
    (what to write instead), anything else that is not a zip with one line."""
    with open_regular(path, expected) as f:
        try:
            magic = f.read(6)
        except OSError as err:
            raise InputError(path, None, f"cannot read: {err}") from None
        if magic == b"\x93NUMPY":
            raise InputError(path, None, f"is a .npy file (one array); {npy_hint}")
        f.seek(0)
        try:
            zf = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
            raise InputError(path, None, f"not an .npz file ({err})") from None
        with zf:
            yield zf


def npy_header(zf, path, name):
    try:
        with zf.open(name) as m:
            major, _ = npy.read_magic(m)
            read = npy.read_array_header_1_0 if major == 1 else npy.read_array_header_2_0
            shape, fortran, dtype = read(m)
            header_bytes = m.tell()
    except (ValueError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
        raise InputError(path, name, f"not a readable .npy member: {err}") from None
    if dtype.hasobject:
        raise InputError(path, name, "holds Python objects (pickled data); crossgrad reads "
                                     "plain numeric arrays only")
    if not shape:
        raise InputError(path, name, "is a scalar, expected an array")
    declared, stored = math.prod(shape) * dtype.itemsize, zf.getinfo(name).file_size - header_bytes
    if declared != stored:
        raise InputError(path, name, f"header declares {shape} of {dtype} = {declared} bytes, "
                                     f"the member holds {stored}")
    return Member(name, shape, fortran, dtype, header_bytes, declared)


def read_member(zf, path, member):
    """The member's array; reads at most what its header declared plus one byte, into the
    array itself a chunk at a time (one read of a deflated member holds it twice)."""
    body = np.empty(member.data_bytes, np.uint8)
    filled, view = 0, memoryview(body)
    try:
        with zf.open(member.name) as m:
            m.read(member.header_bytes)
            while filled < member.data_bytes:
                chunk = m.read(min(CHUNK, member.data_bytes - filled))
                if not chunk:
                    break
                view[filled:filled + len(chunk)] = chunk
                filled += len(chunk)
            filled += len(m.read(1))
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
        raise InputError(path, member.name, f"corrupt: {err}") from None
    if filled != member.data_bytes:
        raise InputError(path, member.name, f"holds {filled} bytes of data, its header "
                                            f"declares {member.data_bytes}")
    return body.view(member.dtype).reshape(member.shape, order="F" if member.fortran else "C")
