"""Plain-text tables for the terminal (and the markdown report)."""
import math

from ..compare.curves import CURVES
from ..compare.finite_diff import TOLERANCE as FD_TOLERANCE
from ..compare.pairwise import PAIRWISE
from ..registry import ORDER, short


def fmt(x):
    if x is None:
        return "-"
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return f"{x:.1e}" if isinstance(x, float) else str(x)


def render(header, rows):
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
             for r in [header, *rows]]
    return "\n".join(lines)


def check_table(models):
    """One row per model: status per framework, worst relative error per pair, worst FD."""
    fws = [fw for fw in ORDER if any(fw in m["frameworks"] for m in models)]
    pairs = [(a, b) for i, a in enumerate(fws) for b in fws[i + 1:]]
    header = ["model", "dtype", *[short(f) for f in fws],
              *[f"{short(a)}~{short(b)}" for a, b in pairs], "fin.diff", "result"]
    rows, notes = [], []
    for m in models:
        worst = {}
        for c in m["comparisons"]:
            key = (c["a"], c["b"])
            worst[key] = max(worst.get(key, 0.0), c["rel_err"])
        fd = [r["rel_err"] for r in m["finite_difference"] if r["status"] != "kink"]
        status = [m["frameworks"].get(f, {}).get("status", "-") for f in fws]
        rows.append([m["name"], m["dtype"], *status, *[fmt(worst.get(p)) for p in pairs],
                     fmt(max(fd)) if fd else "-", "PASS" if m["passed"] else "FAIL"])
        notes += _notes(m)
    return render(header, rows) + ("\n" + "\n".join(notes) if notes else "")


def _notes(m):
    notes = [f"  {m['name']} {m['dtype']}: {fw} {info['status']}: {info.get('error')}"
             for fw, info in m["frameworks"].items() if info["status"] != "ok"]
    bad = [c for c in m["comparisons"] if not c["passed"]]
    for c in sorted(bad, key=lambda c: -c["rel_err"])[:3]:
        notes.append(f"  {m['name']} {m['dtype']}: {c['a']} vs {c['b']} disagree on "
                     f"{c['param']}: rel err {fmt(c['rel_err'])}")
    for r in [r for r in m["finite_difference"] if r["status"] == "mismatch"][:3]:
        notes.append(f"  {m['name']}: finite differences disagree with {r['framework']} on "
                     f"{r['param']} ({r['direction']}): rel err {fmt(r['rel_err'])}")
    kinks = [r for r in m["finite_difference"] if r["status"] == "kink"]
    if kinks:
        notes.append(f"  {m['name']}: {len(kinks)} finite-difference probes cross a kink "
                     f"(loss not differentiable there), e.g. {kinks[0]['param']}")
    return notes


def check_footer(models):
    passed = sum(m["passed"] for m in models)
    return (f"{len(models)} checks: {passed} passed, {len(models) - passed} failed "
            f"(pairwise: float64 <= {PAIRWISE['float64']:g}, float32 <= {PAIRWISE['float32']:g}; "
            f"finite differences <= {FD_TOLERANCE:g})")


def train_table(models):
    """One row per model: final loss and worst curve difference per framework."""
    fws = [fw for fw in ORDER if any(fw in m["frameworks"] for m in models)]
    header = ["model", "dtype", "mode", "steps", *[f"{short(f)} final" for f in fws],
              *[f"{short(f)} vs ref" for f in fws[1:]], "result"]
    rows, notes = [], []
    for m in models:
        info = [m["frameworks"].get(f, {}) for f in fws]
        finals = [fmt(i.get("final_loss")) if i.get("status") == "ok"
                  else i.get("status", "-") for i in info]
        diffs = [fmt(i.get("max_rel_diff")) if i.get("status") == "ok" else "-"
                 for i in info[1:]]
        result = {True: "PASS", False: "FAIL", None: "shown"}[m["passed"]]
        if m["passed"] and any(i.get("branched_at") is not None for i in info):
            result = "PASS*"
        rows.append([m["name"], m["dtype"], m["mode"], m["steps"], *finals, *diffs, result])
        for fw, i in m["frameworks"].items():
            if i.get("status") not in ("ok",):
                notes.append(f"  {m['name']} {m['dtype']}: {fw} {i.get('status')}: {i.get('error')}")
            elif i.get("branched_at") is not None:
                notes.append(f"  {m['name']} {m['dtype']}: {fw} branched from {m['reference']} at "
                             f"step {i['branched_at']}: the float64 curves agree, and in one float32 "
                             f"step the difference jumped 100x (a ReLU/max flipped at its kink "
                             f"under rounding); compared up to there")
            elif i.get("diverged_at") is not None:
                notes.append(f"  {m['name']} {m['dtype']}: {fw} diverged (non-finite loss or "
                             f"gradient) at step {i['diverged_at']}")
            elif i.get("passed") is False:
                hint = (" (float32: with the float64 curves as a control, `crossgrad run` tells "
                        "a branch at a kink from a real disagreement)") if m["dtype"] == "float32" else ""
                notes.append(f"  {m['name']} {m['dtype']}: {fw} disagrees with {m['reference']}: "
                             f"max rel. difference {fmt(i['max_rel_diff'])}, beyond 1e-3 from step "
                             f"{i.get('parted_at')}{hint}")
            elif m["mode"] == "native" and i.get("parted_at") is not None:
                causes = "; ".join(i.get("native_defaults") or []) or "none known"
                notes.append(f"  {m['name']} {m['dtype']}: {fw} parts from {m['reference']} "
                             f"at step {i['parted_at']} (relative difference > 1e-3); "
                             f"defaults in play: {causes}")
    return render(header, rows) + ("\n" + "\n".join(notes) if notes else "")


def train_footer(models):
    judged = [m for m in models if m["passed"] is not None]
    passed = sum(bool(m["passed"]) for m in judged)
    native = len(models) - len(judged)
    parts = [f"{passed} of {len(judged)} aligned runs agree (curves: float64 <= "
             f"{CURVES['float64']:g}, float32 <= {CURVES['float32']:g} relative to the "
             "reference)"] if judged else []
    parts += [f"{native} native-defaults runs shown, not judged"] if native else []
    return f"{len(models)} trainings: " + "; ".join(parts)
