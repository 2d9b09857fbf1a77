"""`params = "x.params.npz"`: a spec's initial weights from a file instead of initializers.

The file is an .npz of canonical names ("0.W", "3.running_var") to arrays in canonical
layouts (what `crossgrad import` writes, or what `check --save` writes as params.npz). It
is read as hostile input like a data file: headers first (spec/npz.py's reader: plain
arrays only, never unpickled, sizes checked against the stored bytes), every name and
shape checked against the spec's layers before any body is read. Every parameter must be
there, finite; state (BatchNorm running statistics) may be, else it starts at its
initial value; nothing else may. The first mismatch is one InputError naming the file
and the entry. The spec hash covers the values (`digest`).
"""
import hashlib

import numpy as np

from ..errors import InputError
from .files import kind_of
from .npz import npy_header, open_npz, read_member

EXPECTED = "an .npz file of canonical parameter names"


def resolve(value, spec_file):
    """The path a spec's `params` names, relative to the spec's folder."""
    from pathlib import Path
    path = Path(value)
    return path if path.is_absolute() else Path(spec_file).parent / path


def read_params(path, spec_file, params, state):
    """-> {canonical name: float64 array}: every name of `params`, and those of `state`
    the file holds. params/state: {name: {"shape": [...]}}, as Spec.param_specs()."""
    kind, _ = kind_of(path, spec_file, "params")
    if kind != "file":
        raise InputError(spec_file, "params", f"{path} is {kind}, expected {EXPECTED}")
    with open_npz(path, EXPECTED, "expected an .npz of canonical names: "
                                  "np.savez(path, **{'0.W': w, ...})") as zf:
        members = {n.removesuffix(".npy"): n for n in zf.namelist()}
        headers = _check_names(path, members, zf, params, state)
        return {name: _values(path, name, read_member(zf, path, member))
                for name, member in headers.items()}


def _check_names(path, members, zf, params, state):
    """Headers only: the first missing, extra or misshapen entry is the error."""
    missing = [n for n in params if n not in members]
    if missing:
        raise InputError(path, missing[0], f"missing: the spec's layers have this parameter "
                                           f"(shape {tuple(params[missing[0]]['shape'])})")
    extra = [n for n in members if n not in params and n not in state]
    if extra:
        raise InputError(path, extra[0], "extra: no layer of the spec has this parameter or "
                                         "state")
    headers = {}
    for name, member in members.items():
        header = npy_header(zf, path, member)
        want = tuple((params.get(name) or state[name])["shape"])
        if tuple(header.shape) != want:
            raise InputError(path, name, f"has shape {tuple(header.shape)}, the spec's layer "
                                         f"needs {want}")
        if header.dtype.kind != "f":
            raise InputError(path, name, f"is {header.dtype}, expected floating-point values")
        headers[name] = header
    return headers


def _values(path, name, array):
    if not np.all(np.isfinite(array)):
        raise InputError(path, name, "holds non-finite values (nan or inf)")
    return array.astype(np.float64)


def digest(arrays):
    """sha256 over the names, shapes and values: what the spec hash takes of the file."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name], np.float64)
        h.update(f"{name}{a.shape}".encode() + a.tobytes())
    return h.hexdigest()
