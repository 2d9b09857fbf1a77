"""`crossgrad sweep` and `crossgrad bench` take their lists as they say: seeds counted from
their ranges before any variant is made (at most sweep.VARIANTS), each value named once,
bench's --json written, and an option's value blamed on the option, never on a spec.

What could allocate or run for long on a regression runs in a child process with an
address-space limit and a timeout (tests/limited.py); everything is written under tmp_path.
"""
import json
from types import SimpleNamespace

import pytest

from crossgrad.harness.cli import main
from crossgrad.harness.commands import sweep_rows
from crossgrad.harness.errors import InputError
from crossgrad.harness.options import choice_list, positive_int_list
from crossgrad.harness.sweep import VARIANTS, check_count, parse_seeds

from limited import NOTHING_BUILT, crossgrad

XOR = ["--zoo", "xor_2_2_1", "--frameworks", "numpy"]


@pytest.mark.parametrize("text, seeds", [("0-3,7", [0, 1, 2, 3, 7]), ("5,1", [1, 5]),
                                         (" 2 , 0-1 ", [0, 1, 2]), ("4,", [4])])
def test_seeds_are_ranges_and_lists_in_ascending_order(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text, words", [("0,0", "names seed 0 twice"),
                                         ("0-5,3-8", "names seed 3 twice"),
                                         ("", "names no seed"), (",", "names no seed"),
                                         (f"0-{VARIANTS}", f"names {VARIANTS + 1:,} seeds"),
                                         ("3-1", "ranges go up"), ("x", "expected N")])
def test_bad_seeds_name_the_flag(text, words):
    with pytest.raises(InputError) as err:
        parse_seeds(text)
    assert err.value.file == "--seeds" and words in str(err.value)


