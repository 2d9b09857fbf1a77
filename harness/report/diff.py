"""`crossgrad diff RUN_A RUN_B`: what changed between two report folders.

Compared: versions and machine (manifest.json), spec hashes, every framework's
check loss and status, pass/fail of each check, and every loss curve step by step
(curves.csv), with the tolerances of the curves themselves (float64 1e-10,
float32 1e-4, relative). A change of spec hash means the runs did not compute the
same thing; it is reported, and that model's numbers are not compared.
"""
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..compare.curves import CURVES
from ..errors import InputError
from .tables import fmt, render as render_table


def load_run(folder):
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, None, "no such report folder")
    loaded = {}
    for name in ("manifest.json", "results.json"):
        try:
            loaded[name] = json.loads((folder / name).read_text())
        except FileNotFoundError:
            raise InputError(folder / name, None, "missing: not a crossgrad report folder") from None
        except json.JSONDecodeError as err:
            raise InputError(folder / name, f"line {err.lineno}", f"invalid JSON: {err.msg}") from None
    try:
        curves = pd.read_csv(folder / "curves.csv")
    except (FileNotFoundError, pd.errors.EmptyDataError):
        curves = pd.DataFrame(columns=["model", "dtype", "mode", "framework", "step", "loss"])
    return loaded["manifest.json"], loaded["results.json"], curves


def diff_reports(a, b):
    """-> list of {what, model, detail, beyond_tolerance}."""
    (man_a, res_a, cur_a), (man_b, res_b, cur_b) = load_run(a), load_run(b)
    changes = _environment(man_a, man_b)
    hashes_a = {(m["name"], m["dtype"]): m["spec_hash"] for m in man_a.get("models", [])}
    hashes_b = {(m["name"], m["dtype"]): m["spec_hash"] for m in man_b.get("models", [])}
    same = set()
    for key in sorted(set(hashes_a) | set(hashes_b)):
        label = f"{key[0]} {key[1]}"
        if key not in hashes_a or key not in hashes_b:
            where = "only in A" if key in hashes_a else "only in B"
            changes.append(_change("model", label, where, True))
        elif hashes_a[key] != hashes_b[key]:
            changes.append(_change("spec", label, "spec hash differs: not the same computation",
                                   True))
        else:
            same.add(key)
    changes += _checks(res_a.get("check"), res_b.get("check"), same)
    changes += _curves(cur_a, cur_b, same)
    return changes


def _change(what, model, detail, beyond):
    return {"what": what, "model": model, "detail": detail, "beyond_tolerance": beyond}


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


def _checks(a, b, same):
    out = []
    if not a or not b:
        return out
    index_b = {(m["name"], m["dtype"]): m for m in b["models"]}
    for ma in a["models"]:
        key = (ma["name"], ma["dtype"])
        mb = index_b.get(key)
        if mb is None or key not in same:
            continue
        label = f"{key[0]} {key[1]}"
        if ma["passed"] != mb["passed"]:
            out.append(_change("check", label, f"passed {ma['passed']} -> {mb['passed']}", True))
        for fw, fa in ma["frameworks"].items():
            fb = mb["frameworks"].get(fw, {})
            if fa.get("status") != fb.get("status"):
                out.append(_change("status", label, f"{fw}: {fa.get('status')} -> "
                                                     f"{fb.get('status')}", True))
            elif fa.get("loss") is not None and fb.get("loss") is not None:
                rel = abs(fa["loss"] - fb["loss"]) / max(abs(fa["loss"]), 1e-300)
                if rel > 0:
                    out.append(_change("check loss", label, f"{fw}: rel. change {fmt(rel)}",
                                       rel > CURVES[key[1]]))
    return out


def _curves(a, b, same):
    out = []
    keys = ["model", "dtype", "mode", "framework"]
    merged = a.merge(b, on=keys + ["step"], how="outer", suffixes=("_a", "_b"))
    for (model, dtype, mode, fw), g in merged.groupby(keys):
        if (model, dtype) not in same:
            continue
        label = f"{model} {dtype}"
        la, lb = g["loss_a"].to_numpy(float), g["loss_b"].to_numpy(float)
        if np.isnan(la).sum() != np.isnan(lb).sum():
            out.append(_change("curve", label, f"{mode} {fw}: different number of steps", True))
            continue
        both = ~np.isnan(la) & ~np.isnan(lb)
        rel = np.abs(la[both] - lb[both]) / np.maximum(np.abs(la[both]), 1e-300)
        worst = float(rel.max()) if rel.size else 0.0
        if worst > 0:
            out.append(_change("curve", label, f"{mode} {fw}: max rel. change {fmt(worst)}",
                               worst > CURVES[dtype]))
    return out


def render(changes, a, b):
    if not changes:
        return f"{a} and {b}: identical results (every loss and curve value bit for bit)"
    rows = [[c["what"], c["model"], c["detail"], "BEYOND" if c["beyond_tolerance"] else "within"]
            for c in changes]
    beyond = sum(c["beyond_tolerance"] for c in changes)
    return (render_table(["what", "model", "change", "tolerance"], rows) +
            f"\n{len(changes)} differences, {beyond} beyond tolerance")
