"""One section per model: what it reproduces, its verdicts, where and why it disagrees, and
its plots (interactive panels in the HTML, a PNG for the markdown)."""
import math

import pandas as pd

from . import drawing, findings, panels, plots
from ..registry import REFERENCE, short
from .document import b, ref
from .tables import check_result, event, fmt, train_result, worst_lockstep

CURVE_COLUMNS = ["framework", "dtype", "step", "loss", "rel_diff"]


def key(name):
    """The heading key of a model's section: every table row links to it."""
    return f"model:{name}"


def link_to(name):
    return ref(name, key(name))


def unique(specs):
    seen, out = set(), []
    for s in specs:
        if s.name not in seen:
            seen.add(s.name)
            out.append(s)
    return out


def section(doc, spec, run):
    doc.h(3, spec.name, key=key(spec.name))
    if spec.reproduces or spec.description:
        doc.p(spec.reproduces or spec.description)
    if spec.original:  # crossgrad import: the model itself ran beside the four
        doc.p(f"Imported from {spec.original['file']} ({spec.original['framework']}): the "
              "original model runs beside the four as \"original\" (orig).")
    checks = [m for m in (run.check.models if run.check else []) if m["name"] == spec.name]
    shown = run.aligned or run.native   # native runs speak only where none are aligned
    trains = [m for m in (shown.models if shown else []) if m["name"] == spec.name]
    doc.bullets([_verdicts(m, trains) for m in checks] or
                [_train_verdict(m) for m in trains])
    for m in checks:
        _failing_pairs(doc, m, run.check.saved)
    parted = [p for p in findings.partings(run.native) if p["model"] == spec.name]
    if parted:
        doc.bullets([[b(f"{p['framework']} parts from {p['reference']} at step {p['step']}"),
                      " (native defaults), with: ", "; ".join(p["causes"])]
                     for p in parted])
    _figures(doc, spec.name, run, checks, parted)


def _verdicts(check, trains):
    """One line per dtype: the check's verdict and worst pair, then the aligned training's."""
    worst = findings.worst_by_pair(check)
    pair, err = max(worst.items(), key=lambda kv: (math.isnan(kv[1]), kv[1])) if worst \
        else ((None, None), None)  # a nan pair is the worst
    out = [b(check["dtype"]), ": gradients ", b(check_result(check))]
    if pair[0]:
        out.append(f" (worst pair {short(pair[0])}~{short(pair[1])}: {fmt(err)})")
    train = next((t for t in trains if t["dtype"] == check["dtype"]), None)
    return out + (["; "] + _train_verdict(train)[2:] if train else [])


def _train_verdict(train):
    worst = max((i.get("max_rel_diff") or 0.0 for i in train["frameworks"].values()
                 if i.get("status") == "ok"), default=None)
    verdict = train_result(train)
    events = [f"{fw} {e[0]} at step {e[1]}" for fw, i in train["frameworks"].items()
              if (e := event(train, i))]
    if events:
        verdict += f" ({', '.join(events)})"
    if train.get("diverged_at") is not None and train["passed"] is not False:
        verdict = f"DIVERGED (every framework at step {train['diverged_at']})"
    return [b(train["dtype"]), ": ", "training ", b(verdict),
            f" (worst curve difference {fmt(worst)}, lockstep {fmt(worst_lockstep(train))})"]


def _failing_pairs(doc, check, saved):
    if check.get("not_finite"):
        doc.p(b(f"{check['dtype']}: "), check["not_finite"], ".")
    for pair in findings.failing_pairs(check, saved):
        a, c = pair["pair"]
        doc.p(b(f"{check['dtype']}: {a} vs {c}"),
              f": {pair['failing']} of {pair['tensors']} tensors beyond "
              f"{pair['tolerance']:g}; losses {fmt(pair['losses'][0])} and "
              f"{fmt(pair['losses'][1])}.",
              *[[" Parts first at ", b(parting_text(p)), "."] for p in pair["first_parting"]])
        doc.table(["tensor", "kind", "rel. error", "max abs error", "cosine",
                   "where they differ most", f"{a} value", f"{c} value"],
                  [[w["param"], w["kind"], fmt(w["rel_err"]), fmt(w["max_abs_err"]),
                    _cosine(w.get("cosine")), _index(w.get("index")),
                    _value(w.get("a_value")), _value(w.get("b_value"))]
                   for w in pair["worst"]])


def parting_text(p):
    """'layer 3 (lstm), forward' from a first_parting entry."""
    if p.get("layer") is None:
        return f"the {p.get('direction')}"
    return f"layer {p['layer']} ({p.get('type')}), {p.get('direction')}"


def _cosine(c):
    return "-" if c is None else f"{c:.6f}"


def _index(index):
    return "-" if index is None else "(" + ", ".join(map(str, index)) + ")"


def _value(v):
    return "-" if v is None else f"{v:.10g}"


def _figures(doc, name, run, checks, parted):
    curves = run.tables.get("curves", pd.DataFrame())
    mine = curves[curves["model"] == name] if len(curves) else pd.DataFrame(columns=[
        "mode", *CURVE_COLUMNS])
    aligned, native = mine[mine["mode"] == "aligned"], mine[mine["mode"] == "native"]
    grads = run.tables.get("gradients", pd.DataFrame())
    grads = grads[grads["model"] == name] if len(grads) else grads
    reference = next((m["reference"] for m in (run.aligned.models if run.aligned else [])
                      if m["name"] == name), REFERENCE)
    norms = _norms(run.tables.get("grad_norms", pd.DataFrame()), name, reference)
    layers = [dict(r, dtype=m["dtype"]) for m in checks for r in findings.layer_rows(m)]
    if not len(aligned) and not len(native) and not len(grads):
        return
    figures = panels.model_panels(name, reference, aligned, native, norms, grads, parted, layers)
    doc.panels(name, [f for f, _ in figures], [c for _, c in figures])
    png = drawing.later(plots.model_figure, name, reference, aligned if len(aligned) else
                        pd.DataFrame(columns=CURVE_COLUMNS), native, norms, grads, parted)
    doc.img(name, png, how="link")
    if layers:
        # in a folder of its own: "<name>-layers" was also the figure of a model so named
        doc.img(f"layers/{name}", drawing.later(plots.layer_figure, name, layers), how="link")


def _norms(norms, name, reference):
    if not len(norms):
        return norms
    return norms[(norms["model"] == name) & (norms["mode"] == "aligned") &
                 (norms["dtype"] == "float64") & (norms["framework"] == reference)]
