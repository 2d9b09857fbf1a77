"""`crossgrad import torch|keras`: a model of yours -> a spec TOML and its weights beside it.

    crossgrad import torch my_model.py:build [--weights state_dict.pt] --input-shape 1,28,28 \\
                           --loss softmax_cross_entropy [--data digits28] --out my_model.toml
    crossgrad import keras my_model.keras --loss softmax_cross_entropy --out my_model.toml

writes my_model.toml and my_model.params.npz (canonical names and layouts). Everything is
checked first (the model maps, the state_dict fits, the outputs may be written); then both
files are written whole and only then replace the previous pair together: if either fails
(a full disk), or Ctrl-C comes, the previous spec and weights stay as they were. An
existing spec is replaced only if an earlier `crossgrad import` wrote it and nobody
changed it or its weights since (its first line says who wrote it, its last line the
sha256 of its text and of its weights file's bytes), and an existing weights file only
together with such a spec: nothing of yours is overwritten.
"""
import argparse
import hashlib
import os
import shlex
from pathlib import Path

import numpy as np

from .errors import EXIT_OK, InputError
from .importers.build import params_name, spec_base
from .run.atomic import atomic_files
from .run.ownership import MARKER_LIMIT, claim_file
from .spec import LOSSES

HEADER = "# Imported from "
# the spec's last line: what a later import to the same --out checks before replacing both.
# The weights file's own bytes, not only its arrays: bytes added to it (the arrays
# unchanged) are not crossgrad's to overwrite
STAMP = "# crossgrad import wrote this file; sha256 of the lines above, and of its weights file: "
# an earlier import's stamp: the digest of the weights' arrays, which cannot tell whether the
# file holds anything else
EARLIER_STAMP = ("# crossgrad import wrote this file; sha256 of the lines above, and of its "
                 "weights: ")
AGAIN = "; move it or choose another --out"


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
    with atomic_files((out, "w"), (params, "w+b"), recheck=lambda: _claim(args.out)) as \
            (spec, weights):
        np.savez(weights, **done.arrays)
        weights.flush()
        weights.seek(0)  # its bytes as written (an .npz carries the time of writing)
        spec.write(stamped(done.text, hashlib.file_digest(weights, "sha256").hexdigest()))
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
    spec_base(out)  # a name before .toml
    target = claim_file(out, "--out", ours=lambda target: _ours(target, out))
    if not isinstance(target, Path):
        raise InputError("--out", out, "must name a regular file")
    params = target.with_name(params_name(target))
    if params.is_symlink():  # replacing it would drop the user's link, not write through it
        raise InputError(params, None, "is a link; the weights are written beside the spec "
                                       "as a file: remove the link or choose another --out")
    # a spec there was claimed above, its weights with it (_ours); an empty one claims nothing
    if params.exists() and not (target.exists() and os.stat(target).st_size):
        raise InputError(params, None, "exists and its spec was not written by crossgrad "
                                       f"import{AGAIN}")
    return target, params


def stamped(text, weights_sha):
    """The spec's text and a last line with its sha256 and that of its weights file's bytes."""
    return f"{text}{STAMP}{hashlib.sha256(text.encode()).hexdigest()} {weights_sha}\n"


def _ours(path, given):
    """claim_file's test of an existing spec (`given`: --out, as the messages name it): True,
    or the InputError saying which of the two files is not as crossgrad import wrote it."""
    refusal = _refusal(path, given)
    if refusal is not None:
        raise refusal
    return True


def _refusal(path, given):
    """None if `path` is a spec crossgrad import wrote, as it wrote it, with its weights file
    beside it as written (or gone): the header, and the stamp of its last line. Else the
    InputError naming the file that is the user's now: the spec, as `given` (not an import's,
    or edited since, even in a comment), or its weights (changed since, a byte added too)."""
    text = _text(path)
    body, _, last = (text or "").rstrip("\n").rpartition("\n")
    stamp = next((s for s in (STAMP, EARLIER_STAMP) if last.startswith(s)), None)
    if text is None or not text.startswith(HEADER) or stamp is None:
        return InputError(given, None, "exists and is not a spec written by crossgrad "
                                       f"import{AGAIN}")
    spec_sha, _, weights_sha = last[len(stamp):].partition(" ")
    if hashlib.sha256(f"{body}\n".encode()).hexdigest() != spec_sha:
        return InputError(given, None, "was written by crossgrad import but changed since (its "
                                       f"sha256 is no longer the one its last line records)"
                                       f"{AGAIN}")
    params = Path(path).with_name(params_name(path))
    if not params.exists():
        return None
    if stamp == EARLIER_STAMP:
        return InputError(params, None, "was written by an earlier crossgrad import, whose "
                                        "stamp has no sha256 of the file's bytes: crossgrad "
                                        f"cannot tell it is unchanged{AGAIN}")
    if _sha256(params) != weights_sha:
        return InputError(params, None, "was written by crossgrad import but changed since (its "
                                        f"sha256 is no longer the one {Path(path).name}'s last "
                                        f"line records){AGAIN}")
    return None


def _text(path):
    """The spec's text, or None: unreadable, or too large to be one import wrote."""
    try:
        if os.stat(path).st_size > MARKER_LIMIT:
            return None
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return None


def _sha256(path):
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:  # unreadable (a folder, no permission): not as crossgrad import wrote it
        return None


def _command(args):
    words = ["crossgrad", "import", args.framework, args.model]
    for flag in ("input_shape", "weights", "loss", "data", "out"):
        value = getattr(args, flag)
        if value is not None:
            value = ",".join(map(str, value)) if isinstance(value, list) else value
            words += [f"--{flag.replace('_', '-')}", str(value)]
    return " ".join(shlex.quote(w) for w in words)
