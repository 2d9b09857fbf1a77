"""`crossgrad diff RUN_A RUN_B`: what changed between two report folders.

Compared: versions and machine (manifest.json), spec hashes, every framework's
check loss and status, pass/fail of each check, each training's pass/fail and every
framework's verdict and lockstep parting step (results.json), and every loss curve step
by step (curves.csv), with the tolerances of the curves themselves (float64 1e-10,
float32 1e-4, relative), and every step's worst lockstep error, with the lockstep
tolerances (float64 1e-12, float32 1e-5: a change of the error by more than that). A
verdict or parting step that changed is beyond tolerance: the runs judged differently.
A curve that changed beyond its tolerance where both runs judged it PASS* for the curve
(lockstep within at every step: the dynamics amplify rounding, and another CPU's kernels
send it elsewhere) is marked amplified instead: its lockstep errors judge it. Where
either run's PASS* says lockstep itself parted within rounding's reach (its control,
`lockstep_amplified`), that run's lockstep errors are rounding amplified too: a change
of them, or of the step lockstep parted at, is marked amplified as well, while both runs
say PASS*.
A change of spec hash means the runs did not compute the same thing; it is reported,
and that model's numbers are not compared. Results on one side only (a model, its
check, a framework's check, a training, a framework's training, a curve) are changes
beyond tolerance: the other side cannot vouch for them. Every report holds its three
files (a report without trainings writes curves.csv as one blank line): a folder
missing one, or with an empty one, or one that is not a regular file, is bad input, and
so is a JSON file holding NaN, Infinity or -Infinity: not standard JSON, and crossgrad
writes a non-finite number as null. A loss at -inf is printed with its sign.
"""
import errno
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..compare.curves import CURVES
from ..compare.pairwise import PAIRWISE
from ..errors import InputError
from ..spec.files import open_regular
from . import standard_json
from .tables import fmt, render as render_table

# What the comparison reads, with the JSON types it needs there: each manifest.json
# models[] entry, each results.json check.models[] entry, and the columns of curves.csv.
MODEL_KEYS = {"name": str, "dtype": str, "spec_hash": str}
OPTIONAL_MODEL_KEYS = {"init_hash": str}  # reports made before it have none
CHECK_KEYS = {"name": str, "dtype": str, "passed": bool, "frameworks": dict}
TRAIN_KEYS = {"name": str, "dtype": str, "mode": str, "passed": (bool, type(None)),
              "frameworks": dict}
VERDICT_KEYS = {"passed": (bool, type(None)), "verdict": (str, type(None)),  # where present
                "lockstep_parted_at": (int, type(None))}
TRAININGS = ("train", "native")  # results.json's sections of training models
LOSS = (int, float, type(None))  # non-finite losses are written as null (a number beyond
# float64's range, 1e400, is valid JSON all the same, and reads as inf)
CURVE_COLUMNS = ["model", "dtype", "mode", "framework", "step", "loss"]
NAME_COLUMNS = CURVE_COLUMNS[:4]
LOCKSTEP = "lockstep_rel_err"  # curves.csv: each step's worst lockstep entry, if measured
JSON_NAMES = {dict: "an object", list: "an array", str: "a string", bool: "true or false",
              int: "a number", float: "a number", type(None): "null"}


def load_run(folder):
    """(manifest, results, curves) of a report folder; InputError naming the file and the
    field where it lacks what the comparison reads."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():  # a file: it is there, but no report
        raise InputError(folder, None, "is not a folder; crossgrad diff compares two report "
                                       "folders")
    if not folder.is_dir():
        raise InputError(folder, None, "no such report folder")
    manifest = _read_json(folder / "manifest.json")
    results = _read_json(folder / "results.json")
    _check_manifest(manifest, folder / "manifest.json")
    _check_results(results, folder / "results.json")
    return manifest, results, _read_curves(folder / "curves.csv")


def _open(path):
    """`path` opened for reading, refused as a spec file is unless it is a regular file: a
    FIFO would block the read until someone writes, a device never ends. A missing file is
    FileNotFoundError, for the callers' own message."""
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "missing", str(path))
    return open_regular(path, "a regular file (a crossgrad report file)")


