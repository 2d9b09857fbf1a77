"""The command line end to end: outputs, schemas, exit codes, reports, diff."""
import json
import warnings

import numpy as np

from crossgrad.harness.cli import main

from conftest import need

XOR = ["--zoo", "xor_2_2_1"]


def test_check_json_schema(tmp_path):
    out = tmp_path / "check.json"
    assert main(["check", *XOR, "--zoo", "mlp_3_4_2", "--frameworks", "numpy", "--json", str(out),
                 "--quiet"]) == 0
    doc = json.loads(out.read_text())
    assert [m["name"] for m in doc["models"]] == ["xor_2_2_1", "mlp_3_4_2"]
    m = doc["models"][0]
    assert {"name", "dtype", "passed", "frameworks", "comparisons", "finite_difference"} <= set(m)
    assert m["frameworks"]["numpy"]["status"] == "ok"
    assert isinstance(m["frameworks"]["numpy"]["loss"], float)
    fd = m["finite_difference"][0]
    assert {"framework", "param", "rel_err", "status"} <= set(fd)
    assert {r["param"] for r in m["finite_difference"]} == {"0.W", "0.b", "2.W", "2.b"}


def test_check_save_golden_files(tmp_path):
    assert main(["check", *XOR, "--frameworks", "numpy", "--save", str(tmp_path / "g"),
                 "--quiet"]) == 0
    folder = tmp_path / "g" / "xor_2_2_1"
    params, batch, grads = (np.load(folder / f) for f in ("params.npz", "batch.npz", "numpy.npz"))
    assert set(params.files) == {"0.W", "0.b", "2.W", "2.b"}
    assert params["0.W"].shape == (2, 2) and params["2.W"].shape == (2, 1)
    assert batch["x"].shape == (1, 2) and batch["y"].shape == (1, 1)  # per-example SGD
    assert set(grads.files) == {"loss", "0.W", "0.b", "2.W", "2.b"}


def test_dtype_override(tmp_path):
    out = tmp_path / "c.json"
    assert main(["check", *XOR, "--frameworks", "numpy", "--dtype", "float32", "--json", str(out),
                 "--quiet"]) == 0
    m = json.loads(out.read_text())["models"][0]
    assert m["dtype"] == "float32" and m["finite_difference"] == []
    # one framework and no finite differences in float32: nothing disagreed, nothing compared
    assert m["passed"] and m["unchecked"].startswith("nothing compared (ran: numpy;")


# binary cross-entropy of a bare dense layer's outputs: log of a negative number, nan
NAN_LOSS = """name = "nan_loss"
input_shape = [2]
loss = { type = "binary_cross_entropy" }
data = { source = "xor" }
layers = [ { type = "dense", units = 1, init = { type = "uniform", low = -3.0, high = 3.0 } } ]
optimizer = { type = "sgd", lr = 0.1 }
"""


def test_a_loss_not_finite_in_every_framework_is_said_so_not_a_disagreement(tmp_path, capsys):
    need("torch")
    spec, out = tmp_path / "nan_loss.toml", tmp_path / "check.json"
    spec.write_text(NAN_LOSS)
    assert main(["check", str(spec), "--frameworks", "numpy,torch", "--json", str(out),
                 "--quiet"]) == 1
    m = json.loads(out.read_text())["models"][0]
    assert not m["passed"] and m["not_finite"].startswith(
        "the loss is nan in every framework that ran (numpy, torch)")
    lines = capsys.readouterr().out.splitlines()
    row = next(line for line in lines if line.startswith("nan_loss"))
    assert row.split()[-4:] == ["nan", "nan", "NOT", "FINITE"]  # np~pt was shown as 0.0e+00
    assert not any("disagree" in line or "parts from" in line for line in lines)
    assert "0 passed, 0 failed, 1 with a loss not finite" in lines[-1]


def test_a_loss_that_overflows_to_inf_in_every_framework_is_said_so(tmp_path, capfd):
    """Weights of 1e200 square to inf in float64's mean squared error: the same infinite loss
    in both frameworks ended `check` in a traceback (pairwise's patch of equal infinities
    assigned into a 0-d loss), and finite differences printed NumPy's overflow warnings."""
    need("torch")
    spec, out = tmp_path / "inf_loss.toml", tmp_path / "check.json"
    spec.write_text(NAN_LOSS.replace('"binary_cross_entropy"', '"mse"').replace(
        'type = "uniform", low = -3.0, high = 3.0', 'type = "constant", value = 1e200'))
    assert main(["check", str(spec), "--frameworks", "numpy,torch", "--json", str(out),
                 "--quiet"]) == 1
    m = json.loads(out.read_text())["models"][0]
    assert m["not_finite"].startswith("the loss is inf in every framework that ran")
    assert capfd.readouterr().err == ""


