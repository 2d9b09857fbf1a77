"""Plain-text tables for the terminal (and the markdown report)."""
import math

from ..compare.curves import CURVES, PARTED
from ..compare.finite_diff import TOLERANCE as FD_TOLERANCE
from ..compare.hvp import EXACT as HVP_EXACT, hvp_notes, summary as hvp_summary
from ..compare.layers import odd_one, parting_line
from ..compare.precision import digits
from ..spec.precision import REDUCED
from ..compare import lockstep_control
from ..compare.lockstep import differs_text
from ..compare.pairwise import PAIRWISE, worst, worst_by_pair
from ..registry import PARTICIPANTS, REFERENCE, short
from . import findings


def fmt(x):
    if x is None:
        return "-"
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    if isinstance(x, float) and math.isinf(x):  # with its sign: "inf -> -inf" is a change
        return "inf" if x > 0 else "-inf"
    return f"{x:.1e}" if isinstance(x, float) else str(x)


def render(header, rows):
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
             for r in [header, *rows]]
    return "\n".join(lines)


def check_table(models):
    """One row per model: status per framework, worst relative error per pair, worst FD."""
    fws = [fw for fw in PARTICIPANTS if any(fw in m["frameworks"] for m in models)]
    pairs = [(a, b) for i, a in enumerate(fws) for b in fws[i + 1:]]
    second = any("hvp" in m for m in models)  # check --order 2 ran
    header = ["model", "dtype", *[short(f) for f in fws],
              *[f"{short(a)}~{short(b)}" for a, b in pairs], "fin.diff",
              *(["hvp", "hvp~fd"] if second else []), "result"]
    rows, notes = [], []
    for m in models:
        by_pair = worst_by_pair(m["comparisons"])
        fd = [r["rel_err"] for r in m["finite_difference"] if r["status"] != "kink"]
        status = [_status(m["frameworks"].get(f, {})) for f in fws]
        rows.append([m["name"], m["dtype"], *status, *[fmt(by_pair.get(p)) for p in pairs],
                     fmt(worst(fd)),
                     *(map(fmt, hvp_summary(m.get("hvp", []))) if second else []),
                     check_result(m)])
        notes += _notes(m) + hvp_notes(m)
    return render(header, rows) + ("\n" + "\n".join(notes) if notes else "")


def check_result(m):
    """PASS, PASS* (rows beyond the tolerance, each within rounding's level against the
    control one format wider: compare/control.py, or against float64 in reduced precision:
    compare/precision.py; or a framework branched at a kink there), FAIL, UNCHECKED (nothing
    disagreed, but nothing was compared either: results.unchecked says why) or NOT FINITE
    (the loss is nan or inf in every framework: results.not_finite)."""
    if m.get("not_finite"):
        return "NOT FINITE"
    if m.get("unchecked"):
        return "UNCHECKED"
    return ("PASS*" if starred(m) else "PASS") if m["passed"] else "FAIL"


def starred(m):
    """Whether a check passed by rounding's reach (amplified) or a branch at a kink."""
    return bool(m.get("amplified") or any("branched_at" in info
                                           for info in m["frameworks"].values()))


def _status(info):
    """"loss" for a framework whose loss was checked but not its gradients."""
    return "loss" if info.get("gradients") == "skipped" else info.get("status", "-")


def _loss_use(fw, donors, ran):
    """What a framework without gradients still does: its loss probed for another's
    gradients, or compared with the others' losses (none where it ran alone)."""
    if fw in donors:
        return f"; finite differences of its loss check {donors[fw]}'s gradients"
    return "; its loss is compared" if len(ran) > 1 else ""


