"""`crossgrad explain`: code read from the source for every layer type and framework, the
layout lines that hold for a type, the pages (offline, four columns), the command.

The extraction tests parse files only (fast); one test runs the command end to end with
NumPy and PyTorch, and the bad-input tests stop before any worker starts.
"""
import ast
import json
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest

from crossgrad.harness import registry
from crossgrad.harness.errors import InputError
from crossgrad.harness.spec.catalog import PARSERS
from crossgrad.harness.spec.examples import LAYERS as EXAMPLES, for_type
from crossgrad.harness.teach import agreement, equations, pages, source
from crossgrad.harness.teach.command import resolve
from crossgrad.harness.teach.measure import Measured, examples_of

FRAMEWORKS = registry.ORDER
TYPES = list(PARSERS)


# ---- extraction --------------------------------------------------------------------------------

@pytest.mark.parametrize("layer_type", TYPES)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_every_builder_is_found_with_what_it_uses(framework, layer_type):
    found = source.builder(framework, layer_type)
    assert found, f"nothing extracted for {layer_type} in {framework}"
    first = found[0]
    assert first.name == layer_type
    assert first.text.lstrip().startswith(f"def {layer_type}(layer, dtype, native):")
    ast.parse(first.text)  # a whole definition, not a cut one
    for s in found:
        assert s.path == f"impls/{registry.FRAMEWORKS[framework].package.split('.')[-1]}/layers.py"
        lines = source.impl_file(framework, "layers").read_text().splitlines()
        assert lines[s.line - 1].strip() == s.text.splitlines()[0].strip()  # where it says


@pytest.mark.parametrize("layer_type", TYPES)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_every_layer_type_has_layout_lines(framework, layer_type):
    found = source.layout(framework, layer_type)
    names = [s.name for s in found]
    assert "to_native" in names and "from_native" in names
    for s in found:
        assert s.text.strip() and s.path.endswith("layout.py")


@pytest.mark.parametrize("layer_type", TYPES)
def test_the_math_of_every_type(layer_type):
    lines = {source.docstring_line(fw, layer_type) for fw in FRAMEWORKS}
    assert len(lines) == 1 and next(iter(lines))  # the canonical equation, shared
    assert equations.backward(layer_type)
    assert examples_of(layer_type), f"no example spec holds a {layer_type} layer"


def test_uses_are_followed_through_bases_and_calls():
    torch_dense = [s.name for s in source.builder("torch", "dense")]
    assert torch_dense == ["dense", "is_image", "class ChannelsLast", "class ImageLinear"]
    numpy_lstm = [s.name for s in source.builder("numpy", "lstm")]
    assert {"recurrent", "add_step_gradients", "logistic"} <= set(numpy_lstm)
    assert "build_layer" not in numpy_lstm + [s.name for s in source.builder("numpy", "residual")]


def text_of(framework, layer_type):
    return "\n".join(s.text for s in source.layout(framework, layer_type))


def test_layout_lines_are_the_ones_for_the_type():
    dense = text_of("torch", "dense")
    assert 'native["weight"] = p["W"].T' in dense and "permute" not in dense
    assert "weight_ih_l0" not in dense and '"bias"' in dense
    lstm = text_of("torch", "lstm")
    assert 'torch.zeros_like(p["b"])' in lstm        # the frozen second bias
    assert 'native["bias_ih_l0"], native["bias_hh_l0"] = p["b"]' not in lstm  # GRU's branch
    assert "_swap_r_z" in text_of("tensorflow", "gru") and "_swap_r_z" not in text_of(
        "tensorflow", "lstm")
    assert '"lstm_cell"' in text_of("tensorflow", "lstm")
    assert "split_heads" in text_of("jax", "attention")
    assert "nothing moves" in text_of("jax", "dense")
    assert text_of("numpy", "conv2d").count("return dict(") == 2


@pytest.mark.parametrize("condition, expected", [
    ('kind == "dense"', True), ('kind == "conv2d"', False), ('kind in ("dense", "x")', True),
    ('kind in RECURRENT', False), ('"plugin" in layer', False), ('not kind == "dense"', False),
    ('kind == "dense" and "weight" in n', None), ('kind == "conv2d" and "weight" in n', False),
    ('layer["type"] == "dense" or x', True), ('x > 1', None)])
def test_a_condition_is_decided_for_a_type(condition, expected):
    test = ast.parse(condition, mode="eval").body
    assert source.truth(test, "dense", {"RECURRENT": ("rnn", "lstm", "gru")}, {"kind"}) \
        is expected


# ---- pages -------------------------------------------------------------------------------------

