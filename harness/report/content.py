"""What the report says: a list of sections, each a function that adds blocks to the Doc.

The first screen answers "do they agree, where not, and why"; the contents follow, then
one table per kind of result (each row linked to its model's section), the speed of each
framework, a section per model (models.py), the files of the folder and how to rerun.
A new section is one function `(doc, run)` added to SECTIONS.
"""
import statistics
from dataclasses import dataclass

from . import findings, models
from . import mistakes as gallery
from ..compare.curves import CURVES, PARTED
from ..compare.finite_diff import TOLERANCE as FD_TOLERANCE
from ..compare.lockstep import differs_text
from ..compare.pairwise import PAIRWISE, worst
from ..registry import FRAMEWORKS, ORDER, PARTICIPANTS, REFERENCE, short
from .document import Doc, b, code, link, ref
from .tables import (check_result, diverged_line, event, fmt, sampled, train_event,
                     train_result, worst_lockstep)


@dataclass
class Run:
    """Everything a section may read."""
    specs: list
    check: object       # CheckResult or None
    aligned: object     # TrainResult or None
    native: object      # TrainResult (native defaults) or None
    manifest: dict
    tables: dict        # name -> DataFrame, written as <name>.csv
    mistakes: list = None  # the mistakes gallery's entries (run --mistakes), or None


def build_doc(specs, check, aligned, native, manifest, tables, mistakes=None):
    run = Run(models.unique(specs), check, aligned, native, manifest or {}, tables, mistakes)
    doc = Doc()
    for section in SECTIONS:
        section(doc, run)
    return doc


# ---- the first screen ----------------------------------------------------------------------

def title(doc, run):
    doc.h(1, "crossgrad report")
    names = [fw for fw in PARTICIPANTS if fw in _frameworks(run)]
    doc.p(f"{len(run.specs)} model(s) run by {', '.join(names) or 'no framework'} from the same "
          "initial weights, data, batch order and dropout masks. ",
          ref("How the run was made", "run"), ".")


def glance(doc, run):
    doc.h(2, "At a glance")
    items = [_glance_check(run.check), _glance_aligned(run.aligned), *_glance_failed(run)]
    doc.bullets([i for i in items if i])
    parted = findings.partings(run.native)
    if parted:
        doc.p(b("Where they part, and why"), f": {len(parted)} native-defaults curve(s) leave "
              "the reference, each with its causes: the framework defaults in play that, "
              "switched on alone on the model (everything else aligned), move its curve "
              "beyond the aligned tolerance by that step, largest first (the command "
              "crossgrad pitfalls proves each one on a minimal spec).")
        doc.table(["model", "framework", "parts at step", "why (each default alone: effect)"],
                  [[models.link_to(p["model"]), p["framework"], p["step"],
                    "; ".join(p["causes"])] for p in parted])
    elif run.native:
        doc.p(b("Native defaults"), ": no curve parts from the reference by more than "
              f"{PARTED:g}.")


def _glance_check(check):
    if not check:
        return None
    judged = [m for m in check.models if not m.get("unchecked")]  # UNCHECKED passed, idle
    ok = [m for m in judged if m["passed"]]
    worst_of = {d: worst(e for m in check.models if m["dtype"] == d
                         for e in findings.worst_by_pair(m).values()) for d in PAIRWISE}
    fd = [r["rel_err"] for m in check.models if not m.get("not_finite")  # nan there, said below
          for r in m["finite_difference"] if r["status"] != "kink"]
    out = [b("Do the gradients agree?"), " Yes" if len(ok) == len(judged) else " No",
           f": {len(ok)} of {len(judged)} checks agree in every framework pair"]
    out += [f"; worst {d} error {fmt(w)} (tolerance {PAIRWISE[d]:g})"
            for d, w in worst_of.items() if w is not None]
    if fd:
        out.append(f"; finite differences worst {fmt(worst(fd))} (tolerance {FD_TOLERANCE:g})")
    out.append(".")
    if not judged:
        out = [b("Do the gradients agree?"), " Not compared."]
    idle = [m for m in check.models if m.get("unchecked")]
    if idle:
        out += [" UNCHECKED: ", *_joined([[models.link_to(m["name"]), f" {m['dtype']}"]
                                          for m in idle]), f" ({idle[0]['unchecked']})."]
    for m in check.models:
        if m.get("not_finite"):
            out += [" NOT FINITE: ", models.link_to(m["name"]), f" {m['dtype']}: {m['not_finite']}."]
        for pair in findings.failing_pairs(m):
            out += [" FAIL: ", models.link_to(m["name"]), f" {m['dtype']}: "
                    f"{pair['pair'][0]} vs {pair['pair'][1]}, worst {pair['worst'][0]['param']} "
                    f"({fmt(pair['worst'][0]['rel_err'])})", *_parting_words(pair), "."]
    return out