def _read_json(path):
    """The document at `path`; InputError where it is not the standard JSON a report holds."""
    try:
        with _open(path) as f:
            return standard_json.loads(f.read().decode(), path, "a crossgrad report file")
    except FileNotFoundError:
        raise InputError(path, None, "missing: not a crossgrad report folder") from None
    except json.JSONDecodeError as err:
        raise InputError(path, f"line {err.lineno}", f"invalid JSON: {err.msg}") from None
    except RecursionError:  # `[[[[...` deeper than Python's parser goes
        raise InputError(path, None, "invalid JSON: nested too deeply (arrays or objects "
                                     "inside one another beyond Python's recursion limit); "
                                     "not a crossgrad report file") from None
    except UnicodeDecodeError:
        raise InputError(path, None, "not text: not a crossgrad report file") from None
    except OSError as err:
        raise InputError(path, None, f"cannot be read ({err.strerror})") from None


def _check_manifest(doc, path):
    _need(doc, dict, path, None)
    for key in ("versions", "cpu", "threads"):
        _need(doc.get(key, {}), dict, path, key)
    for i, model in enumerate(_need(doc.get("models", []), list, path, "models")):
        _keys(model, MODEL_KEYS, path, f"models[{i}]")
        for key, kind in OPTIONAL_MODEL_KEYS.items():
            if key in model:
                _need(model[key], kind, path, f"models[{i}].{key}")
        if model["dtype"] not in CURVES:  # a report's dtypes: the ones with curve tolerances
            raise InputError(path, f"models[{i}].dtype",
                             f"expected one of {', '.join(CURVES)}, found {model['dtype']!r}")


def _check_results(doc, path):
    _need(doc, dict, path, None)
    if doc.get("check") is not None:  # None: a `crossgrad train` report
        for i, model in enumerate(_keys(doc["check"], {"models": list}, path,
                                        "check")["models"]):
            where = f"check.models[{i}]"
            for fw, entry in _keys(model, CHECK_KEYS, path, where)["frameworks"].items():
                _need(_need(entry, dict, path, f"{where}.frameworks.{fw}").get("loss"), LOSS,
                      path, f"{where}.frameworks.{fw}.loss")
    for section in TRAININGS:
        _check_trainings(doc.get(section), path, section)


def _check_trainings(section, path, name):
    """A results.json training section (None: none ran): each model's verdict fields."""
    if section is None:
        return
    for i, model in enumerate(_keys(section, {"models": list}, path, name)["models"]):
        where = f"{name}.models[{i}]"
        for fw, entry in _keys(model, TRAIN_KEYS, path, where)["frameworks"].items():
            _need(entry, dict, path, f"{where}.frameworks.{fw}")
            for key, kind in VERDICT_KEYS.items():
                if key in entry:
                    _need(entry[key], kind, path, f"{where}.frameworks.{fw}.{key}")


def _keys(obj, kinds, path, where):
    """`obj`, an object holding every key of `kinds` with a value of that type."""
    _need(obj, dict, path, where)
    for key, kind in kinds.items():
        if key not in obj:
            raise InputError(path, f"{where}.{key}", "missing")
        _need(obj[key], kind, path, f"{where}.{key}")
    return obj


def _need(value, kind, path, field):
    """`value` if it is a `kind` (a type or a tuple of them); InputError otherwise."""
    if not isinstance(value, kind):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        expected = " or ".join(dict.fromkeys(JSON_NAMES[k] for k in kinds))
        raise InputError(path, field, f"expected {expected}, found {JSON_NAMES[type(value)]}")
    return value


