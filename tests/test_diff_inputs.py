"""`crossgrad diff` on folders that are not what a report holds, and on reports whose
results are on one side only: bad input is one line naming the file and field (exit 2),
a result on one side only is a change beyond tolerance (exit 1)."""
import json
import math
import os
import warnings

import pytest

from crossgrad.harness.cli import main

from limited import crossgrad

HASH = "0" * 64
CURVES = ("model,dtype,mode,framework,step,loss,grad_norm,rel_diff,lockstep_rel_err\n"
          "xor_2_2_1,float64,aligned,numpy,0,0.75,0.5,0.0,\n"
          "xor_2_2_1,float64,aligned,numpy,1,0.625,0.25,0.0,\n"
          "xor_2_2_1,float64,aligned,torch,0,0.75,0.5,0.0,0.0\n"
          "xor_2_2_1,float64,aligned,torch,1,0.625,0.25,0.0,0.0\n")
NATIVE = ("xor_2_2_1,float64,native,numpy,0,0.75,0.5,,\n"
          "xor_2_2_1,float64,native,numpy,1,0.5,0.25,,\n")


def check_results():
    return {"models": [{
        "name": "xor_2_2_1", "dtype": "float64", "seed": 0, "spec_hash": HASH, "passed": True,
        "frameworks": {fw: {"status": "ok", "loss": 0.75, "version": "1"}
                       for fw in ("numpy", "torch")},
        "comparisons": [], "finite_difference": []}]}


def report(folder, check=True, curves=CURVES):
    """The files `crossgrad diff` reads, shaped as `crossgrad run` (check=True) or
    `crossgrad train` writes them."""
    folder.mkdir()
    manifest = {"versions": {"python": "3.11", "numpy": "2"}, "cpu": {"model": "cpu"},
                "threads": {"threads": 1},
                "models": [{"name": "xor_2_2_1", "dtype": "float64", "spec_hash": HASH}]}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    results = {"check": check_results() if check else None, "train": None, "native": None}
    (folder / "results.json").write_text(json.dumps(results))
    (folder / "curves.csv").write_text(curves)
    return folder


def edit_json(path, change):
    doc = json.loads(path.read_text())
    path.write_text(json.dumps(change(doc)))


def no_dtype(doc):
    del doc["models"][0]["dtype"]
    return doc


def loss_is_text(doc):
    doc["check"]["models"][0]["frameworks"]["torch"]["loss"] = "0.75"
    return doc


def init_hash_is(value):
    def spoil(doc):
        doc["models"][0]["init_hash"] = value
        return doc
    return spoil


def framework_is_list(doc):
    doc["check"]["models"][0]["frameworks"]["torch"] = []
    return doc


def check_loss(value):
    """A spoiler setting torch's check loss to `value`: json.dumps writes a non-finite
    float as Python's bare NaN, Infinity or -Infinity, which crossgrad never writes."""
    def spoil(doc):
        doc["check"]["models"][0]["frameworks"]["torch"]["loss"] = value
        return doc
    return spoil


def comparison_is(value):
    """A spoiler adding a pairwise row holding `value`: a field diff does not compare."""
    def spoil(doc):
        doc["check"]["models"][0]["comparisons"] = [{"param": "0.W", "rel_err": value}]
        return doc
    return spoil


def manifest_threads_are(value):
    def spoil(doc):
        doc["threads"]["threads"] = value
        return doc
    return spoil


# JSON's non-standard tokens as Python's reader takes them: refused wherever they stand,
# named by their field, with the token as written (its sign too)
BARE = {
    **{f"check_loss_is_{token}": ("results.json", check_loss(float(token)),
                                  f"check.models[0].frameworks.torch.loss: {token} is not "
                                  f"standard JSON") for token in ("NaN", "Infinity", "-Infinity")},
    "comparison_is_-Infinity": ("results.json", comparison_is(-math.inf),
                                "check.models[0].comparisons[0].rel_err: -Infinity"),
    "results_is_NaN": ("results.json", "NaN\n", "NaN is not standard JSON"),
    "results_NaN_in_a_list": ("results.json", '[1, [2, NaN]]\n', "[1][1]: NaN"),
    "manifest_threads_Infinity": ("manifest.json", manifest_threads_are(math.inf),
                                  "threads.threads: Infinity"),
}


