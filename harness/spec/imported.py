"""The keys `crossgrad import` adds to a spec: `params` (any spec may use it),
`params_sha256` and `[original]`.

    params = "my_model.params.npz"     # initial weights from a file (spec/params_file.py)
    params_sha256 = "…"                # what the file held when the spec was written

    [original]                         # the model the spec was imported from
    framework = "torch"                # torch | keras
    file = "my_model.py"               # relative to the spec's folder
    factory = "build"                  # torch: the function returning the nn.Module
    sha256 = "…"                       # the file's content at the import
    helpers = [{ file = "blocks.py", sha256 = "…" }]   # torch: the modules of your own
                                       # the file imported (from under its folder)

`check` and `train` run that model too, as the participant "original"; a model file (or a
helper) that disappeared or changed since the import leaves it out with one warning line
(harness/importers/original.py says why; the spec's own layers are still checked).
"""
import re

from .params_file import digest, read_params, resolve

FRAMEWORKS = ("torch", "keras")
SHA256 = re.compile(r"[0-9a-f]{64}")


def parse_params(top, param_specs, state_specs):
    """The `params` key -> {canonical name: float64 array}, or None without it. With
    `params_sha256` (params_file.digest of the arrays: their names, shapes and values, not
    the file's bytes), the file must hold those weights: a spec and a weights file written
    together by `crossgrad import` and then parted (one replaced, or an import killed
    between its two renames) is an error, not another model's weights trained silently."""
    value, expected = top.str("params"), top.str("params_sha256")
    if expected is not None and not SHA256.fullmatch(expected):
        raise top.error("params_sha256", "must be 64 lowercase hexadecimal digits")
    if value is None:
        if expected is not None:
            raise top.error("params_sha256", "without `params`: no weights file to check")
        return None
    arrays = read_params(resolve(value, top.file), top.file, param_specs, state_specs)
    if expected is not None and digest(arrays) != expected:
        raise top.error("params_sha256", f"{value} holds other weights than this spec was "
                                         "written with (their digest differs): import the "
                                         "model again, or delete params_sha256 to start from "
                                         "the file as it is")
    return arrays


def parse_original(top):
    """The `[original]` table -> {"framework", "file", "path" (absolute), "factory",
    "sha256", "helpers" (each {"file", "path", "sha256"}; none in a spec imported before
    they were recorded)}, or None. No file is opened here: a missing one is a warning later."""
    t = top.table("original")
    if t is None:
        return None
    framework = t.str("framework", required=True, choices=FRAMEWORKS)
    file = t.str("file", required=True)
    factory = t.str("factory", required=framework == "torch")
    if framework == "keras" and factory is not None:
        raise t.error("factory", "a Keras model is loaded from its .keras file; no factory")
    if factory is not None and not factory.isidentifier():
        raise t.error("factory", f"must be a function's name, got {factory!r}")
    sha256 = _sha256(t)
    helpers = [_helper(h, top.file) for h in t.tables("helpers")]
    if helpers and framework == "keras":
        raise t.error("helpers", "a Keras model is its .keras file alone; no helpers")
    t.finish()
    return {"framework": framework, "file": file, "path": str(resolve(file, top.file).resolve()),
            "factory": factory, "sha256": sha256, "helpers": helpers}


def _helper(t, spec_file):
    """One entry of `helpers`: a module of the user's own the model file imports."""
    file = t.str("file", required=True)
    sha256 = _sha256(t)
    t.finish()
    return {"file": file, "path": str(resolve(file, spec_file).resolve()), "sha256": sha256}


def _sha256(t):
    sha256 = t.str("sha256", required=True)
    if not SHA256.fullmatch(sha256):
        raise t.error("sha256", "must be 64 lowercase hexadecimal digits (the file's sha256)")
    return sha256