OVERFLOWING_PROBES = """
name = "overflowing_probes"
dtype = "float64"
input_shape = [3]
[data]
source = "random_classification"
classes = 2
examples = 4
[[layers]]
type = "dense"
units = 4
init = { type = "normal", std = 1e-10 }
[[layers]]
type = "dense"
units = 2
init = { type = "uniform", low = -8e307, high = 8e307 }
[loss]
type = "softmax_cross_entropy"
[optimizer]
type = "sgd"
lr = 0.1
"""


def test_second_order_checks_of_an_overflowing_loss_print_no_numpy_warnings(tmp_path, capfd):
    """Logits near 1e297: the loss at p + t d overflows for the larger steps, and the
    Hessian-vector rows' differences printed NumPy's overflow warnings around the table."""
    need("torch")
    spec = tmp_path / "overflowing_probes.toml"
    spec.write_text(OVERFLOWING_PROBES)
    with warnings.catch_warnings(record=True) as caught:  # pytest would otherwise hold them
        warnings.simplefilter("always")
        main(["check", str(spec), "--frameworks", "numpy,torch", "--order", "2", "--quiet",
              "--json", str(tmp_path / "check.json")])
    assert [str(w.message) for w in caught] == []
    assert "Warning" not in capfd.readouterr().err


def test_seed_changes_the_numbers(tmp_path):
    losses = []
    for seed in (0, 1):
        out = tmp_path / f"{seed}.json"
        main(["check", *XOR, "--frameworks", "numpy", "--seed", str(seed), "--json", str(out),
              "--quiet"])
        losses.append(json.loads(out.read_text())["models"][0]["frameworks"]["numpy"]["loss"])
    assert losses[0] != losses[1]


def test_train_outputs(tmp_path, capsys):
    out = tmp_path / "t.json"
    assert main(["train", "--zoo", "digits_mlp", "--frameworks", "numpy", "--steps", "7",
                 "--json", str(out), "--save", str(tmp_path / "s"), "--quiet"]) == 0
    m = json.loads(out.read_text())["models"][0]
    assert m["steps"] == 7 and m["mode"] == "aligned"
    # NumPy alone: no pair, and the reference takes no lockstep beside itself
    assert m["passed"] and m["unchecked"].startswith("nothing compared (ran: numpy;")
    saved = np.load(tmp_path / "s" / "digits_mlp" / "numpy.npz")
    assert saved["loss"].shape == (7,) and saved["0.W"].shape == (64, 300)
    batch = np.load(tmp_path / "s" / "digits_mlp" / "batch.npz")
    assert batch["x"].shape == (1797, 64) and batch["batches"].shape == (7, 32)
    printed = capsys.readouterr().out
    assert "UNCHECKED" in printed and "1 trainings: 1 unchecked" in printed


def test_run_writes_a_complete_report(tmp_path):
    out = tmp_path / "reports" / "latest"
    assert main(["run", *XOR, "--zoo", "batchnorm_mlp", "--frameworks", "numpy", "--steps", "5",
                 "--out", str(out), "--quiet"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"manifest.json", "results.json", "curves.csv", "gradients.csv", "grad_norms.csv",
            "report.md", "report.html", "plots"} <= names
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"versions", "cpu", "threads", "git", "command", "started", "finished", "models"} <= set(manifest)
    assert {m["dtype"] for m in manifest["models"]} == {"float64", "float32"}
    import pandas as pd
    curves = pd.read_csv(out / "curves.csv")
    assert {"model", "framework", "step", "loss", "grad_norm"} <= set(curves.columns)
    assert set(curves["mode"]) == {"aligned", "native"}
    html = (out / "report.html").read_text()
    assert html.count("<div class='panels'>") == 2  # interactive plots per model
    assert {"xor_2_2_1.png", "batchnorm_mlp.png"} <= {p.name for p in (out / "plots").iterdir()}
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".latest")]


def test_diff_identical_and_changed(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        assert main(["run", *XOR, "--frameworks", "numpy", "--steps", "4", "--out", str(folder),
                     "--quiet", "--skip-native"]) == 0
    assert main(["diff", str(a), str(b)]) == 0
    assert "identical" in capsys.readouterr().out
    curves = (b / "curves.csv").read_text().splitlines()
    fields = curves[1].split(",")
    col = curves[0].split(",").index("loss")
    fields[col] = repr(float(fields[col]) * (1 + 1e-6))
    (b / "curves.csv").write_text("\n".join([curves[0], ",".join(fields), *curves[2:]]) + "\n")
    assert main(["diff", str(a), str(b)]) == 1
    assert "BEYOND" in capsys.readouterr().out


def test_diff_of_a_folder_that_is_not_a_report(tmp_path, capsys):
    assert main(["diff", str(tmp_path), str(tmp_path)]) == 2
    assert "manifest.json" in capsys.readouterr().err


def test_zoo_lists_every_spec_with_its_story(capsys):
    assert main(["zoo"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) >= 14 and all(len(line.split(None, 1)) == 2 for line in lines)