def fake_check(name, dtype, layer_type, error):
    """A check entry shaped like compare/results.py's, for one layer of `layer_type`."""
    pairs = [(a, b) for i, a in enumerate(FRAMEWORKS) for b in FRAMEWORKS[i + 1:]]
    return {"name": name, "dtype": dtype, "passed": error < 1e-12, "frameworks": {
        fw: {"status": "ok"} for fw in FRAMEWORKS},
        "layers": [{"layer": "0", "type": layer_type, "a": a, "b": b, "forward_rel_err": 1e-16,
                    "backward_rel_err": error} for a, b in pairs],
        "comparisons": [{"param": "0.W", "kind": "grad", "a": a, "b": b, "rel_err": 2e-16,
                         "passed": True} for a, b in pairs],
        "finite_difference": [{"framework": "numpy", "param": "0.W", "rel_err": 1e-11,
                               "status": "ok", "passed": True}]}


def test_a_layer_page_has_four_columns_of_code_and_the_measurement():
    measured = Measured("made up for the test", layers={"lstm": {
        "float64": fake_check("lstm", "float64", "lstm", 3e-16)}})
    html = pages.layer_page("lstm", measured)
    assert html.count("<div class='col'>") == 8          # implementations, then layout.py
    for fw in FRAMEWORKS:
        assert f"{registry.FRAMEWORKS[fw].label}: impls/" in html
    assert html.count("lstm</span><span class=\"p\">(</span><span class=\"n\">layer") == 4
    assert "3.0e-16" in html and "PASS" in html and "made up for the test" in html
    assert "http://" not in html and "https://" not in html and "<script" not in html


def test_every_link_between_the_pages_resolves():
    measured = Measured("made up", layers={"dense": {
        "float64": fake_check("dense", "float64", "dense", 3e-16)}})
    specs = {"mlp_3_4_2": SimpleNamespace(reproduces="3-4-2", description="",
                                          raw={"layers": [{"type": "dense"},
                                                          {"type": "sigmoid"}]})}
    built = pages.build(["dense"], ["mlp_3_4_2"], specs, measured)
    assert sorted(built) == ["index.html", "layer-dense.html", "model-mlp_3_4_2.html"]
    for name, html in built.items():
        for target in re.findall(r"href='([^'#]*)(?:#[^']*)?'", html):
            assert target in built, f"{name} links to {target}, which was not written"
    assert "href='layer-dense.html'" in built["model-mlp_3_4_2.html"]  # sigmoid: no page


def test_a_failing_layer_says_so():
    bad = Measured("", layers={"lstm": {"float64": fake_check("lstm", "float64", "lstm", 1e-3)}})
    assert agreement.layer_summary("lstm", bad) == {"float64": (1e-3, False)}
    assert "FAIL" in pages.layer_agreement("lstm", bad)


def test_names_are_resolved_or_refused():
    assert resolve(["lstm", "mlp_3_4_2"]) == (["lstm"], ["mlp_3_4_2"], False)
    types, models, gallery = resolve(["all"])
    assert types == TYPES and "seq_lstm" in models and gallery
    with pytest.raises(Exception, match="lstmm: neither a layer type"):
        resolve(["lstmm"])


def test_examples_cover_every_type():
    assert all(for_type(t) for t in TYPES)
    assert examples_of("attention") == ["attention", "attention_causal"]
    assert examples_of("tanh") == ["dense"]             # the first example holding one
    assert set(EXAMPLES) >= {n for t in TYPES for n in examples_of(t)}


# ---- the command ----------------------------------------------------------------------------