def _notes(m):
    notes = [f"  {m['name']} {m['dtype']}: {fw} {info['status']}: {info.get('error')}"
             for fw, info in m["frameworks"].items() if info["status"] != "ok"]
    if m.get("unchecked"):
        notes.append(f"  {m['name']} {m['dtype']}: {m['unchecked']}")
    if m.get("not_finite"):  # every pair and probe "disagrees" on nan: nothing more to say
        return notes + [f"  {m['name']} {m['dtype']}: {m['not_finite']}"]
    donors = {r["framework"]: r["gradient_from"] for r in m["finite_difference"]
              if "gradient_from" in r}
    ran = [fw for fw, info in m["frameworks"].items() if info["status"] == "ok"]
    notes += [f"  {m['name']} {m['dtype']}: {fw} gradients skipped ({info['gradients_reason']})"
              + _loss_use(fw, donors, ran) for fw, info in m["frameworks"].items()
              if info.get("gradients") == "skipped"]
    bad = [c for c in m["comparisons"] if not c["passed"]]
    for c in sorted(bad, key=lambda c: -c["rel_err"])[:3]:
        notes.append(f"  {m['name']} {m['dtype']}: {c['a']} vs {c['b']} disagree on "
                     f"{c['param']}: rel err {fmt(c['rel_err'])}"
                     + (f"; {c['note']}" if "control" in c else ""))
    notes += [f"  {m['name']} {m['dtype']}: {line}" for line in control_lines(m)]
    partings = m.get("first_parting", [])
    notes += [f"  {m['name']} {m['dtype']}: {parting_line(p, odd_one(partings))}"
              for p in partings]
    for r in [r for r in m["finite_difference"] if r["status"] == "mismatch"][:3]:
        notes.append(f"  {m['name']}: finite differences disagree with {_judged(r)} on "
                     f"{r['param']} ({r['direction']}): rel err {fmt(r['rel_err'])}"
                     + (f"; {r['note']}" if "note" in r else ""))
    if sampled(m):
        notes.append(f"  {m['name']}: {sampled(m)}")
    kinks = [r for r in m["finite_difference"] if r["status"] == "kink"]
    if kinks:
        notes.append(f"  {m['name']}: {len(kinks)} finite-difference "
                     f"{'probe crosses' if len(kinks) == 1 else 'probes cross'} a kink "
                     f"(loss not differentiable there), e.g. {kinks[0]['param']}"
                     + _kinks_unchecked(m))
    return notes


def _kinks_unchecked(m):
    """At a kink finite differences judge no gradient (compare/finite_diff.py); where only
    one framework's gradients ran, nothing else does either."""
    own = [fw for fw, info in m["frameworks"].items()
           if info["status"] == "ok" and info.get("gradients") != "skipped"]
    if len(own) > 1:
        return ""
    return (f"; there {own[0] if own else 'no framework'}'s gradient is the only one, and "
            f"nothing checks it")


def _judged(row):
    """Whose gradient a finite-difference row judged: the framework's own, or the one it
    borrowed (a framework without gradients probes its loss against another's)."""
    if "gradient_from" not in row:
        return row["framework"]
    return f"{row['gradient_from']}'s gradient (probed on {row['framework']}'s loss)"


def control_lines(m):
    """What the control one format wider said (compare/control.py): why a model is PASS*,
    or why there was none."""
    control = m.get("control") or {}
    if control.get("status") == "failed":
        return [f"no control in a wider format: {control['error']}"]
    if not m.get("amplified"):
        return []
    pairs = [c for c in m["comparisons"] if c.get("status") == "amplified"]
    if pairs:
        worst = max(pairs, key=lambda c: c["rel_err"])
        return [f"PASS*: {m['amplified']}; e.g. {worst['a']} vs {worst['b']} on "
                f"{worst['param']}: rel err {fmt(worst['rel_err'])}, {worst['note']}"]
    worst = max((r for r in m.get("precision", []) if r["status"] == "amplified"),
                key=lambda r: r["rel_err"])  # against float64 (compare/precision.py)
    return [f"PASS*: {m['amplified']}; e.g. {worst['framework']} on {worst['param']}: rel err "
            f"{fmt(worst['rel_err'])} against float64, {worst['note']}"]


