"""The finite-difference budget is a hard cap (reported when it bites), the zoo's probes are
unchanged, and a training that diverges in every framework alike says so everywhere."""
import json
import math
import zlib

import numpy as np
import pytest

from crossgrad.harness import api
from crossgrad.harness.cli import main
from crossgrad.harness.compare.results import assemble_check
from crossgrad.harness.errors import InputError
from crossgrad.harness.report.tables import sampled, train_table
from crossgrad.harness.spec import parse_spec, probes, zoo_names, zoo_spec
from crossgrad.harness.spec.initializers import init_params

from conftest import FRAMEWORKS, need


def former_probes(param_shapes, seed):
    """The probes before the cap: every tensor at least once, even beyond the budget."""
    def candidates(name, size):
        if size <= probes.SMALL:
            return [np.eye(size)[i] for i in range(size)]
        rng = np.random.default_rng([seed, 4, zlib.crc32(name.encode())])
        gauss = [rng.standard_normal(size) for _ in range(2)]
        return [g / np.linalg.norm(g) for g in gauss] + [np.eye(1, size, rng.integers(size)).ravel()]
    picks = {n: candidates(n, math.prod(s)) for n, s in param_shapes.items()}
    out = []
    for round_ in range(max(map(len, picks.values()), default=0)):
        for name, shape in param_shapes.items():
            if round_ < len(picks[name]) and (round_ == 0 or len(out) < probes.BUDGET):
                out.append((name, picks[name][round_].reshape(shape)))
    return sorted(out, key=lambda p: list(param_shapes).index(p[0]))


@pytest.mark.parametrize("name", zoo_names())
def test_the_zoos_probes_do_not_change(name):
    spec = zoo_spec(name)
    shapes = {k: v.shape for k, v in init_params(spec).items()}
    for seed in (0, 3):
        new, old = probes.probes(shapes, seed), former_probes(shapes, seed)
        assert [n for n, _ in new] == [n for n, _ in old]
        assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(new, old))


def deep(layers, **top):
    raw = {"name": "deep", "input_shape": [3], "seed": 4,
           "data": {"source": "random_classification", "examples": 8},
           "layers": [{"type": "dense", "units": 3, "init": "he_normal"}] * layers,
           "loss": {"type": "softmax_cross_entropy"}}
    return parse_spec(dict(raw, **top), "deep.toml", "deep")


def test_beyond_the_budget_a_seeded_sample_of_tensors_is_probed():
    shapes = {k: v.shape for k, v in init_params(deep(100)).items()}  # 200 tensors
    chosen = probes.probes(shapes, 4)
    assert len(chosen) == probes.BUDGET == len({n for n, _ in chosen})
    assert [n for n, _ in chosen] == [n for n, _ in probes.probes(shapes, 4)]
    assert [n for n, _ in chosen] != [n for n, _ in probes.probes(shapes, 5)]
    assert [n for n, _ in chosen] == [n for n in shapes if n in dict(chosen)]  # spec order
    assert len(former_probes(shapes, 4)) == 200  # what it was


def test_the_json_and_table_say_how_many_tensors_were_probed(tmp_path, capsys):
    path = tmp_path / "deep.json"
    raw = json.loads(json.dumps({k: v for k, v in deep(40).raw.items()}))
    path.write_text(json.dumps(raw))
    code = main(["check", str(path), "--frameworks", "numpy", "--quiet",
                 "--json", str(tmp_path / "out.json")])
    out = capsys.readouterr().out
    assert code == 0, out
    model = json.loads((tmp_path / "out.json").read_text())["models"][0]
    assert model["fd_tensors"] == {"probed": 64, "total": 80}
    assert len(model["finite_difference"]) == 64
    assert "finite differences probed 64 of 80 parameter tensors" in out