def _parting_words(pair):
    return [f", parts first at {models.parting_text(p)}" for p in pair["first_parting"][:1]]


def _glance_aligned(aligned):
    if not aligned:
        return None
    judged = [m for m in aligned.models if m["passed"] is not None and not m.get("unchecked")]
    diverged = [m for m in judged if train_result(m) == "DIVERGED"]  # listed below, apart
    ok = [m for m in judged if m["passed"] and m not in diverged]
    out = [b("Does training agree?"), " Yes" if len(ok) + len(diverged) == len(judged) else
           " No", f": {len(ok)} of {len(judged)} aligned runs' loss curves agree with the "
           "reference at every step" + (f", {len(diverged)} up to where every framework "
                                         f"diverged" if diverged else "") + "."] \
        if judged else [b("Does training agree?"), " Not compared."]
    idle = [m for m in aligned.models if m.get("unchecked")]
    if idle:
        out += [" UNCHECKED: ", *_joined([[models.link_to(m["name"]), f" {m['dtype']}"]
                                          for m in idle]), f" ({idle[0]['unchecked']})."]
    starred = [m for m in judged if train_result(m) == "PASS*"]
    if starred:
        out += [" PASS* (a curve beyond its tolerance while lockstep agrees at every step: "
                "rounding amplified by the dynamics, or a float32 branch at a kink; or "
                "lockstep beyond its tolerance only within rounding's reach of arithmetic one "
                "format wider: an ill-conditioned network; ",
                ref("why", "Training, aligned"), ") in "]
        out += _joined([[models.link_to(m["name"]), f" {m['dtype']} (" + ", ".join(
            f"{fw} {e[0]} at step {e[1]}" for fw, i in m["frameworks"].items()
            if (e := event(m, i)) and e[0] in STARRED) + ")"] for m in starred]) + ["."]
    bad = [m for m in judged if not m["passed"]]
    if bad:
        out += [" FAIL: ", *_joined([[models.link_to(m["name"]), f" {m['dtype']}"]
                                     for m in bad]), "."]
    for m in aligned.models:
        if train_result(m) == "DIVERGED":  # a FAIL that diverged is a FAIL, listed above
            out += [" DIVERGED: ", models.link_to(m["name"]), f" {m['dtype']}: {diverged_line(m)}."]
    return out


def _glance_failed(run):
    failed = [(m, fw, i) for r in (run.check, run.aligned, run.native) if r for m in r.models
              for fw, i in m["frameworks"].items() if i["status"] == "failed"]
    return [[b("Failed"), ": ", models.link_to(m["name"]),
             f" {m['dtype']}: {fw}: {i.get('error')}"] for m, fw, i in failed]


def _joined(items, sep=", "):
    out = []
    for k, item in enumerate(items):
        out += ([sep] if k else []) + (item if isinstance(item, list) else [item])
    return out


def contents(doc, run):
    doc.p(b("Contents"))
    doc.toc(levels=(2, 3))