def sampled(m):
    """A line when the finite-difference budget left tensors unprobed, else ''."""
    cover = m.get("fd_tensors")
    if not cover or not cover["probed"] or cover["probed"] >= cover["total"]:
        return ""  # none probed: the lines on what failed or was skipped say why
    return (f"finite differences probed {cover['probed']} of {cover['total']} parameter tensors "
            f"(the budget is 64 probes; a sample drawn from the seed; every tensor is still "
            f"compared pairwise)")


def check_footer(models):
    idle = sum(bool(m.get("unchecked")) for m in models)
    undefined = sum(bool(m.get("not_finite")) for m in models)
    passed = sum(m["passed"] for m in models) - idle  # an unchecked model passed: it shows so
    stars = sum(bool(m["passed"] and starred(m)) for m in models)
    counts = (f"{len(models)} checks: {passed} passed"
              + (f" ({stars} PASS*: rounding amplified, against a wider format, or a branch "
                 f"at a kink)" if stars else "")
              + f", {len(models) - passed - idle - undefined} failed"
              + (f", {idle} unchecked" if idle else "")
              + (f", {undefined} with a loss not finite" if undefined else ""))
    return (f"{counts} (pairwise: float64 <= {PAIRWISE['float64']:g}, float32 <= {PAIRWISE['float32']:g}; "
            f"finite differences <= {FD_TOLERANCE:g}"
            + (f"; H v: exact pairs <= {HVP_EXACT:g}, against gradient differences <= "
               f"{FD_TOLERANCE:g}" if any("hvp" in m for m in models) else "")
            + ("; bfloat16, float16: per model, 2x the tolerance against float64 below"
               if any(m["dtype"] in REDUCED for m in models) else "") + ")")


def train_table(models):
    """One row per model: final loss and worst curve difference per framework, and the worst
    lockstep error over the frameworks."""
    fws = [fw for fw in PARTICIPANTS if any(fw in m["frameworks"] for m in models)]
    header = ["model", "dtype", "mode", "steps", *[f"{short(f)} final" for f in fws],
              *[f"{short(f)} vs ref" for f in fws[1:]], "lockstep", "result"]
    rows, notes = [], []
    for m in models:
        info = [m["frameworks"].get(f, {}) for f in fws]
        finals = [fmt(i.get("final_loss")) if i.get("status") == "ok"
                  else i.get("status", "-") for i in info]
        diffs = [fmt(i.get("max_rel_diff")) if i.get("status") == "ok" else "-"
                 for i in info[1:]]
        rows.append([m["name"], m["dtype"], m["mode"], m["steps"], *finals, *diffs,
                     fmt(worst_lockstep(m)), train_result(m)])
        if m.get("diverged_at") is not None:
            notes.append(f"  {m['name']} {m['dtype']}: {diverged_line(m)}")
        if m.get("unchecked"):
            notes.append(f"  {m['name']} {m['dtype']}: {m['unchecked']}")
        notes += [f"  {m['name']} {m['dtype']}: {line}" for fw, i in m["frameworks"].items()
                  if (line := train_event(m, fw, i))]
    return render(header, rows) + ("\n" + "\n".join(notes) if notes else "")


def event(m, i):
    """(what, step) of a framework's run, for a compact cell, or None: the same step the
    sentence of train_event names. what: "lockstep" (FAIL: where lockstep parts),
    "branched", "amplified", "rounding in lockstep" (PASS*: lockstep parts only within
    rounding's reach one format wider), "beyond" (FAIL without lockstep: where the curve
    leaves its tolerance), "parts" (native: beyond PARTED)."""
    if m["mode"] == "aligned" and i.get("lockstep_parted_at") is not None:
        return ("rounding in lockstep" if i.get("lockstep_amplified") else "lockstep",
                i["lockstep_parted_at"])
    for what, key in (("branched", "branched_at"), ("amplified", "amplified_at")):
        if i.get(key) is not None:
            return what, i[key]
    if i.get("passed") is False and i.get("exceeded_at") is not None:
        return "beyond", i["exceeded_at"]
    if m["mode"] == "native" and i.get("parted_at") is not None:
        return "parts", i["parted_at"]
    return None