def test_where_no_framework_probed_the_json_says_none_were():
    spec = zoo_spec("mlp_3_4_2")
    inputs = api.prepare([spec])[0][1]
    m = assemble_check(spec, inputs, {"numpy": {"status": "failed", "error": "boom"}},
                       ["numpy"], {})
    assert m["finite_difference"] == [] and m["fd_tensors"] == {"probed": 0, "total": 4}
    assert sampled(m) == ""  # not "probed 0 of 4 (the budget is 64 probes)"


def test_within_the_budget_nothing_is_said():
    spec = zoo_spec("mlp_3_4_2")
    inputs = api.prepare([spec])[0][1]
    assert inputs.fd_tensors == {"probed": 4, "total": 4}


LR_1E308 = {"name": "lr_1e308", "input_shape": [4], "data": {"source": "random_classification",
                                                              "examples": 10},
            "layers": [{"type": "dense", "units": 3}], "loss": {"type": "softmax_cross_entropy"},
            "optimizer": {"type": "sgd", "lr": 1e308}, "train": {"steps": 5}}


@pytest.fixture(scope="module")
def diverged(executor):
    specs = [parse_spec(dict(LR_1E308, dtype="float64"), "lr.toml", "lr_1e308")]
    return api.train(specs, executor=executor).models


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_lr_1e308_diverges_at_step_1_in_every_framework(diverged, framework):
    need(framework)
    model = next(m for m in diverged if m["dtype"] == "float64")
    info = model["frameworks"][framework]
    assert info["status"] == "ok" and info["diverged_at"] == 1, info
    assert model["diverged_at"] == 1 and model["passed"] is True


def test_lr_1e308_in_float32_is_refused_as_the_spec_is_read():
    """1e308 is beyond float32: NumPy, Keras and JAX held it as inf and diverged at step 1,
    while torch.optim refused to hold it ("cannot be converted to type float without
    overflow"), and the model's verdict was FAIL, blamed on a framework. It is bad input."""
    with pytest.raises(InputError) as err:
        parse_spec(dict(LR_1E308, dtype="float32"), "lr.toml", "lr_1e308")
    assert str(err.value) == ("lr.toml: optimizer.lr: 1e+308 is beyond float32's largest finite "
                              "value (3.4e+38)")


def test_diverged_alike_is_said_in_the_table_json_and_report(tmp_path, capsys):
    path = tmp_path / "lr.json"
    path.write_text(json.dumps(LR_1E308))
    code = main(["train", str(path), "--frameworks", "numpy", "--quiet",
                 "--json", str(tmp_path / "out.json"), "--out", str(tmp_path / "report")])
    out = capsys.readouterr().out
    assert code == 0  # the frameworks agree: the verdict is DIVERGED, the exit status 0
    row = next(line for line in out.splitlines() if line.startswith("lr_1e308"))
    assert row.split()[-1] == "DIVERGED" and "PASS" not in row
    assert "every framework diverged (non-finite loss or gradient norm) at step 1" in out
    assert "1 diverged in every framework alike" in out
    model = json.loads((tmp_path / "out.json").read_text())["models"][0]
    assert model["diverged_at"] == 1 and model["frameworks"]["numpy"]["diverged_at"] == 1
    report = (tmp_path / "report" / "report.md").read_text()
    assert "DIVERGED" in report and "diverged (non-finite loss or gradient norm) at step 1" in report


def test_frameworks_that_diverge_at_different_steps_fail():
    model = {"name": "m", "dtype": "float64", "mode": "aligned", "steps": 5, "reference": "numpy",
             "passed": False, "diverged_at": None,
             "frameworks": {"numpy": {"status": "ok", "diverged_at": 1, "final_loss": math.nan,
                                      "max_rel_diff": 0.0, "passed": True},
                            "torch": {"status": "ok", "diverged_at": 2, "final_loss": math.nan,
                                      "max_rel_diff": math.inf, "passed": False}}}
    table = train_table([model])
    assert table.splitlines()[1].split()[-1] == "FAIL"
    assert "numpy diverged" in table and "torch diverged" in table and "step 2" in table