HOW_TO_READ = (
    f"Every model was run by up to {len(ORDER)} implementations (and an imported model also "
    "by its original) from the same initial weights, data, batch order and dropout masks, "
    "drawn once from the seed. Gradient check: the "
    "loss and every parameter's gradient on the first batch, compared pair by pair as "
    "max|a - b| / max|a| (the error relative to the tensor's largest entry) and, in "
    "float64, against finite differences. Training: the loss before each update, relative "
    f"to the reference implementation ({FRAMEWORKS[REFERENCE].label}), and lockstep: every "
    f"step taken again from {FRAMEWORKS[REFERENCE].label}'s parameters, running statistics "
    "and optimizer state, so that its differences stay at the rounding of one step "
    "whatever the dynamics do (a curve beyond its tolerance with lockstep agreeing is "
    "PASS*: rounding amplified, or a float32 branch; lockstep beyond its tolerance is a "
    "FAIL). Native defaults: each "
    "framework's optimizer and loss as a practitioner would first write them, with the "
    "framework's own defaults; there the curves are expected to part, and the step where "
    "they do is shown with the framework defaults that alone cause it. Tolerances: float64 gradients within "
    f"{PAIRWISE['float64']:g}, float32 within {PAIRWISE['float32']:g}, finite differences "
    f"within {FD_TOLERANCE:g}; curves within {CURVES['float64']:g} (float64) and "
    f"{CURVES['float32']:g} (float32); lockstep like the gradients, at every step. In "
    "report.html every plot is interactive: hover for "
    "values, drag to zoom (double-click resets), click a legend entry to hide a framework, "
    "and switch the value axis between log and linear with the buttons above it.")


def how_to_read(doc, run):
    doc.h(2, "How to read this")
    doc.p(HOW_TO_READ)


# ---- one table per kind of result ----------------------------------------------------------

def gradient_check(doc, run):
    if not run.check:
        return
    doc.h(2, "Gradient check")
    fws = findings.frameworks_in(run.check.models)
    pairs = [(a, c) for k, a in enumerate(fws) for c in fws[k + 1:]]
    doc.p("One row per model and dtype: the worst relative error of every framework pair "
          "over the gradient tensors (", ", ".join(f"{short(f)} = {f}" for f in fws),
          "), and the worst finite-difference error. A model's name leads to its section.")
    header = ["model", "dtype", "result", "frameworks",
              *[f"{short(a)}~{short(c)}" for a, c in pairs], "fin. diff.", "kinks"]
    rows = []
    for m in run.check.models:
        by_pair = findings.worst_by_pair(m)
        fd = [r["rel_err"] for r in m["finite_difference"] if r["status"] != "kink"]
        rows.append([models.link_to(m["name"]), m["dtype"], check_result(m),
                     _statuses(m["frameworks"]), *[fmt(by_pair.get(p)) for p in pairs],
                     fmt(worst(fd)),
                     sum(r["status"] == "kink" for r in m["finite_difference"])])
    doc.table(header, rows, verdict=2)
    for m in run.check.models:
        if sampled(m):  # the probe budget is a hard cap
            doc.p(models.link_to(m["name"]), f" {m['dtype']}: {sampled(m)}.")


def _statuses(frameworks):
    """The frameworks' statuses in one cell: 'all 4 ok', or what was not."""
    words = {fw: "loss only" if i.get("gradients") == "skipped" else i["status"]
             for fw, i in frameworks.items()}
    if all(w == "ok" for w in words.values()):
        return f"all {len(words)} ok"
    return ", ".join(f"{short(fw)} {w}" for fw, w in words.items() if w != "ok")