def _read_curves(path):
    """curves.csv with the columns the comparison uses; an empty table where the report
    has no curves. A report always writes the file, a table without rows as one blank line
    (pandas' empty table): a missing or empty file is not what a report holds, and read as
    "no curves" it would show every curve of the other side as on one side only."""
    try:
        with _open(path) as f:
            if os.fstat(f.fileno()).st_size == 0:
                raise InputError(path, None, "empty: not a crossgrad curves table (a report "
                                             "writes at least one line)")
            # names as written: a model named "nan" or "1" stays a name, never a number or
            # NaN; an empty loss is a non-finite one (to_csv's NaN)
            curves = pd.read_csv(f, dtype={c: str for c in NAME_COLUMNS},
                                 keep_default_na=False,
                                 na_values={"step": [""], "loss": [""], LOCKSTEP: [""]})
    except FileNotFoundError:
        raise InputError(path, None, "missing: not a crossgrad report folder") from None
    except pd.errors.EmptyDataError:  # the blank line of a report without trainings
        return pd.DataFrame(columns=[*CURVE_COLUMNS, LOCKSTEP])
    except (OSError, ValueError) as err:  # not CSV, or not text
        raise InputError(path, None, f"cannot be read as a CSV table ({str(err).strip()})") \
            from None
    missing = [c for c in CURVE_COLUMNS if c not in curves.columns]
    if missing:
        raise InputError(path, missing[0], "missing column: not a crossgrad curves table")
    if LOCKSTEP not in curves.columns:  # no training took lockstep (or an older report)
        curves[LOCKSTEP] = np.nan
    for column in ("step", "loss", LOCKSTEP):  # merged on, and compared as numbers
        if len(curves) and not pd.api.types.is_numeric_dtype(curves[column]):
            raise InputError(path, column, "holds values that are not numbers")
    return curves


def diff_reports(a, b):
    """-> list of {what, model, detail, beyond_tolerance}."""
    (man_a, res_a, cur_a), (man_b, res_b, cur_b) = load_run(a), load_run(b)
    changes = _environment(man_a, man_b)
    hashes_a, hashes_b = _hashes(man_a), _hashes(man_b)
    same = set()
    for key in sorted(set(hashes_a) | set(hashes_b)):
        label = f"{key[0]} {key[1]}"
        if key not in hashes_a or key not in hashes_b:
            where = "only in A" if key in hashes_a else "only in B"
            changes.append(_change("model", label, where, True))
        elif hashes_a[key][0] != hashes_b[key][0]:
            changes.append(_change("spec", label, "spec hash differs: not the same computation",
                                   True))
        elif _inits_differ(hashes_a[key][1], hashes_b[key][1]):
            changes.append(_change("spec", label, "initializers differ (init_hash): not the "
                                                  "same computation", True))
        else:
            same.add(key)
    changes += _checks(res_a.get("check"), res_b.get("check"), same)
    amplified_a, amplified_b = _amplified(res_a), _amplified(res_b)
    amplified = set(amplified_a) & set(amplified_b)
    in_lockstep = {key for key in amplified if amplified_a[key] or amplified_b[key]}
    changes += _trainings(res_a, res_b, same, in_lockstep)
    changes += _curves(cur_a, cur_b, same, amplified, in_lockstep)
    return changes


def _hashes(manifest):
    """{(name, dtype): (spec_hash, init_hash or None)}: a report made before init_hash has
    none, and is compared on its spec hash alone."""
    return {(m["name"], m["dtype"]): (m["spec_hash"], m.get("init_hash"))
            for m in manifest.get("models", [])}


def _inits_differ(a, b):
    return a is not None and b is not None and a != b


def _amplified(results):
    """{(model, dtype, mode, framework): whether lockstep parted} of the runs judged PASS*
    for rounding: their curve beyond its tolerance (amplified, or branched at a kink) while
    lockstep agreed at every step, or lockstep beyond its own within rounding's reach."""
    return {(m["name"], m["dtype"], m["mode"], fw): bool(i.get("lockstep_amplified"))
            for m in _training_index(results).values()
            for fw, i in m["frameworks"].items() if i.get("verdict") == "PASS*"
            and (i.get("amplified_at") is not None or i.get("branched_at") is not None
                 or i.get("lockstep_amplified"))}