def worst_lockstep(m):
    """The worst lockstep error of a model's frameworks, or None where none ran."""
    errs = [i["lockstep_max_rel_err"] for i in m["frameworks"].values()
            if i.get("lockstep_max_rel_err") is not None]
    return max(errs) if errs else None


def train_event(m, fw, i):
    """What happened to one framework's run, in one sentence (or None: nothing to say), with
    the step of its event: the same words and number in the terminal and the report, and
    the same step in the JSON (branched_at, amplified_at, lockstep_parted_at, exceeded_at,
    parted_at)."""
    ref, tol = m["reference"], CURVES[m["dtype"]]
    if i.get("status") != "ok":
        return f"{fw} {i.get('status')}: {i.get('error')}"
    if i.get("lockstep_parted_at") is not None and m["mode"] == "aligned":
        return lockstep_line(fw, i, tol)
    if i.get("branched_at") is not None:
        backing = (f"lockstep agrees at every step (worst {fmt(i['lockstep_max_rel_err'])})"
                   if "lockstep_max_rel_err" in i else "the float64 curves agree")
        return (f"{fw} branched from {ref} at step {i['branched_at']}: {backing}, and in one "
                f"float32 step the difference jumped 100x (a ReLU/max flipped at its kink "
                f"under rounding); compared up to there")
    if i.get("verdict") == "PASS*" and "amplified_at" in i:
        return amplified_line(fw, i, m["dtype"])
    if i.get("diverged_at") is not None and m.get("diverged_at") is None:
        return f"{fw} diverged (non-finite loss or gradient norm) at step {i['diverged_at']}"
    if i.get("passed") is False:
        hint = (" (float32: with the float64 curves as a control, `crossgrad run` tells "
                "a branch at a kink from a real disagreement)"
                if m["dtype"] == "float32" and "lockstep_max_rel_err" not in i else "")
        where = (f"beyond {tol:g} from step {i['exceeded_at']}" if i.get("exceeded_at")
                 is not None else "and the runs stop at different steps")
        return (f"{fw} disagrees with {ref}: max rel. difference {fmt(i['max_rel_diff'])}, "
                f"{where}{hint}")
    if m["mode"] == "native" and i.get("parted_at") is not None and i.get("native_amplified"):
        return (f"{fw} parts from {ref} at step {i['parted_at']} (relative difference > "
                f"{PARTED:g}), while in lockstep every step agrees up to there: rounding "
                f"amplified by the dynamics, not a framework default")
    if m["mode"] == "native" and i.get("parted_at") is not None:
        causes = ", ".join(f"{a['pitfall']} {fmt(a['effect'])}" for a in
                           i.get("native_ablation", []) if a["confirmed"]) \
            or ("none named: its aligned run fails too" if i.get("native_aligned_fails")
                else findings.no_cause(i))
        locked = (f"; in lockstep from step {i['lockstep_parted_at']} "
                  f"({differs_text(i['lockstep_differs'])})"
                  if i.get("lockstep_parted_at") is not None else "")
        return (f"{fw} parts from {ref} at step {i['parted_at']} (relative difference > "
                f"{PARTED:g}){locked}; causes (each framework default alone, largest "
                f"relative difference by then): {causes}")
    return None