def training_aligned(doc, run):
    if not run.aligned:
        return
    doc.h(2, "Training, aligned")
    fws = findings.frameworks_in(run.aligned.models)
    # the reference is NumPy's, or torch's where a plugin's NumPy has no backward
    refs = list(dict.fromkeys(m["reference"] for m in run.aligned.models))
    which = refs[0] if len(refs) == 1 else f"{' or '.join(refs)}, per model"
    doc.p(f"Each framework's loss curve against the reference's ({which}), as the worst "
          "relative difference over the steps, and lockstep: every step taken again from "
          "the reference's parameters, running statistics and optimizer state, its forward and "
          "backward compared with the reference's and its update with the reference's rule "
          "on the same gradients (the worst entry over the steps and frameworks; tolerance "
          f"{PAIRWISE['float64']:g} in float64, {PAIRWISE['float32']:g} in float32). Events: "
          "where lockstep parts (FAIL), where a curve branched or its amplified difference "
          "left rounding level (PASS*), where lockstep parts only within rounding's reach of "
          "arithmetic one format wider (PASS*, rounding in lockstep), where a curve without "
          "lockstep leaves its tolerance.")
    doc.table(["model", "dtype", "result", "steps", "final loss",
               *[f"{short(fw)} max rel. diff" for fw in fws[1:]], "lockstep", "events"],
              [_train_row(m, fws) for m in run.aligned.models], verdict=2)
    if any(train_result(m) == "PASS*" for m in run.aligned.models):
        doc.p(STARRED_NOTE)
    lines = [(m, line) for m in run.aligned.models for fw, i in m["frameworks"].items()
             if (event(m, i) or i.get("diverged_at") is not None)  # as the terminal says it
             and (line := train_event(m, fw, i))]
    if lines:
        doc.bullets([[models.link_to(m["name"]), f" {m['dtype']}: {line}."] for m, line in lines])


def _train_row(m, fws):
    info = [m["frameworks"].get(fw, {}) for fw in fws]
    ref_info = m["frameworks"].get(m["reference"], {})
    events = [f"{short(fw)} {what} @{step}" for fw, i in zip(fws, info)
              if (found := event(m, i)) for what, step in [found]]
    return [models.link_to(m["name"]), m["dtype"], train_result(m), m["steps"],
            fmt(ref_info.get("final_loss")),
            *[fmt(i.get("max_rel_diff")) if i.get("status") == "ok" else i.get("status", "-")
              for i in info[1:]], fmt(worst_lockstep(m)), ", ".join(events) or "-"]


STARRED = ("branched", "amplified", "rounding in lockstep")
STARRED_NOTE = (
    "PASS* = a curve left its tolerance while lockstep agrees at every step: each step "
    "computes the same, and the trajectories drift apart because the dynamics amplify "
    "rounding. Amplified: the difference left rounding level at the step shown and grew "
    "by a steady factor per step (chaotic dynamics, float64 included). Branched: a float32 "
    "curve jumped away by 100x or more in one step: a ReLU (or max) whose input sat within "
    "rounding of its kink went the other way in one framework, and from there the runs "
    "follow different, equally valid trajectories. The arithmetic agrees; the trajectory "
    "is not stable under rounding. Rounding in lockstep: a step parts beyond the lockstep "
    "tolerance, but NumPy one format wider, from the same start, puts every failing entry of "
    "every such step within rounding's reach (8x how far NumPy's own formula moves under "
    "one rounding per layer): the network, not a framework, loses those digits.")


def training_native(doc, run):
    if not run.native:
        return
    doc.h(2, "Training, native defaults")
    doc.p("Same data and initial weights; each framework's own optimizer, loss and layer "
          "defaults for everything the spec does not set. Parts at: the first step where the "
          f"loss differs from the reference by more than {PARTED:g} (relative). Lockstep at: "
          f"the first step where, started from {REFERENCE}'s state, the framework's step "
          "leaves the lockstep tolerance, and what differs first: where a native rule "
          "differs, with no chaos in the way. Why: each framework default in play, switched on "
          "alone on this model, with the largest relative difference it makes by the step "
          "where the curve parts (only those beyond the aligned tolerance).")
    rows = [[models.link_to(m["name"]), fw, i.get("parted_at") if i.get("parted_at")
             is not None else "-", fmt(i.get("max_rel_diff")), _lockstep_cell(i),
             "; ".join(findings.native_causes(i)) or "-"]
            for m in run.native.models for fw, i in m["frameworks"].items()
            if i.get("status") == "ok" and fw != m["reference"]
            and (i.get("parted_at") is not None or findings.native_causes(i)
                 or i.get("lockstep_parted_at") is not None)]
    if rows:
        doc.table(["model", "framework", "parts at", "max rel. diff", "lockstep at",
                   "why (each default alone: effect)"], rows)
    else:
        doc.p("No curve parts from the reference, and no framework default known to differ "
              "from the canonical math is in play.")