def test_the_variants_of_specs_seeds_and_optimizers_are_counted_before_any_is_made():
    specs = [object(), object()]  # check_count looks at how many, nothing else
    check_count(specs, range(VARIANTS // 2), [])
    with pytest.raises(InputError) as err:
        check_count(specs, range(VARIANTS // 2), ["sgd", "adam"])
    assert err.value.file == "--seeds" and f"{2 * VARIANTS:,} variants" in str(err.value)


@pytest.mark.parametrize("seeds", ["0-99999999999", "0-999999"])
def test_a_million_seeds_or_more_is_one_line_at_once(tmp_path, seeds):
    """0-99999999999 was a MemoryError; 0-999999 started a million variants."""
    done = crossgrad(tmp_path, ["sweep", *XOR, "--steps", "2", "--seeds", seeds, "--json",
                                tmp_path / "out.json"], address_space=1 << 30, timeout=60)
    err = done.stderr.strip()
    assert done.code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("crossgrad: --seeds: names ") and f"at most {VARIANTS:,}" in err
    assert done.peak_rss < NOTHING_BUILT, done.peak_rss  # no list of variants was built
    assert not (tmp_path / "out.json").exists()


def test_a_seed_too_long_for_the_variant_s_name_names_the_flag(capsys):
    """The zoo spec's name fits; the sweep's `-s<seed>` suffix once was blamed on it."""
    seed = "1" + "0" * 100
    assert main(["sweep", *XOR, "--seeds", seed, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"crossgrad: --seeds: seed {seed} makes a variant's name "), err


def test_an_optimizer_that_makes_the_variant_s_name_too_long_names_its_flag(tmp_path, capsys):
    """A 94-character spec name: `-s0` fits, `-s0-adagrad` does not; --seeds was blamed."""
    path = tmp_path / "long.json"
    path.write_text(json.dumps({"name": "n" * 94, "input_shape": [2], "data": {"source": "xor"},
                                "layers": [{"type": "dense", "units": 1}],
                                "loss": {"type": "mse"}}))
    assert main(["sweep", str(path), "--frameworks", "numpy", "--optimizers", "adagrad",
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("crossgrad: --optimizers: optimizer adagrad makes a variant's name "), err


def test_steps_the_memory_estimate_refuses_name_the_flag(tmp_path):
    """The spec's own train.steps is small: --steps made the curves too big."""
    done = crossgrad(tmp_path, ["train", *XOR, "--steps", "10000000", "--max-memory", "1"],
                     address_space=1 << 30, timeout=60)
    assert done.code == 2, done.stderr
    assert done.stderr.startswith("crossgrad: --steps: 10,000,000 steps need "), done.stderr


@pytest.mark.slow  # subprocesses: a few seconds
def test_bench_writes_the_json_its_help_promises(tmp_path):
    """--json was accepted and nothing was written; `--json -` printed the tables."""
    out = tmp_path / "bench.json"
    args = ["bench", *XOR, "--steps", "2", "--seeds", "0-1", "--quiet"]
    done = crossgrad(tmp_path, [*args, "--workers-list", "1,2", "--json", out],
                     address_space=4 << 30, timeout=300)
    assert done.code == 0, done.stderr
    document = json.loads(out.read_text())
    timings = document["timings"]
    assert [t["workers"] for t in timings] == [1, 2]
    assert all(t["same_bits"] and t["digest"] == document["digest"] for t in timings)
    assert {"jobs", "wall_seconds", "busy_seconds", "speedup"} <= set(timings[0])
    names = ["xor_2_2_1-s0", "xor_2_2_1-s1"]
    assert [m["name"] for m in document["check"]["models"]] == names
    assert [m["name"] for m in document["train"]["models"]] == names
    assert [m["name"] for m in document["manifest"]["models"]] == names
    assert "same bits" in done.stdout
    to_stdout = crossgrad(tmp_path, [*args, "--workers-list", "1", "--json", "-"],
                          address_space=4 << 30, timeout=300)
    assert to_stdout.code == 0, to_stdout.stderr
    assert json.loads(to_stdout.stdout)["timings"][0]["workers"] == 1
    assert "same bits" in to_stdout.stderr


def test_a_sweep_of_seeds_and_optimizers_runs_each_once(tmp_path):
    out = tmp_path / "sweep.json"
    done = crossgrad(tmp_path, ["sweep", *XOR, "--steps", "2", "--seeds", "0-1",
                                "--optimizers", "sgd,adam", "--quiet", "--json", out],
                     address_space=4 << 30, timeout=300)
    assert done.code == 0, done.stderr
    names = [m["name"] for m in json.loads(out.read_text())["train"]["models"]]
    assert names == ["xor_2_2_1-s0-sgd", "xor_2_2_1-s0-adam", "xor_2_2_1-s1-sgd",
                     "xor_2_2_1-s1-adam"]


@pytest.mark.parametrize("flag, text, values", [
    ("--batch-sizes", "1,", [1]), ("--batch-sizes", " 100 , 1 ", [100, 1]),
    ("--workers-list", "2,,1", [2, 1]), ("--seeds", "0,", [0]), ("--dtypes", "float32,", None)])
def test_an_empty_item_of_a_list_option_is_dropped_in_every_one(flag, text, values):
    """`--batch-sizes 1,` was "expected a whole number, got ''" where `--seeds 0,` ran."""
    parse = {"--batch-sizes": positive_int_list("batch size"),
             "--workers-list": positive_int_list("worker count"), "--seeds": parse_seeds,
             "--dtypes": choice_list(["float64", "float32"], "dtype")}[flag]
    assert parse(text) == (values or ["float32"])


def test_a_variant_with_nothing_compared_is_unchecked_as_in_check_and_train():
    """NumPy alone in float32: check and train said UNCHECKED, the sweep PASS."""
    checked = {"name": "xor-s0", "dtype": "float32", "comparisons": [], "passed": True}
    trained = {"frameworks": {"numpy": {"max_rel_diff": 0.0}}, "passed": True}
    rows = sweep_rows(SimpleNamespace(models=[dict(checked, unchecked="nothing compared"),
                                              checked, dict(checked, passed=False)]),
                      SimpleNamespace(models=[trained, trained, trained]))
    assert [r[-1] for r in rows] == ["UNCHECKED", "PASS", "FAIL"]