def lockstep_line(fw, i, tol):
    """An aligned run whose lockstep left its tolerance: FAIL, or PASS* where the control one
    format wider puts every failing entry within rounding's reach (lockstep_control.py)."""
    parts = f"in lockstep it leaves {REFERENCE}'s step at step {i['lockstep_parted_at']}: " \
            f"{differs_text(i['lockstep_differs'])}"
    controlled = lockstep_control.line(i)
    if i.get("lockstep_amplified"):
        return f"{fw} PASS*: {parts}; {controlled}"
    return (f"{fw} FAIL: {parts}; beyond one step's rounding: a formula that differs, or an "
            f"ill-conditioned operation that turns last-bit differences into this (such as "
            f"1 - tanh^2 of a saturated unit)" + (
                f" (the curves stay within {tol:g}, worst {fmt(i['max_rel_diff'])}: their "
                f"tolerance hides it)" if i.get("exceeded_at") is None else "")
            + (f"; {controlled}" if controlled else ""))


def amplified_line(fw, i, dtype):
    """PASS* amplified: lockstep agrees, and the curve difference grew from rounding level."""
    growth = i.get("growth_per_step")
    grew = f"grew x{growth:.1f} per step" if growth is not None else "grew"
    past = (f", past {CURVES[dtype]:g} at step {i['exceeded_at']}"
            if i.get("exceeded_at") is not None else "")
    return (f"{fw} amplified at step {i['amplified_at']}: in lockstep every one of its "
            f"{i['lockstep_steps']} steps agrees with {REFERENCE}'s (worst "
            f"{fmt(i['lockstep_max_rel_err'])} <= {PAIRWISE[dtype]:g}), and the curve "
            f"difference left rounding level at step {i['amplified_at']} and {grew}{past} "
            f"(max {fmt(i['max_rel_diff'])}): the dynamics amplify rounding, the arithmetic agrees")


def train_result(m):
    """PASS, PASS* (a float32 branch at a kink, or rounding amplified by the dynamics, while
    lockstep agrees), FAIL, shown (native defaults, not judged), DIVERGED (every framework
    stopped at the same non-finite step, agreeing up to it, NumPy alone too) or UNCHECKED
    (nothing compared: results.untrained_against)."""
    if m.get("diverged_at") is not None and m["passed"] is not False:
        return "DIVERGED"
    if m.get("unchecked"):
        return "UNCHECKED"
    if m["passed"] and any(i.get("verdict") == "PASS*" for i in m["frameworks"].values()):
        return "PASS*"
    return {True: "PASS", False: "FAIL", None: "shown"}[m["passed"]]


def diverged_line(m):
    """The note for a model whose every framework diverged at the same step."""
    agree = ("the run FAILs before it (the lines above say where)" if m["passed"] is False else
             "they agree up to there" if m["passed"] else "their curves are shown up to there")
    return (f"every framework diverged (non-finite loss or gradient norm) at step "
            f"{m['diverged_at']}; {agree}, and nothing after it is compared")


def train_footer(models):
    judged = [m for m in models if m["passed"] is not None and not m.get("unchecked")]
    passed = sum(bool(m["passed"]) for m in judged)
    idle = sum(bool(m.get("unchecked")) for m in models)
    native = sum(m["passed"] is None for m in models)
    starred = sum(train_result(m) == "PASS*" for m in judged)
    parts = [f"{passed} of {len(judged)} aligned runs agree (curves: float64 <= "
             f"{CURVES['float64']:g}, float32 <= {CURVES['float32']:g} relative to the "
             f"reference; lockstep: float64 <= {PAIRWISE['float64']:g}, float32 <= "
             f"{PAIRWISE['float32']:g} at every step)"
             + (f", {starred} of them PASS* ({_starred_why(judged)})"
                if starred else "")] if judged else []
    parts += [f"{native} native-defaults runs shown, not judged"] if native else []
    parts += [f"{idle} unchecked (one framework ran, with nothing to compare)"] if idle else []
    diverged = sum(train_result(m) == "DIVERGED" for m in models)  # not a FAIL that diverged
    parts += [f"{diverged} diverged in every framework alike (DIVERGED)"] if diverged else []
    return f"{len(models)} trainings: " + "; ".join(parts)


