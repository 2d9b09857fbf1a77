"""`crossgrad import torch|keras`: a model of yours -> a spec TOML and its weights beside it.

    crossgrad import torch my_model.py:build [--weights state_dict.pt] --input-shape 1,28,28 \\
                           --loss softmax_cross_entropy [--data digits28] --out my_model.toml
    crossgrad import keras my_model.keras --loss softmax_cross_entropy --out my_model.toml

writes my_model.toml and my_model.params.npz (canonical names and layouts). Everything is
checked first (the model maps, the state_dict fits, the outputs may be written); then both
files are written whole and only then replace the previous pair together: if either fails
(a full disk), or Ctrl-C comes, the previous spec and weights stay as they were. An
existing spec is replaced only if an earlier `crossgrad import` wrote it and nobody
changed it or its weights since (its first line says who wrote it, its last line their
sha256), and an existing weights file only together with such a spec: nothing of yours
is overwritten.
"""
import argparse
import hashlib
import os
import shlex
from pathlib import Path

import numpy as np

from .errors import EXIT_OK, InputError
from .run.atomic import atomic_files
from .run.ownership import MARKER_LIMIT, claim_file
from .spec import LOSSES
from .spec.params_file import digest

HEADER = "# Imported from "
# the spec's last line: what a later import to the same --out checks before replacing both
STAMP = "# crossgrad import wrote this file; sha256 of the lines above, and of its weights: "


def shape_arg(text):
    try:
        shape = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 1,28,28, got {text!r}") from None
    if not shape or any(s < 1 for s in shape):
        raise argparse.ArgumentTypeError(f"expected positive sizes like 1,28,28, got {text!r}")
    return shape


def add_import_args(p):
    p.add_argument("framework", choices=("torch", "keras"), help="the model's framework")
    p.add_argument("model", help="torch: FILE.py:FACTORY (a function returning the nn.Module); "
                                 "keras: a .keras file")
    p.add_argument("--input-shape", type=shape_arg, metavar="N,N,...",
                   help="torch: one example's shape in the model's own layout (1,28,28 for "
                        "an NCHW image)")
    p.add_argument("--weights", metavar="STATE_DICT",
                   help="torch: a state_dict file for the module (default: its own weights)")
    p.add_argument("--loss", required=True, choices=LOSSES, help="the loss the spec trains")
    p.add_argument("--data", metavar="SOURCE",
                   help="a data source (default: random data of the input's shape)")
    p.add_argument("--out", required=True, metavar="SPEC.toml",
                   help="the spec to write; its weights go beside it as SPEC.params.npz")


def cmd_import(args):
    from .importers.build import import_keras, import_torch
    out, params = _claim(args.out)
    command = _command(args)
    if args.framework == "torch":
        if args.input_shape is None:
            raise InputError("--input-shape", None, "is required for a PyTorch model (one "
                                                    "example's shape, e.g. 1,28,28)")
        done = import_torch(args.model, args.input_shape, args.loss, weights=args.weights,
                            data=args.data, out=out, command=command)
    else:
        for flag, value in (("--input-shape", args.input_shape), ("--weights", args.weights)):
            if value is not None:
                raise InputError(flag, None, "is for PyTorch models; a .keras file holds its "
                                             "input shape and weights")
        done = import_keras(args.model, args.loss, data=args.data, out=out, command=command)
    # again before replacing: the user may have put a file there while the model imported
    with atomic_files((out, "w"), (params, "wb"), recheck=lambda: _claim(args.out)) as \
            (spec, weights):
        np.savez(weights, **done.arrays)
        spec.write(stamped(done.text, done.arrays))
    count = sum(int(np.prod(a.shape)) for a in done.arrays.values())
    print(f"wrote {args.out} ({len(done.spec.layers)} layers) and "
          f"{Path(args.out).with_name(params.name)} "
          f"({len(done.arrays)} tensors, {count:,} values); compare it: crossgrad check "
          f"{shlex.quote(args.out)}")
    return EXIT_OK


def _claim(out):
    """-> (the spec's path, the weights' path), or InputError if either is not ours to write."""
    if not str(out).endswith(".toml"):
        raise InputError("--out", out, "must name a .toml file (the spec)")
    target = claim_file(out, "--out", ours=_written_by_import,
                        whose="a spec written by crossgrad import")
    if not isinstance(target, Path):
        raise InputError("--out", out, "must name a regular file")
    params = target.with_name(target.name.removesuffix(".toml") + ".params.npz")
    if params.is_symlink():  # replacing it would drop the user's link, not write through it
        raise InputError(params, None, "is a link; the weights are written beside the spec "
                                       "as a file: remove the link or choose another --out")
    ours = target.exists() and _written_by_import(target)
    if params.exists() and not ours:
        raise InputError(params, None, "exists and its spec was not written by crossgrad "
                                       "import; move it or choose another --out")
    return target, params


def stamped(text, arrays):
    """The spec's text and a last line with its sha256 and that of its weights (names, shapes
    and values, as the spec hash takes a params file: the .npz's own bytes carry the time of
    writing)."""
    return f"{text}{STAMP}{hashlib.sha256(text.encode()).hexdigest()} {digest(arrays)}\n"


def _weights_as_written(params, sha):
    try:
        with np.load(params, allow_pickle=False) as npz:
            return digest({name: npz[name] for name in npz.files}) == sha
    except Exception:  # not an npz, a pickle, unreadable: not as crossgrad import wrote it
        return False


def _written_by_import(path):
    """Whether `path` is a spec crossgrad import wrote, as it wrote it, with its weights file
    beside it as written (or gone): the header, and the stamp of its last line. A spec edited
    since, or one without the stamp, is the user's."""
    try:
        if os.stat(path).st_size > MARKER_LIMIT:
            return False
        with open(path, "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return False
    body, _, last = text.rstrip("\n").rpartition("\n")
    if not text.startswith(HEADER) or not last.startswith(STAMP):
        return False
    spec_sha, _, params_sha = last[len(STAMP):].partition(" ")
    params = Path(path).with_name(Path(path).name.removesuffix(".toml") + ".params.npz")
    return (hashlib.sha256(f"{body}\n".encode()).hexdigest() == spec_sha
            and (not params.exists() or _weights_as_written(params, params_sha)))


def _command(args):
    words = ["crossgrad", "import", args.framework, args.model]
    for flag in ("input_shape", "weights", "loss", "data", "out"):
        value = getattr(args, flag)
        if value is not None:
            value = ",".join(map(str, value)) if isinstance(value, list) else value
            words += [f"--{flag.replace('_', '-')}", str(value)]
    return " ".join(shlex.quote(w) for w in words)
