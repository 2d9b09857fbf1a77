"""What the report says: its blocks (headings, paragraphs, tables, one figure per model)."""
import html

import pandas as pd

from . import plots
from ..compare.curves import CURVES
from ..compare.finite_diff import TOLERANCE as FD_TOLERANCE
from ..compare.pairwise import PAIRWISE
from ..registry import FRAMEWORKS, ORDER, REFERENCE
from .document import Doc
from .tables import fmt

HOW_TO_READ = (
    f"Every model was run by {len(ORDER)} implementations from the same initial weights, data, "
    "batch order and dropout masks, drawn once from the seed. <b>Gradient check</b>: the "
    "loss and every parameter's gradient on the first batch, compared pair by pair as "
    "max|a - b| / max|a| (the error relative to the tensor's largest entry) and, in "
    "float64, against finite differences. <b>Training</b>: the loss before each update, "
    f"relative to the reference implementation ({FRAMEWORKS[REFERENCE].label}). <b>Native defaults</b>: each "
    "framework's optimizer and loss as a practitioner would first write them, with the "
    "framework's own defaults; there the curves are expected to part, and the step where "
    "they do is shown. Tolerances: float64 gradients within "
    f"{PAIRWISE['float64']:g}, float32 within {PAIRWISE['float32']:g}, finite differences "
    f"within {FD_TOLERANCE:g}; curves within {CURVES['float64']:g} (float64) and "
    f"{CURVES['float32']:g} (float32).")


def build_doc(specs, check, aligned, native, manifest, tables):
    doc = Doc()
    doc.h(1, "crossgrad report")
    if manifest:
        v = manifest["versions"]
        doc.p(f"Run {manifest['started']} to {manifest['finished']} on "
              f"{manifest['cpu'].get('model', manifest['cpu']['machine'])}, "
              f"{manifest['threads']['threads']} thread(s) per worker. Python {v['python']}, "
              + ", ".join(f"{fw} {v.get(fw) or 'not installed'}" for fw in ORDER) + ". "
              f"Command: <code>{html.escape(' '.join(manifest['command']))}</code>.")
    doc.h(2, "At a glance")
    for line in _glance(check, aligned, native):
        doc.p(line)
    doc.h(2, "How to read this")
    doc.p(HOW_TO_READ)
    if check:
        doc.h(2, "Gradient check")
        doc.table(*_check_rows(check))
    if aligned:
        doc.h(2, "Training, aligned")
        doc.table(*_train_rows(aligned))
        if any(i.get("branched_at") is not None for m in aligned.models
               for i in m["frameworks"].values()):
            doc.p(BRANCH_NOTE)
    if native:
        doc.h(2, "Training, native defaults")
        doc.p("Same data and initial weights; each framework's own optimizer and loss "
              "defaults for everything the spec does not set. <i>parts at</i> is the first step "
              "where the loss differs from the reference by more than 1e-3 (relative).")
        doc.table(*_train_rows(native))
        doc.p("Where each framework's own defaults differ from the canonical math, for what "
              "each model uses (the framework defaults in play):")
        doc.table(*_native_causes(native))
    doc.h(2, "Models")
    for spec in _unique(specs):
        _model_section(doc, spec, check, aligned, native, tables)
    doc.h(2, "Reproduce")
    doc.p("Rerun with the command above at the git commit in <code>manifest.json</code>; "
          "the same machine, versions and thread count give the same bits. "
          "<code>crossgrad diff</code> compares two report folders.")
    return doc


def _glance(check, aligned, native):
    lines = []
    if check:
        ok = sum(m["passed"] for m in check.models)
        lines.append(f"<b>Gradient check</b>: {ok} of {len(check.models)} model/dtype "
                     "combinations agree in every framework pair" +
                     ("." if ok == len(check.models) else ": see FAIL rows below."))
    if aligned:
        judged = [m for m in aligned.models if m["passed"] is not None]
        ok = sum(bool(m["passed"]) for m in judged)
        lines.append(f"<b>Training (aligned)</b>: {ok} of {len(judged)} curves agree with "
                     "the reference within tolerance over every step.")
    if native:
        parted = [(m["name"], fw, i["parted_at"]) for m in native.models
                  for fw, i in m["frameworks"].items() if i.get("parted_at") is not None]
        lines.append(f"<b>Native defaults</b>: {len(parted)} framework curves part from the "
                     "reference by more than 1e-3" + (": " + ", ".join(
                         f"{fw} on {name} at step {step}" for name, fw, step in parted[:12])
                         + ("..." if len(parted) > 12 else "") if parted else "."))
    problems = [f"{m['name']} {m['dtype']}: {fw} {i['status']} ({i.get('error')})"
                for r in (check, aligned, native) if r for m in r.models
                for fw, i in m["frameworks"].items() if i["status"] == "failed"]
    if problems:
        lines.append("<b>Failed frameworks</b>: " + "; ".join(html.escape(p) for p in problems))
    return lines