# case -> (file, how it is spoiled, what the message names after the file)
MALFORMED = {
    "results_is_a_list": ("results.json", "[1, 2]\n", "expected an object"),
    "manifest_is_a_string": ("manifest.json", '"hello"\n', "expected an object"),
    "manifest_models_not_a_list": ("manifest.json", '{"models": {}}\n', "models"),
    "manifest_model_without_dtype": ("manifest.json", no_dtype, "models[0].dtype"),
    "manifest_init_hash_a_number": ("manifest.json", init_hash_is(3), "models[0].init_hash"),
    "manifest_versions_null": ("manifest.json", '{"versions": null}\n', "versions"),
    "check_without_models": ("results.json", '{"check": {}}\n', "check.models"),
    "check_loss_is_text": ("results.json", loss_is_text,
                           "check.models[0].frameworks.torch.loss"),
    "check_framework_is_a_list": ("results.json", framework_is_list,
                                  "check.models[0].frameworks.torch"),
    "curves_other_columns": ("curves.csv", "a,b\n1,2\n", "model"),
    "curves_step_not_numbers": ("curves.csv", CURVES.replace(",0,0.75", ",zero,0.75"), "step"),
    "curves_not_csv": ("curves.csv", 'a,b\n"1,2\n', "CSV"),
    **BARE,
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
@pytest.mark.parametrize("side", ["A", "B"])
def test_malformed_report_is_one_line_and_exit_2(tmp_path, capsys, case, side):
    name, spoil, field = MALFORMED[case]
    a, b = report(tmp_path / "a"), report(tmp_path / "b")
    path = (a if side == "A" else b) / name
    if callable(spoil):
        edit_json(path, spoil)
    else:
        path.write_text(spoil)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main(["diff", str(a), str(b)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"crossgrad: {path}: "), err
    assert field in err[len(f"crossgrad: {path}: "):], err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


@pytest.mark.parametrize("damage", ["missing", "empty"])
@pytest.mark.parametrize("side", ["A", "B"])
def test_a_missing_or_empty_curves_table_is_one_line_and_exit_2(tmp_path, capsys, damage,
                                                                side):
    """A report always writes curves.csv (a blank line where it has no rows): without it,
    or with nothing in it, the folder is not a report, as without results.json; read as
    "no curves" it would show every curve of the other side as on one side only."""
    a, b = report(tmp_path / "a"), report(tmp_path / "b")
    path = (a if side == "A" else b) / "curves.csv"
    if damage == "missing":
        path.unlink()
    else:
        path.write_text("")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main(["diff", str(a), str(b)]) == 2
    out, err = capsys.readouterr()
    says = ("missing: not a crossgrad report folder" if damage == "missing" else
            "empty: not a crossgrad curves table (a report writes at least one line)")
    assert out == "" and err == f"crossgrad: {path}: {says}\n", err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_a_path_that_is_no_folder_is_named_as_such(tmp_path, capsys):
    a = report(tmp_path / "a")
    (tmp_path / "notes.txt").write_text("my notes\n")
    for other, says in ((tmp_path / "notes.txt", "is not a folder; crossgrad diff compares "
                                                 "two report folders"),
                        (tmp_path / "nothing", "no such report folder")):
        assert main(["diff", str(a), str(other)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err == f"crossgrad: {other}: {says}\n", err


def test_identical_reports_are_identical(tmp_path, capsys):
    for check in (True, False):  # two run reports; two train reports (neither has checks)
        a = report(tmp_path / f"a{check}", check)
        b = report(tmp_path / f"b{check}", check)
        assert main(["diff", str(a), str(b)]) == 0
        assert "identical results" in capsys.readouterr().out
    # two check-only reports: curves.csv as a report writes a table without rows
    a, b = report(tmp_path / "a", curves="\n"), report(tmp_path / "b", curves="\n")
    assert main(["diff", str(a), str(b)]) == 0
    assert "identical results" in capsys.readouterr().out


def test_reports_of_other_initializers_are_not_compared(tmp_path, capsys):
    """The same spec hash and other initializers: two computations, said once, and their
    numbers not compared (B's curve differs, and no curve line says so)."""
    a = report(tmp_path / "a")
    b = report(tmp_path / "b", curves=CURVES.replace("torch,1,0.625", "torch,1,0.7"))
    edit_json(a / "manifest.json", init_hash_is("1" * 64))
    edit_json(b / "manifest.json", init_hash_is("2" * 64))
    assert main(["diff", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "initializers differ (init_hash): not the same computation" in out
    assert out.count("xor_2_2_1") == 1 and "curve" not in out
    edit_json(b / "manifest.json", init_hash_is("1" * 64))  # the same initializers: compared
    assert main(["diff", str(a), str(b)]) == 1
    assert "curve" in capsys.readouterr().out


@pytest.mark.parametrize("a_init", ["1" * 64, None])
def test_a_report_without_init_hash_compares_on_its_spec_hash(tmp_path, capsys, a_init):
    """A report made before init_hash (B) is compared with one that has it, or none."""
    a, b = report(tmp_path / "a"), report(tmp_path / "b")
    if a_init:
        edit_json(a / "manifest.json", init_hash_is(a_init))
    assert main(["diff", str(a), str(b)]) == 0
    assert "identical results" in capsys.readouterr().out


@pytest.mark.parametrize("checked", ["A", "B"])
def test_check_results_on_one_side_only(tmp_path, capsys, checked):
    """A `crossgrad run` report against a `crossgrad train` report of the same model."""
    run, train = report(tmp_path / "run"), report(tmp_path / "train", check=False)
    a, b = (run, train) if checked == "A" else (train, run)
    assert main(["diff", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "identical" not in out
    rows = [line.split() for line in out.splitlines() if line.startswith("check ")]
    assert rows == [["check", "xor_2_2_1", "float64", "only", "in", checked, "BEYOND"]]


def test_empty_results_on_one_side(tmp_path, capsys):
    a, b = report(tmp_path / "a"), report(tmp_path / "b")
    (b / "results.json").write_text("{}\n")
    assert main(["diff", str(a), str(b)]) == 1
    assert "only in A" in capsys.readouterr().out


def test_framework_on_one_side_only(tmp_path, capsys):
    a, b = report(tmp_path / "a"), report(tmp_path / "b")

    def without_torch(doc):
        del doc["check"]["models"][0]["frameworks"]["torch"]
        return doc

    edit_json(a / "results.json", without_torch)
    assert main(["diff", str(a), str(b)]) == 1
    assert "torch: only in B" in capsys.readouterr().out


def test_loss_on_one_side_only(tmp_path, capsys):
    """A non-finite loss is written as null: against a number it is a change."""
    a, b = report(tmp_path / "a"), report(tmp_path / "b")

    def null_loss(doc):
        doc["check"]["models"][0]["frameworks"]["torch"]["loss"] = None
        return doc

    edit_json(b / "results.json", null_loss)
    assert main(["diff", str(a), str(b)]) == 1
    assert "BEYOND" in capsys.readouterr().out


def with_check_loss(folder, literal):
    """`folder`'s results.json with torch's check loss written as the JSON text `literal`."""
    path = folder / "results.json"
    edit_json(path, check_loss("LOSS"))
    path.write_text(path.read_text().replace('"LOSS"', literal))


@pytest.mark.parametrize("left, right, says", [
    ("1e400", "1e300", "inf -> 1.0e+300"), ("1e300", "1e400", "1.0e+300 -> inf"),
    ("-1e400", "1e400", "-inf -> inf"), ("1e400", "-1e400", "inf -> -inf"),
    ("-1e400", "-1e300", "-inf -> -1.0e+300"), ("1e400", "1e400", None),
    ("-1e400", "-1e400", None)])
def test_a_check_loss_beyond_float64_is_compared_with_its_sign(tmp_path, capsys, left, right,
                                                                says):
    """crossgrad writes a non-finite loss as null, but a number beyond float64's range is
    standard JSON all the same, and reads as inf or -inf: compared either way round, -inf
    against inf a change printed with its sign (it read "inf -> inf"), the same infinity on
    both sides no change."""
    a, b = report(tmp_path / "a"), report(tmp_path / "b")
    with_check_loss(a, left)
    with_check_loss(b, right)
    assert main(["diff", str(a), str(b)]) == (0 if says is None else 1)
    out = capsys.readouterr().out
    if says is None:
        assert "identical results" in out, out
    else:
        (row,) = [line for line in out.splitlines() if line.startswith("check loss ")]
        assert f"torch: {says} " in row and row.endswith("BEYOND"), row


def test_curves_on_one_side_only(tmp_path, capsys):
    a, b = report(tmp_path / "a", curves=CURVES + NATIVE), report(tmp_path / "b")
    assert main(["diff", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "native numpy: only in A" in out and "aligned" not in out
    (b / "curves.csv").write_text("\n")  # a report without curves against one with them
    assert main(["diff", str(b), str(a)]) == 1
    out = capsys.readouterr().out
    assert "aligned torch: only in B" in out and "native numpy: only in B" in out


def test_a_model_named_like_a_number_or_nan_is_compared(tmp_path, capsys):
    """Names are read as text: a model "nan" (a valid spec name) is not NaN, so its curves
    are compared, not dropped from the comparison."""
    a = report(tmp_path / "a", check=False, curves=CURVES.replace("xor_2_2_1", "nan"))
    b = report(tmp_path / "b", check=False,
               curves=CURVES.replace("xor_2_2_1", "nan").replace("1,0.625", "1,0.626", 1))
    for folder in (a, b):
        edit_json(folder / "manifest.json", lambda doc: dict(doc, models=[
            dict(doc["models"][0], name="nan")]))
    assert main(["diff", str(a), str(b)]) == 1
    assert "nan float64" in capsys.readouterr().out


# ---- trainings: verdicts and lockstep --------------------------------------------------------

def train_results(verdict="PASS", parted=None):
    """results.json's `train` section of the curves above: numpy the reference, torch
    judged `verdict`, its lockstep parting at `parted`."""
    torch = {"status": "ok", "passed": verdict != "FAIL", "verdict": verdict,
             "lockstep_parted_at": parted, "lockstep_differs": []}
    return {"models": [{
        "name": "xor_2_2_1", "dtype": "float64", "mode": "aligned", "seed": 0,
        "spec_hash": HASH, "steps": 2, "reference": "numpy", "passed": verdict != "FAIL",
        "frameworks": {"numpy": {"status": "ok", "passed": True, "verdict": "PASS"},
                       "torch": torch}}]}


def trained(folder, curves=CURVES, **verdict):
    folder = report(folder, check=False, curves=curves)
    edit_json(folder / "results.json", lambda doc: dict(doc, train=train_results(**verdict)))
    return folder


def test_a_training_verdict_that_changed_is_beyond_tolerance(tmp_path, capsys):
    """The same curves, judged otherwise (torch's lockstep parting at step 0 in B): not
    identical results."""
    a, again = trained(tmp_path / "a"), trained(tmp_path / "again")
    assert main(["diff", str(a), str(again)]) == 0
    assert "identical results" in capsys.readouterr().out
    b = trained(tmp_path / "b", verdict="FAIL", parted=0)
    assert main(["diff", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "identical" not in out
    rows = [line.split(None, 3) for line in out.splitlines()
            if line.startswith(("training ", "lockstep "))]
    assert [(r[0], r[3].rsplit(None, 1)) for r in rows] == [
        ("training", ["aligned: passed True -> False", "BEYOND"]),
        ("training", ["aligned torch: PASS -> FAIL", "BEYOND"]),
        ("lockstep", ["aligned torch: parted at never -> step 0", "BEYOND"])]


def without_torch_training(doc):
    del doc["train"]["models"][0]["frameworks"]["torch"]
    return doc


@pytest.mark.parametrize("missing", ["results", "training", "framework"])
@pytest.mark.parametrize("side", ["A", "B"])
def test_a_training_on_one_side_only_is_beyond_tolerance(tmp_path, capsys, missing, side):
    """The same curves on both sides, but one side's results.json without the training
    (an empty document, no `train` section) or without one framework's: a difference,
    exit 1, never "identical results"."""
    a, b = trained(tmp_path / "a"), trained(tmp_path / "b")
    spoil = {"results": lambda doc: {}, "training": lambda doc: dict(doc, train=None),
             "framework": without_torch_training}[missing]
    edit_json((b if side == "A" else a) / "results.json", spoil)
    assert main(["diff", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    rows = [line.split(None, 3) for line in out.splitlines() if line.startswith("training ")]
    who = "aligned torch" if missing == "framework" else "aligned"
    assert [r[3].rsplit(None, 1) for r in rows] == [[f"{who}: only in {side}", "BEYOND"]], out
    assert "1 differences, 1 beyond tolerance" in out


@pytest.mark.parametrize("error, beyond", [("2e-16", False), ("5e-12", True), ("inf", True),
                                           ("", True)])
def test_lockstep_errors_are_compared_with_the_lockstep_tolerance(tmp_path, capsys, error,
                                                                  beyond):
    """curves.csv's lockstep_rel_err, step by step: a change within float64's 1e-12 is
    within, beyond it (or to inf) beyond; a step measured on one side only is a change."""
    a = trained(tmp_path / "a")
    b = trained(tmp_path / "b", curves=CURVES[:CURVES.rindex(",0.0")] + f",{error}\n")
    assert main(["diff", str(a), str(b)]) == int(beyond)
    rows = [line for line in capsys.readouterr().out.splitlines()
            if line.startswith("lockstep ")]
    assert len(rows) == 1 and "aligned torch" in rows[0], rows
    assert rows[0].endswith("BEYOND" if beyond else "within"), rows
    assert ("inf" in rows[0]) == (error == "inf"), rows


def test_a_malformed_training_verdict_is_one_line_and_exit_2(tmp_path, capsys):
    a, b = trained(tmp_path / "a"), trained(tmp_path / "b")

    def verdict_is_a_number(doc):
        doc["train"]["models"][0]["frameworks"]["torch"]["verdict"] = 1
        return doc

    edit_json(b / "results.json", verdict_is_a_number)
    assert main(["diff", str(a), str(b)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert "train.models[0].frameworks.torch.verdict" in err, err


@pytest.mark.parametrize("why", ["amplified_at", "branched_at", "lockstep_amplified"])
def test_a_curve_both_runs_found_amplified_is_marked_amplified(tmp_path, capsys, why):
    """torch's curve 1e-3 apart between the runs (far beyond float64's 1e-10): where both
    runs judged it PASS* for rounding (its curve amplified or branched with lockstep within
    at every step, or lockstep beyond within rounding's reach by its control), the change
    is marked amplified and the exit status is 0; where only one run did, it is beyond."""
    amplified = True
    moved = CURVES[:CURVES.rindex("0.625,0.25")] + "0.626,0.25,0.0,0.0\n"

    def starred(doc):
        doc["train"]["models"][0]["frameworks"]["torch"][why] = (
            True if why == "lockstep_amplified" else 1)
        return doc
    a, b = trained(tmp_path / "a", verdict="PASS*"), trained(tmp_path / "b", curves=moved,
                                                             verdict="PASS*")
    for folder in (a, b):
        edit_json(folder / "results.json", starred)
    assert main(["diff", str(a), str(b)]) == (0 if amplified else 1)
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if line.startswith("curve ")]
    assert row.endswith("amplified" if amplified else "BEYOND"), row
    assert "0 beyond tolerance, 1 beyond it where both runs judged the training PASS*" in out
    plain = trained(tmp_path / "plain", curves=moved, verdict="PASS*")  # A's alone: beyond
    assert main(["diff", str(a), str(plain)]) == 1
    (row,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("curve ")]
    assert row.endswith("BEYOND"), row


@pytest.mark.parametrize("b_verdict, b_why, marked", [
    ("PASS*", "lockstep_amplified", "amplified"),  # both parted within rounding's reach
    ("PASS*", "branched_at", "amplified"),  # A parted within its reach, B branched
    ("PASS", None, "BEYOND"),  # B found nothing to excuse: A's excuse is not B's
    ("FAIL", None, "BEYOND")])
def test_lockstep_changes_both_runs_put_down_to_rounding_are_amplified(tmp_path, capsys,
                                                                        b_verdict, b_why,
                                                                        marked):
    """A: torch PASS* by lockstep's control, lockstep parting at step 1 with an error of 1e-9
    (beyond float64's 1e-12, within rounding's reach). B: its lockstep error 1e-6 and its
    parting at step 0, judged as `b_verdict`. Where both runs say PASS* and one of them
    put lockstep's own parting down to rounding, the parting step and the error series
    moved as rounding does: amplified, exit 0. Otherwise both are beyond."""
    def with_error(error):
        return CURVES[:CURVES.rindex(",0.0")] + f",{error}\n"

    def starred(why):
        def edit(doc):
            if why is not None:
                doc["train"]["models"][0]["frameworks"]["torch"][why] = (
                    True if why == "lockstep_amplified" else 1)
            return doc
        return edit
    a = trained(tmp_path / "a", curves=with_error("1e-9"), verdict="PASS*", parted=1)
    edit_json(a / "results.json", starred("lockstep_amplified"))
    b = trained(tmp_path / "b", curves=with_error("1e-6"), verdict=b_verdict, parted=0)
    edit_json(b / "results.json", starred(b_why))
    assert main(["diff", str(a), str(b)]) == (0 if marked == "amplified" else 1)
    rows = [line for line in capsys.readouterr().out.splitlines()
            if line.startswith("lockstep ")]
    assert len(rows) == 2, rows
    assert "parted at step 1 -> step 0" in rows[0] and "error 1.0e-06" in rows[1], rows
    assert all(row.endswith(marked) for row in rows), rows
    assert all(("rounding's reach" in row) == (marked == "amplified") for row in rows), rows



# ---- non-finite losses, and files that are not regular files --------------------------------

def torch_loss(step, loss, curves=CURVES):
    """CURVES with torch's aligned loss at `step` written as `loss` ("" is NaN, as to_csv
    writes it)."""
    row = f"xor_2_2_1,float64,aligned,torch,{step},"
    start = curves.index(row) + len(row)
    return curves[:start] + loss + curves[curves.index(",", start):]


def curve_rows(capsys, a, b, exit_status):
    """The `curve` rows of `crossgrad diff a b`, whose exit status must be `exit_status`
    and which must warn of nothing (numpy's RuntimeWarnings of inf - inf, inf / inf)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["diff", str(a), str(b)]) == exit_status
    out, err = capsys.readouterr()
    assert not caught and err == "", ([str(w.message) for w in caught], err)
    return [line for line in out.splitlines() if line.startswith("curve ")]


def test_non_finite_losses_are_compared_where_they_are(tmp_path, capsys):
    """torch's loss NaN at step 0 in A, at step 1 in B: as many NaNs on each side, but not
    the same run; a NaN against a number is a change beyond tolerance, either way round."""
    a = report(tmp_path / "a", curves=torch_loss(0, ""))
    b = report(tmp_path / "b", curves=torch_loss(1, ""))
    for x, y, says in ((a, b, "step 0 nan -> 7.5e-01"), (b, a, "step 0 7.5e-01 -> nan")):
        (row,) = curve_rows(capsys, x, y, 1)
        assert "aligned torch: loss at " + says in row and row.endswith("BEYOND"), row
    assert curve_rows(capsys, a, report(tmp_path / "a2", curves=torch_loss(0, "")), 0) == []


@pytest.mark.parametrize("other", ["1e300", "-inf", ""], ids=["finite", "-inf", "nan"])
def test_inf_against_anything_else_is_beyond_tolerance_either_way(tmp_path, capsys, other):
    """A diverging run (inf) against the same run ending at a finite loss, at -inf or at NaN:
    beyond tolerance whichever report is A; the same inf on both sides agrees, silently."""
    inf = report(tmp_path / "inf", curves=torch_loss(1, "inf"))
    b = report(tmp_path / "b", curves=torch_loss(1, other))
    for x, y in ((inf, b), (b, inf)):
        (row,) = curve_rows(capsys, x, y, 1)
        assert "aligned torch: loss at step 1" in row and row.endswith("BEYOND"), row
    assert curve_rows(capsys, inf, inf, 0) == []


@pytest.mark.parametrize("left, right, says", [
    ("-inf", "inf", "-inf -> inf"), ("inf", "-inf", "inf -> -inf"),
    ("-inf", "1e300", "-inf -> 1.0e+300"), ("", "-inf", "nan -> -inf")])
def test_a_loss_at_minus_inf_is_printed_with_its_sign(tmp_path, capsys, left, right, says):
    """curves.csv holds -inf as to_csv writes it: against inf it is a change, and the row
    says which side had which (it printed "inf -> inf", no change to the reader)."""
    a = report(tmp_path / "a", curves=torch_loss(1, left))
    b = report(tmp_path / "b", curves=torch_loss(1, right))
    (row,) = curve_rows(capsys, a, b, 1)
    assert f"aligned torch: loss at step 1 {says} " in row and row.endswith("BEYOND"), row


def test_minus_inf_at_the_same_place_in_both_runs_is_identical(tmp_path, capsys):
    """-inf in the same curve step and as the same check loss (-1e400: standard JSON that
    reads as -inf) on both sides: identical results, exit 0."""
    a, b = (report(tmp_path / side, curves=torch_loss(1, "-inf")) for side in "ab")
    for folder in (a, b):
        with_check_loss(folder, "-1e400")
    assert main(["diff", str(a), str(b)]) == 0
    assert "identical results" in capsys.readouterr().out


def test_an_inf_both_sides_share_leaves_the_finite_steps_compared(tmp_path, capsys):
    """inf at step 1 on both sides, step 0 moved by 1e-3: the finite step's change is
    measured on the finite steps (an inf - inf must not make the worst change NaN)."""
    a = report(tmp_path / "a", curves=torch_loss(1, "inf"))
    b = report(tmp_path / "b", curves=torch_loss(0, "0.75075", torch_loss(1, "inf")))
    (row,) = curve_rows(capsys, a, b, 1)
    assert "aligned torch: max rel. change 1.0e-03" in row and row.endswith("BEYOND"), row


@pytest.mark.parametrize("name", ["manifest.json", "results.json", "curves.csv"])
def test_a_report_file_that_is_a_fifo_is_refused_at_once(tmp_path, name):
    """A FIFO blocks its reader until someone writes (and curves.csv's size 0 is no
    emptiness): refused as a spec file is, one line naming it, exit 2. In a child process
    with a timeout: a regression hangs, and the timeout fails the test."""
    a, b = report(tmp_path / "a"), report(tmp_path / "b")
    (b / name).unlink()
    os.mkfifo(b / name)
    done = crossgrad(tmp_path, ["diff", a, b], timeout=60)
    assert done.code == 2 and done.stdout == "", done
    assert done.stderr == (f"crossgrad: {b / name}: is a FIFO (named pipe), expected a "
                           f"regular file (a crossgrad report file)\n"), done.stderr


@pytest.mark.parametrize("command, name", [("diff", "results.json"), ("diff", "manifest.json"),
                                           ("explain", "results.json")])
def test_json_nested_too_deeply_is_one_line_and_exit_2(tmp_path, command, name):
    """100000 `[` in a report file: Python's JSON parser gives up with a RecursionError,
    which is bad input like any other (one line naming the file, exit 2), never a
    traceback; `explain --results` reads results.json the same way."""
    a, b = report(tmp_path / "a"), report(tmp_path / "b")
    (b / name).write_text("[" * 100000 + "]" * 100000)
    before = sorted(p.name for folder in (a, b) for p in folder.rglob("*"))
    argv = (["diff", a, b] if command == "diff" else
            ["explain", "xor_2_2_1", "--results", b, "--out", tmp_path / "pages"])
    done = crossgrad(tmp_path, argv, timeout=120)
    assert done.code == 2 and done.stdout == "", done
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith(f"crossgrad: {b / name}: "), done.stderr
    assert "nested too deeply" in done.stderr, done.stderr
    assert sorted(p.name for folder in (a, b) for p in folder.rglob("*")) == before
    assert not (tmp_path / "pages").exists()  # nothing written
