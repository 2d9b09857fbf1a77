"""Why a native-defaults curve parts: the pitfalls in play, each switched on alone on the
model's own spec, measured up to the step where the curve parts.

For every framework whose native curve parts from the reference at step k, one training
job per pitfall in play (compare/pitfalls.in_play) runs steps 0..k with only that
pitfall on, everything else aligned, on the same batches. A pitfall is a confirmed
cause when its curve leaves the reference's beyond the aligned tolerance (CURVES) by
step k; its effect is its largest relative difference over those steps. The causes go
into the one field the report reads, `native_defaults` (largest effect first), and
every pitfall measured into `native_ablation`. Cost: steps 0..k of one model per
pitfall in play, for the curves that part only. A curve whose lockstep agreed at every
step up to k parted by the dynamics alone (rounding amplified, as an aligned PASS*): no
pitfall is run or named for it, and `native_amplified` says so.

A single-pitfall run is measured against the reference, so a difference of the framework's
own (a plugin's bug, a wrong formula) is in every one of them, and would "confirm" every
pitfall in play. So a framework whose aligned run fails names no default: `run` knows from
its aligned training (discount); `train --native-defaults` runs a control, the aligned
run of the same steps 0..k, beside the single-pitfall runs (confirm's `controls`).
"""
import copy

from ..compare.curves import CURVES, curve_errors
from ..compare.pitfalls import described, in_play
from ..run.execute import run_later
from ..run.jobs import keyed, train_job
from ..spec.data import batch_order, dropout_masks


def confirm(result, prepared, executor=None, cache=None, on_result=None, controls=True):
    """Fill `native_defaults` and `native_ablation` of every native entry of `result` (a
    TrainResult of native=True) from single-pitfall runs; -> the number of jobs run.
    `controls`: also the aligned run of each parting's steps, whose own parting by step k
    disowns every pitfall (False where the caller has the aligned results: discount)."""
    planned, jobs, controlled = [], [], []
    for (spec, inputs), entry in zip(prepared, result.models):
        for fw, info in entry["frameworks"].items():
            if info["status"] != "ok":
                continue
            info["native_defaults"] = []  # until a pitfall in play is confirmed
            k = info.get("parted_at")
            if k is None or fw == entry["reference"]:
                continue
            if amplified(info, k):
                info["native_amplified"] = True
                continue
            short = shortened(inputs, k + 1)
            pitfalls = in_play(spec, fw)
            if controls and pitfalls:
                controlled.append((entry, spec, fw, k, len(jobs)))
                jobs.append(free_running(train_job(spec, short, fw, False), spec, executor))
            for pitfall in pitfalls:
                planned.append((entry, spec, fw, pitfall, k, len(jobs)))
                jobs.append(free_running(train_job(spec, short, fw, [pitfall.name]), spec,
                                         executor))
    if not jobs:
        return 0
    results = run_later(jobs, executor, cache, on_result)
    measured = {}
    for entry, spec, fw, pitfall, k, at in planned:
        effect = effect_of(result, entry, spec, fw, results[at], k)
        measured.setdefault((id(entry), fw), []).append(
            (effect, pitfall, k, spec.dtype, results[at].get("error")))
    for entry in result.models:
        for fw, info in entry["frameworks"].items():
            if (id(entry), fw) in measured:
                attach(info, sorted(measured[(id(entry), fw)], key=_largest_first))
    for entry, spec, fw, k, at in controlled:
        effect = effect_of(result, entry, spec, fw, results[at], k)
        if effect is not None and effect > CURVES[spec.dtype]:
            disown(entry["frameworks"][fw])
    return len(jobs)


def discount(native, aligned):
    """Name no default where the framework's aligned run of the same model and dtype FAILs:
    a single-default run is measured against the reference, so a difference of the
    framework's own (a plugin's bug, a wrong formula) already in its aligned run is in every
    one of them, and every default in play would be 'confirmed' by it. `run` has both
    results; each such framework entry gets `native_aligned_fails` and no causes."""
    if not native or not aligned:
        return
    failed = {(m["name"], m["dtype"], fw) for m in aligned.models
              for fw, info in m["frameworks"].items() if info.get("passed") is False}
    for m in native.models:
        for fw, info in m["frameworks"].items():
            if (m["name"], m["dtype"], fw) in failed and info.get("native_ablation"):
                disown(info)


def disown(info):
    """No default named for a native entry whose framework's aligned run fails too."""
    info["native_aligned_fails"] = True
    info["native_defaults"] = []
    for a in info["native_ablation"]:
        a["confirmed"] = False


def amplified(info, k):
    """Whether the native run's lockstep agreed at every step up to k, where its curve parts:
    then no default changed a step beyond rounding, and the dynamics amplified it (a
    single-pitfall run would part by then as much, whatever its pitfall): no cause."""
    return "lockstep_parted_at" in info and (info["lockstep_parted_at"] is None
                                             or info["lockstep_parted_at"] > k)


def attach(info, found):
    """The confirmed causes as the report names them, and every pitfall measured."""
    confirmed = [(e, p, k) for e, p, k, dtype, _ in found
                 if e is not None and e > CURVES[dtype]]
    info["native_defaults"] = [described(p, e, k) for e, p, k in confirmed]
    info["native_ablation"] = [dict({"pitfall": p.name, "effect": e, "steps": k + 1,
                                     "confirmed": e is not None and e > CURVES[dtype]},
                                    **({"error": error} if error else {}))
                               for e, p, k, dtype, error in found]


def _largest_first(item):
    effect = item[0]
    return -(effect if effect is not None else -1.0)


def effect_of(result, entry, spec, fw, run, k):
    """The largest relative difference of a single-pitfall curve from the reference's, over
    steps 0..k; None if the job failed."""
    if run.get("status") != "ok":
        return None
    ref = result.saved[(spec.name, spec.dtype)][1][entry["reference"]]["curves"]
    head = dict(ref, loss=ref["loss"][:k + 1])
    return curve_errors({"reference": head, fw: run["curves"]}, "reference", spec.dtype,
                        True)[fw]["max_rel_diff"]


def shortened(inputs, steps):
    """`inputs` for the first `steps` steps only: the batch order and the dropout masks are
    drawn step by step from seeded streams, so these steps are the full run's."""
    spec, short = inputs.spec, copy.copy(inputs)
    short.steps = steps
    short.batches = batch_order(len(inputs.x), inputs.batch_size, steps, spec.seed,
                                spec.data["shuffle"])
    short.masks = dropout_masks(spec.dropout_layers(), inputs.batch_size, steps, spec.seed,
                                spec.dtype)
    return short


def free_running(job, spec, executor):
    """The job, free-running only (the curve is what is measured), with its cache key (run
    --resume reuses it; a list of pitfalls as `native` keeps it apart from every other)."""
    job["lockstep"] = False
    return keyed(job, spec, job["native"], executor)