def _check_rows(check):
    summary = check.summary
    pairs = [c for c in summary.columns if "~" in c]
    header = ["model", "dtype", *[fw for fw in ORDER if fw in summary.columns], *pairs,
              "fin. diff.", "kinks", "result"]
    rows = [[r["model"], r["dtype"], *[r[fw] for fw in ORDER if fw in summary.columns],
             *[fmt(r.get(p)) for p in pairs], fmt(r["fd_worst"]), r["kinks"],
             "PASS" if r["passed"] else "FAIL"] for _, r in summary.iterrows()]
    return header, rows


def _train_rows(train):
    fws = [fw for fw in ORDER if any(fw in m["frameworks"] for m in train.models)]
    header = ["model", "dtype", "steps", *[f"{fw} final loss" for fw in fws],
              *[f"{fw} max rel. diff" for fw in fws[1:]], "parts at", "result"]
    rows = []
    for m in train.models:
        info = [m["frameworks"].get(fw, {}) for fw in fws]
        parted = sorted({f"{fw}@{i['parted_at']}" + (" (branch)" if i.get("branched_at")
                                                        is not None else "")
                         for fw, i in zip(fws, info) if i.get("parted_at") is not None})
        rows.append([m["name"], m["dtype"], m["steps"],
                     *[fmt(i.get("final_loss")) if i.get("status") == "ok"
                       else i.get("status", "-") for i in info],
                     *[fmt(i.get("max_rel_diff")) if i.get("status") == "ok" else "-"
                       for i in info[1:]],
                     ", ".join(parted) or "-",
                     "PASS*" if m["passed"] and any(i.get("branched_at") is not None
                                                    for i in info)
                     else {True: "PASS", False: "FAIL", None: "shown"}[m["passed"]]])
    return header, rows


BRANCH_NOTE = (
    "PASS* = a float32 curve branched: it agreed with the reference, then in one step "
    "jumped away by 100x or more while the float64 curves of the same model agree to "
    "rounding. A ReLU (or max) whose input sat within float32 rounding of its kink went the "
    "other way in one framework; from there the runs follow different, equally valid "
    "trajectories. The arithmetic agrees; the trajectory is not stable under rounding.")


def _native_causes(native):
    header = ["model", "framework", "parts at", "max rel. diff", "defaults in play"]
    rows = [[m["name"], fw, i.get("parted_at") if i.get("parted_at") is not None else "-",
             fmt(i.get("max_rel_diff")), "; ".join(i.get("native_defaults") or []) or "-"]
            for m in native.models for fw, i in m["frameworks"].items()
            if i.get("status") == "ok" and i.get("native_defaults")]
    return header, rows


def _model_section(doc, spec, check, aligned, native, tables):
    doc.h(3, spec.name)
    if spec.reproduces or spec.description:
        doc.p(html.escape(spec.reproduces or spec.description))
    curves = tables["curves"]
    mine = curves[(curves["model"] == spec.name)] if len(curves) else curves
    aligned_curves = mine[mine["mode"] == "aligned"] if len(mine) else None
    native_curves = mine[mine["mode"] == "native"] if len(mine) else None
    norms = tables["grad_norms"]
    ref = next((m["reference"] for m in (aligned.models if aligned else [])
                if m["name"] == spec.name), REFERENCE)
    if len(norms):
        norms = norms[(norms["model"] == spec.name) & (norms["mode"] == "aligned") &
                      (norms["dtype"] == "float64") & (norms["framework"] == ref)]
    grads = tables["gradients"]
    if len(grads):
        grads = grads[(grads["model"] == spec.name) & (grads["dtype"] == "float64")]
    if aligned_curves is None or not len(aligned_curves):
        if not len(grads):
            return
    png = plots.model_figure(spec.name, ref, aligned_curves if aligned_curves is not None
                             else pd.DataFrame(columns=["framework", "dtype", "step", "loss",
                                                        "rel_diff"]),
                             native_curves, norms, grads)
    doc.img(spec.name, png)


def _unique(specs):
    seen, out = set(), []
    for s in specs:
        if s.name not in seen:
            seen.add(s.name)
            out.append(s)
    return out
