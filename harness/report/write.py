"""The report folder: manifest.json, results.json, CSV tables, plots/, report.md, report.html."""
import json

from ..run.atomic import atomic_dir
from ..run.outputs import plain
from .drawing import png_bytes, rendering


def write_report(folder, specs, check=None, aligned=None, native=None, manifest=None,
                 mistakes=None):
    """Write the whole folder atomically: complete, or the previous one stays."""
    from .content import build_doc  # here: its figures import matplotlib, which takes seconds
    tables = _frames(check, aligned, native)
    with rendering():  # the figures are drawn in other processes while the rest is built
        _write(folder, build_doc(specs, check, aligned, native, manifest, tables, mistakes),
               check, aligned, native, manifest, tables, mistakes)


def _write(folder, doc, check, aligned, native, manifest, tables, mistakes):
    with atomic_dir(folder, "report", "--out") as tmp:
        (tmp / "manifest.json").write_text(json.dumps(plain(manifest), indent=1) + "\n")
        results = {"check": check.to_json() if check else None,
                   "train": aligned.to_json() if aligned else None,
                   "native": native.to_json() if native else None}
        if mistakes is not None:  # run --mistakes
            results["mistakes"] = mistakes
        (tmp / "results.json").write_text(json.dumps(plain(results), indent=1) + "\n")
        for name, frame in tables.items():
            # full precision where `crossgrad diff` compares values; norms are for reading
            frame.to_csv(tmp / f"{name}.csv", index=False,
                         float_format="%.6g" if name == "grad_norms" else None)
        (tmp / "plots").mkdir()
        for kind, *b in doc.blocks:
            if kind == "img":  # b[0]: a model's name, or layers/<name> (its per-layer figure)
                (tmp / "plots" / f"{b[0]}.png").parent.mkdir(exist_ok=True)
                (tmp / "plots" / f"{b[0]}.png").write_bytes(png_bytes(b[1]))
        (tmp / "report.md").write_text(doc.markdown())
        (tmp / "report.html").write_text(doc.html("crossgrad report"))


def _frames(check, aligned, native):
    import pandas as pd  # here: not for every command's start, which imports this module
    trains = [t for t in (aligned, native) if t is not None]
    frames = {
        "checks": check.summary if check else pd.DataFrame(),
        "gradients": check.comparisons if check else pd.DataFrame(),
        "finite_differences": check.finite_difference if check else pd.DataFrame(),
        "curves": pd.concat([t.curves for t in trains]) if trains else pd.DataFrame(),
        "grad_norms": pd.concat([t.grad_norms for t in trains]) if trains else pd.DataFrame(),
        "training": pd.concat([t.summary for t in trains]) if trains else pd.DataFrame(),
    }
    return frames