def _change(what, model, detail, beyond, amplified=False):
    """One row of the diff. `amplified`: a curve change beyond the curves' tolerance where
    both runs judged that curve PASS* (lockstep within at every step: the dynamics amplify
    rounding, so another CPU or library moves the curve by more than the tolerance with
    every step still agreeing); lockstep's errors, compared apart, judge those runs."""
    return {"what": what, "model": model, "detail": detail, "beyond_tolerance": beyond,
            **({"amplified": True} if amplified else {})}


def _environment(a, b):
    out = []
    for key in sorted(set(a.get("versions", {})) | set(b.get("versions", {}))):
        va, vb = a.get("versions", {}).get(key), b.get("versions", {}).get(key)
        if va != vb:
            out.append(_change("version", key, f"{va} -> {vb}", False))
    ca, cb = a.get("cpu", {}).get("model"), b.get("cpu", {}).get("model")
    if ca != cb:
        out.append(_change("machine", "cpu", f"{ca} -> {cb}", False))
    ta, tb = a.get("threads", {}).get("threads"), b.get("threads", {}).get("threads")
    if ta != tb:
        out.append(_change("threads", "-", f"{ta} -> {tb}", False))
    return out


def _only(in_a):
    return "only in A" if in_a else "only in B"


def _checks(a, b, same):
    index_a = {(m["name"], m["dtype"]): m for m in a["models"]} if a else {}
    index_b = {(m["name"], m["dtype"]): m for m in b["models"]} if b else {}
    out = []
    for key in sorted(same & (set(index_a) | set(index_b))):
        label = f"{key[0]} {key[1]}"
        ma, mb = index_a.get(key), index_b.get(key)
        if ma is None or mb is None:  # e.g. a `run` report against a `train` report
            out.append(_change("check", label, _only(ma is not None), True))
            continue
        if ma["passed"] != mb["passed"]:
            out.append(_change("check", label, f"passed {ma['passed']} -> {mb['passed']}", True))
        for fw in dict.fromkeys([*ma["frameworks"], *mb["frameworks"]]):
            out += _framework(fw, ma["frameworks"].get(fw), mb["frameworks"].get(fw), key)
    return out


def _framework(fw, fa, fb, key):
    """The changes of one framework's check entry (None where a side lacks it)."""
    label = f"{key[0]} {key[1]}"
    if fa is None or fb is None:
        return [_change("status", label, f"{fw}: {_only(fa is not None)}", True)]
    if fa.get("status") != fb.get("status"):
        return [_change("status", label, f"{fw}: {fa.get('status')} -> {fb.get('status')}",
                        True)]
    la, lb = fa.get("loss"), fb.get("loss")
    if la is None and lb is None:
        return []
    if la is None or lb is None:  # non-finite (null) on one side
        return [_change("check loss", label, f"{fw}: {fmt(la)} -> {fmt(lb)}", True)]
    if _nonfinite_apart(np.array([la], float), np.array([lb], float)) is not None:
        # crossgrad writes null, but a number beyond float64's range (-1e400) reads as
        # -inf: compared as curves are, the sign kept
        return [_change("check loss", label, f"{fw}: {fmt(la)} -> {fmt(lb)}", True)]
    if not math.isfinite(la):  # the same inf or -inf on both sides (NaN is refused on reading)
        return []
    rel = abs(la - lb) / max(abs(la), 1e-300)
    if rel > 0:
        return [_change("check loss", label, f"{fw}: rel. change {fmt(rel)}",
                        rel > CURVES[key[1]])]
    return []