def _lockstep_cell(i):
    """'0: optimizer state 0.W/s (4.3e+01), then ...', '-' within tolerance, '' not run."""
    if i.get("lockstep_parted_at") is None:
        return "-" if "lockstep_max_rel_err" in i else ""
    return f"{i['lockstep_parted_at']}: {differs_text(i['lockstep_differs'])}"


def speed(doc, run):
    per_step = findings.seconds_per_step(run.aligned)
    if not per_step:
        return
    doc.h(2, "Speed")
    fws = findings.frameworks_in(run.aligned.models)
    doc.p("Milliseconds per training step: each framework's aligned training job, wall time "
          "over steps, on one worker thread; the time includes building the model and, for "
          "TensorFlow and JAX, tracing and compiling, which dominate short runs. The time of "
          "one step after compilation, each implementation against a plain loop of the same "
          "network in the same framework, is ", code("crossgrad bench --step-time"),
          " (README, \"Step time\").")
    rows = [[models.link_to(name), dtype,
             *[_ms(t.get(fw)) for fw in fws]] for (name, dtype), t in per_step.items()]
    medians = [statistics.median(v) if (v := [t[fw] for t in per_step.values() if fw in t])
               else None for fw in fws]
    doc.table(["model", "dtype", *fws], rows + [["median", "", *map(_ms, medians)]])


def _ms(seconds):
    return "-" if seconds is None else f"{seconds * 1e3:.3g}"


def model_sections(doc, run):
    doc.h(2, "Models")
    for spec in run.specs:
        models.section(doc, spec, run)


# ---- the folder and the run ----------------------------------------------------------------

FILES = {
    "manifest.json": "versions, machine, threads, command, spec hashes",
    "results.json": "every check and training entry (the JSON of check/train --json)",
    "checks.csv": "one row per model and dtype: statuses, worst error per pair",
    "gradients.csv": "every pair and tensor: max abs error, relative error, cosine",
    "finite_differences.csv": "every probe: analytic and numeric derivative",
    "curves.csv": "every framework's loss, gradient norm, difference and lockstep error per step",
    "grad_norms.csv": "gradient norm per layer and step",
    "training.csv": "one row per model, mode and framework: final loss, parting step",
    "report.md": "this report as markdown, with plots/",
}


def files(doc, run):
    doc.h(2, "Files")
    doc.p("Everything the report shows, as data, in this folder:")
    names = ["manifest.json", "results.json", *[f"{n}.csv" for n in run.tables], "report.md"]
    doc.bullets([[link(n, n), f": {FILES.get(n, 'table')}"] for n in names])


def run_info(doc, run):
    doc.h(2, "How the run was made", key="run")
    m = run.manifest
    if m:
        v = m.get("versions", {})
        cpu = m.get("cpu", {})
        doc.p(f"Run {m.get('started')} to {m.get('finished')} on "
              f"{cpu.get('model', cpu.get('machine'))}, "
              f"{m.get('threads', {}).get('threads')} thread(s) per worker. "
              f"Python {v.get('python')}, "
              + ", ".join(f"{fw} {v.get(fw) or 'not installed'}" for fw in ORDER) + ". Command: ",
              code(" ".join(m.get("command", []))), ".")
    doc.p("Rerun with that command at the git commit in ", link("manifest.json", "manifest.json"),
          "; the same machine, versions and thread count give the same bits. ",
          code("crossgrad diff RUN_A RUN_B"), " compares two report folders.")


def _frameworks(run):
    return {fw for r in (run.check, run.aligned, run.native) if r for m in r.models
            for fw, i in m["frameworks"].items() if i["status"] != "skipped"}


SECTIONS = [title, glance, contents, how_to_read, gradient_check, training_aligned,
            training_native, speed, gallery.section, model_sections, files, run_info]