def crossgrad(*args, cwd, env_home):
    env = dict(os.environ, XDG_CACHE_HOME=str(env_home / "cache"), HOME=str(env_home))
    return subprocess.run([sys.executable, "-m", "crossgrad.harness.cli", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_explain_one_layer_end_to_end(tmp_path):
    out = tmp_path / "pages"
    r = crossgrad("explain", "lstm", "--frameworks", "numpy,torch", "--quiet", "--out",
                  str(out), cwd=tmp_path, env_home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("lstm\n  forward   gates [i, f, g, o]")
    assert "PyTorch: impls/torch_autograd/layers.py" in r.stdout
    assert "example lstm:" in r.stdout and "numpy vs torch" in r.stdout
    assert sorted(p.name for p in out.iterdir()) == [".crossgrad", "index.html",
                                                      "layer-lstm.html"]
    marker = json.loads((out / ".crossgrad").read_text())
    assert marker["kind"] == "explain" and marker["complete"]
    assert "layer-lstm.html" in (out / "index.html").read_text()


@pytest.mark.parametrize("args, says", [
    (["nonsense"], "crossgrad: explain: nonsense: neither a layer type"),
    (["lstm", "--results", "somewhere"], "crossgrad: --results: somewhere: reads zoo models"),
    (["mlp_3_4_2", "--results", "missing"], "crossgrad: missing/results.json: "),
    (["lstm", "--frameworks", "numpy,tf"], "crossgrad: --frameworks"),
    (["lstm", "gru", "lstm"], "crossgrad: explain: lstm: named twice; name each once"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, says):
    r = crossgrad("explain", *args, "--out", str(tmp_path / "pages"), cwd=tmp_path,
                  env_home=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith(says) and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "pages").exists()


def test_a_report_that_is_not_one_is_refused(tmp_path):
    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(
        {"check": {"models": [{"name": "xor_2_2_1", "dtype": "float64"}]},
         "train": {"models": []}}))
    r = crossgrad("explain", "xor_2_2_1", "--results", str(folder), "--out",
                  str(tmp_path / "pages"), cwd=tmp_path, env_home=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "results.json: check.models[0]: lacks passed, frameworks" in r.stderr
    assert not (tmp_path / "pages").exists()


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_a_results_file_with_a_bare_non_finite_number_is_refused(tmp_path, token):
    """Python's JSON reader takes NaN and Infinity; crossgrad writes null for them, so a
    file holding one is not its results, and its numbers are not explained as if they were."""
    from crossgrad.harness.teach import measure
    folder = tmp_path / "report"
    folder.mkdir()
    entry = fake_check("xor_2_2_1", "float64", "dense", 1e-16)
    text = json.dumps({"check": {"models": [dict(entry, loss=float(token.replace("Infinity",
                                                                                  "inf")))]},
                       "train": {"models": []}})
    assert token in text  # json.dumps writes the bare token
    (folder / "results.json").write_text(text)
    with pytest.raises(InputError) as err:
        measure.from_report(folder, ["xor_2_2_1"])
    assert str(err.value) == (f"{folder / 'results.json'}: check.models[0].loss: {token} is not "
                              f"standard JSON: not a crossgrad report's results.json (crossgrad "
                              f"writes a non-finite number as null)")


def test_a_folder_crossgrad_did_not_make_is_refused(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    r = crossgrad("explain", "lstm", "--out", str(mine), cwd=tmp_path, env_home=tmp_path)
    assert r.returncode == 2 and "is not a crossgrad output" in r.stderr
    assert (mine / "notes.txt").read_text() == "my notes"
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_the_results_of_a_report_folder_are_read(tmp_path):
    """--results: a zoo model's numbers from results.json and curves.csv, nothing run."""
    from crossgrad.harness.teach import measure
    folder = tmp_path / "report"
    folder.mkdir()
    entry = fake_check("xor_2_2_1", "float64", "dense", 1e-16)
    train = {"name": "xor_2_2_1", "dtype": "float64", "mode": "aligned", "steps": 2,
             "reference": "numpy", "passed": True, "diverged_at": None,
             "frameworks": {"numpy": {"status": "ok", "final_loss": 0.5, "parted_at": None},
                            "torch": {"status": "ok", "final_loss": 0.5, "max_rel_diff": 0.0,
                                      "parted_at": None}}}
    (folder / "results.json").write_text(json.dumps(
        {"check": {"models": [entry]}, "train": {"models": [train]}, "native": None}))
    (folder / "curves.csv").write_text(
        "model,dtype,mode,framework,step,loss,grad_norm,rel_diff\n" + "".join(
            f"xor_2_2_1,float64,aligned,{fw},{k},{0.7 - 0.1 * k},1.0,0.0\n"
            for fw in ("numpy", "torch") for k in range(2)))
    out = measure.run([], ["xor_2_2_1"], False, given=measure.from_report(folder, ["xor_2_2_1"]))
    assert out.models["xor_2_2_1"]["check"]["float64"]["name"] == "xor_2_2_1"
    assert out.curves[("xor_2_2_1", "float64")]["loss"]["torch"] == [0.7, 0.6]
    html = pages.model_page("xor_2_2_1", SimpleNamespace(reproduces="XOR", description="",
                                                         raw={"layers": [{"type": "dense"}]}),
                            out)
    assert "<svg" in html and "XOR" in html and "xor_2_2_1.toml" in html


def test_a_training_with_nothing_compared_does_not_fail_explain():
    """NumPy alone: the training is UNCHECKED, as its check passes with nothing compared;
    explain's exit status says a disagreement, and there is none. A FAIL still fails."""
    from crossgrad.harness.teach.command import agrees
    alone = {"name": "x", "dtype": "float64", "mode": "aligned", "steps": 2,
             "reference": "numpy", "passed": True, "diverged_at": None,
             "unchecked": "nothing compared (ran: numpy; ...)",
             "frameworks": {"numpy": {"status": "ok", "final_loss": 0.5, "parted_at": None}}}
    failed = {k: v for k, v in dict(alone, passed=False).items() if k != "unchecked"}
    for entry, expected in ((alone, True), (failed, False)):
        measured = SimpleNamespace(models={"x": {"train": {"float64": entry}}}, mistakes=None)
        assert agrees([], ["x"], measured) is expected