def _trainings(a, b, same, in_lockstep=frozenset()):
    """Each training of a model both reports ran (by model, dtype and mode): the model's
    pass/fail, and per framework its verdict and the step lockstep parted at (`in_lockstep`:
    the (model, dtype, mode, framework) whose parting both runs' PASS* put down to
    rounding, see _amplified: a change of it is amplified). A training or
    a framework's training on one side only is a change beyond tolerance, as a check is: its
    curves may be missing on both sides (a framework that failed draws none, a results.json
    without its trainings has curves all the same), so they cannot be left to say so."""
    index_a, index_b = _training_index(a), _training_index(b)
    out = []
    for key in sorted(set(index_a) | set(index_b)):
        name, dtype, mode = key
        if (name, dtype) not in same:
            continue
        label, ma, mb = f"{name} {dtype}", index_a.get(key), index_b.get(key)
        if ma is None or mb is None:
            out.append(_change("training", label, f"{mode}: {_only(ma is not None)}", True))
            continue
        if ma["passed"] != mb["passed"]:
            out.append(_change("training", label, f"{mode}: passed {ma['passed']} -> "
                                                  f"{mb['passed']}", True))
        for fw in dict.fromkeys([*ma["frameworks"], *mb["frameworks"]]):
            fa, fb = ma["frameworks"].get(fw), mb["frameworks"].get(fw)
            if fa is None or fb is None:
                out.append(_change("training", label, f"{mode} {fw}: {_only(fa is not None)}",
                                   True))
            else:
                out += _verdicts(f"{mode} {fw}", fa, fb, label, (*key, fw) in in_lockstep)
    return out


def _training_index(results):
    return {(m["name"], m["dtype"], m["mode"]): m for section in TRAININGS
            for m in (results.get(section) or {}).get("models", [])}


def _verdicts(who, fa, fb, label, amplified=False):
    """One framework's training judged otherwise: its verdict (PASS, PASS*, FAIL; in native
    mode none), its pass/fail, the first step lockstep left tolerance (`amplified`: where
    it did, both runs said PASS* for rounding, see _amplified)."""
    out = []
    if (fa.get("verdict"), fa.get("passed")) != (fb.get("verdict"), fb.get("passed")):
        said = [f.get("verdict") or f"passed {f.get('passed')}" for f in (fa, fb)]
        out.append(_change("training", label, f"{who}: {said[0]} -> {said[1]}", True))
    pa, pb = fa.get("lockstep_parted_at"), fb.get("lockstep_parted_at")
    if pa != pb:
        said = ["never" if p is None else f"step {p}" for p in (pa, pb)]
        out.append(_change("lockstep", label, f"{who}: parted at {said[0]} -> {said[1]}" +
                           (EXCUSED[True] if amplified else ""), not amplified, amplified))
    return out


# why a change beyond tolerance is amplified, by whether lockstep parted in either run
EXCUSED = {False: " (PASS* in both runs: lockstep within, the curve amplifies rounding)",
           True: " (PASS* in both runs: lockstep parts within rounding's reach)"}