def _starred_why(models):
    """What the footer's PASS* stand for: curves beyond tolerance with lockstep within, and
    (where the lockstep control excused a run) lockstep beyond only within rounding's reach."""
    why = "curves beyond tolerance, lockstep within"
    if any(i.get("lockstep_amplified") for m in models for i in m["frameworks"].values()):
        why += ("; or lockstep beyond only within rounding's reach of arithmetic one format "
                "wider")
    return why


def precision_table(models):
    """One row per model compared with float64 (reduced precision, or float32 with
    --matmul-precision): each framework's correct digits (the worst of its loss, gradients
    and state), the tolerance in digits, and the verdict."""
    compared = [m for m in models if "precision" in m]
    fws = [fw for fw in PARTICIPANTS if any(fw in m["frameworks"] for m in compared)]
    header = ["model", "dtype", "matmul", *[f"{short(f)} digits" for f in fws], "tolerance",
              "result"]
    rows, notes = [], []
    for m in compared:
        tol = m["tolerance"]["versus_float64"]
        cells = [_digits(m["frameworks"].get(f, {})) for f in fws]
        rows.append([m["name"], m["dtype"], m["matmul_precision"], *cells,
                     f"{digits(tol):.1f} ({tol:.0e})", check_result(m)])
        notes += precision_notes(m)
    return (render(header, rows) + ("\n" + "\n".join(notes) if notes else "")
            + "\n" + "digits: -log10(max |x - float64| / max |float64|), the worst tensor; the "
            "reference is NumPy in float64 on the same rounded weights and data")


def _digits(info):
    d = info.get("digits")
    if info.get("status") != "ok" or d is None:
        return info.get("status", "-")
    return "exact" if d == math.inf else f"{d:.1f}"


def precision_notes(m):
    """Which tensor and which layer lose the digits, for every framework beyond tolerance."""
    head = f"  {m['name']} {m['dtype']}:"
    if m["reference"].get("error") or m["reference"]["status"] != "ok":
        return [f"{head} no float64 reference: {m['reference'].get('error')}"]
    notes = []
    small = m.get("below_normal") or {}
    if small:
        name = next(iter(small))
        notes.append(f"{head} {len(small)} gradients lie below {m['dtype']}'s smallest normal "
                     f"number (the first, {name}, at most {fmt(small[name])}): the format holds "
                     "them with fewer digits, or as 0")
    for fw in PARTICIPANTS:
        at = m["frameworks"].get(fw, {}).get("branched_at")
        if at:
            notes.append(f"{head} {fw} branched at layer {at['layer']} ({at['type']}): every "
                         "output agrees with float64, and the first dL/dx beyond tolerance is "
                         "there (an input rounded across a ReLU's or a max's kink); the "
                         "gradients below it are compared up to there only")
        bad = sorted((r for r in m["precision"] if r["framework"] == fw and not r["passed"]),
                     key=lambda r: -r["rel_err"])
        if not bad:
            continue
        worst = bad[0]
        notes.append(f"{head} {fw} beyond tolerance on {len(bad)} tensors, worst {worst['param']}: "
                     f"rel err {fmt(worst['rel_err'])} ({worst['digits']:.1f} digits)"
                     + _where(m, fw, worst["tolerance"])
                     + (f"; {worst['note']}" if worst.get("note") else ""))
    return notes


def _where(m, fw, tol):
    """'; first beyond it: layer 3 (dense) output' from the per-layer rows, if any is."""
    rows = [r for r in m.get("precision_layers", []) if r["framework"] == fw]
    first = next((("output", r) for r in rows if not r["forward_rel_err"] <= tol), None) or \
        next((("dL/dx", r) for r in reversed(rows)
              if r["backward_rel_err"] is not None and not r["backward_rel_err"] <= tol), None)
    if first is None:
        return ""
    what, r = first
    err = r["forward_rel_err"] if what == "output" else r["backward_rel_err"]
    return f"; first beyond it: layer {r['layer']} ({r['type']}) {what}, rel err {fmt(err)}"