def _curves(a, b, same, amplified, in_lockstep=frozenset()):
    """Each curve's loss, step by step, and its lockstep errors. `amplified`: the trainings
    PASS* in both runs, whose curve change is excused; `in_lockstep`: those of them whose
    lockstep errors are too (see _amplified)."""
    out = []
    keys = ["model", "dtype", "mode", "framework"]
    merged = a.merge(b, on=keys + ["step"], how="outer", suffixes=("_a", "_b"),
                     indicator="side")
    for (model, dtype, mode, fw), g in merged.groupby(keys):
        if (model, dtype) not in same:
            continue
        label = f"{model} {dtype}"
        sides = set(g["side"])
        if sides in ({"left_only"}, {"right_only"}):  # e.g. native curves in one report only
            out.append(_change("curve", label, f"{mode} {fw}: {_only(sides == {'left_only'})}",
                               True))
            continue
        if (g["side"] != "both").any():  # a step on one side only: a NaN loss on the other
            out.append(_change("curve", label, f"{mode} {fw}: different number of steps", True))
            continue
        la, lb = g["loss_a"].to_numpy(float), g["loss_b"].to_numpy(float)
        parted = _nonfinite_apart(la, lb)
        if parted is not None:
            step, was, now = g["step"].to_numpy()[parted], la[parted], lb[parted]
            out.append(_change("curve", label, f"{mode} {fw}: loss at step {step:g} "
                                               f"{fmt(was)} -> {fmt(now)}", True))
        elif (worst := _worst_rel(la, lb)) > 0:
            key = (model, dtype, mode, fw)
            excused = worst > CURVES[dtype] and key in amplified
            out.append(_change("curve", label, f"{mode} {fw}: max rel. change {fmt(worst)}" + (
                EXCUSED[key in in_lockstep] if excused else ""),
                worst > CURVES[dtype] and not excused, excused))
        out += _lockstep_errors(g[f"{LOCKSTEP}_a"].to_numpy(float),
                                g[f"{LOCKSTEP}_b"].to_numpy(float), f"{mode} {fw}", label, dtype,
                                (model, dtype, mode, fw) in in_lockstep)
    return out


def _nonfinite_apart(la, lb):
    """The index of the first step whose loss is non-finite on one side and not the same
    on the other (nan against a number or inf, inf against a number or -inf), or None.
    Where they are, not how many: a run that diverged at step 1 is not one that did at 2."""
    same = (np.isnan(la) & np.isnan(lb)) | (np.isinf(la) & (la == lb))
    apart = ~(np.isfinite(la) & np.isfinite(lb)) & ~same
    return int(np.argmax(apart)) if apart.any() else None  # the merge sorted by step


@np.errstate(over="ignore")  # two finite losses of opposite sign near 1e308: inf, beyond
def _worst_rel(la, lb):
    """The largest relative change of the steps finite on both sides, relative to A's
    loss at that step (non-finite ones are compared by `_nonfinite_apart`)."""
    finite = np.isfinite(la) & np.isfinite(lb)
    a, b = la[finite], lb[finite]
    rel = np.abs(a - b) / np.maximum(np.abs(a), 1e-300)
    return float(rel.max()) if rel.size else 0.0


@np.errstate(invalid="ignore")
def _lockstep_errors(ea, eb, who, label, dtype, amplified=False):
    """Each step's worst lockstep error, A against B: the largest change, beyond when it
    exceeds the lockstep tolerance (an error that became inf is beyond; inf on both sides
    is no change), or `amplified` there (both runs PASS* with lockstep parting within
    rounding's reach in one: see _amplified). Steps measured on one side only are a change
    beyond tolerance."""
    measured = ~np.isnan(ea)
    if (measured != ~np.isnan(eb)).any():
        return [_change("lockstep", label, f"{who}: measured at other steps", True)]
    a, b = ea[measured], eb[measured]
    change = np.where(a == b, 0.0, np.abs(a - b))
    worst = float(change.max()) if change.size else 0.0
    if worst > 0:
        excused = amplified and worst > PAIRWISE[dtype]
        return [_change("lockstep", label, f"{who}: max change of the error {fmt(worst)}" +
                        (EXCUSED[True] if excused else ""), worst > PAIRWISE[dtype] and not excused,
                        excused)]
    return []


def render(changes, a, b):
    if not changes:
        return f"{a} and {b}: identical results (every loss and curve value bit for bit)"
    rows = [[c["what"], c["model"], c["detail"], "BEYOND" if c["beyond_tolerance"] else
             "amplified" if c.get("amplified") else "within"] for c in changes]
    beyond = sum(c["beyond_tolerance"] for c in changes)
    amplified = sum(bool(c.get("amplified")) for c in changes)
    return (render_table(["what", "model", "change", "tolerance"], rows) +
            f"\n{len(changes)} differences, {beyond} beyond tolerance" +
            (f", {amplified} beyond it where both runs judged the training PASS* for rounding "
             f"(amplified)" if amplified else ""))
