"""What the report says, from hand-made results (no framework runs): plain text in the
markdown, escaped text in the HTML, valid unique heading ids, every link resolving, the
failing pairs with their worst tensors and first parting layer, the heatmap only where a
pair disagrees, native partings annotated with their cause, the speed table, and legends
that stay off the plot areas."""
import json
import re
from html.parser import HTMLParser

import matplotlib.pyplot
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from crossgrad.harness import api
from crossgrad.harness.compare.results import CheckResult, TrainResult
from crossgrad.harness.report import findings, panels, plots
from crossgrad.harness.report.content import build_doc
from crossgrad.harness.report.document import slug
from crossgrad.harness.report.write import write_report

FWS = ["numpy", "torch"]
REAL_MODEL_FIGURE = plots.model_figure
BN_CAUSE = "BatchNormalization epsilon 1e-3"


def _comparison(name, a, b, rel, tol):
    return {"param": name, "kind": "loss" if name == "loss" else "grad", "a": a, "b": b,
            "max_abs_err": rel / 2, "rel_err": rel, "cosine": None if name == "loss" else 1.0,
            "passed": rel <= tol}


def _check_entry(name, dtype, errors, layers=None, parting=None):
    """errors: {tensor: rel_err} of the one pair numpy~torch."""
    tol = 1e-12 if dtype == "float64" else 1e-5
    rows = [_comparison(p, "numpy", "torch", e, tol) for p, e in errors.items()]
    entry = {"name": name, "dtype": dtype, "seed": 0, "spec_hash": "h",
             "passed": all(r["passed"] for r in rows),
             "frameworks": {fw: {"status": "ok", "loss": 0.5, "version": "1", "seconds": 0.1}
                            for fw in FWS},
             "comparisons": rows,
             "finite_difference": [{"framework": "numpy", "param": "0.W", "direction": "random",
                                    "rel_err": 1e-9, "status": "ok", "passed": True}]}
    if layers is not None:
        entry.update(layers=layers, first_parting=parting or [])
    return entry


def _train(mode, name, steps, parted=None, causes=()):
    rows, models = [], []
    for dtype in ("float64",) if mode == "native" else ("float64", "float32"):
        frameworks = {}
        for fw in FWS:
            part = parted if fw == "torch" else None
            frameworks[fw] = {"status": "ok", "version": "1", "seconds": 0.05 * steps,
                              "final_loss": 0.25, "diverged_at": None,
                              "max_rel_diff": 0.02 if part is not None else 1e-16,
                              "parted_at": part, "passed": None if mode == "native" else True}
            if mode == "native":
                frameworks[fw]["native_defaults"] = list(causes) if fw == "torch" else []
            for step in range(steps):
                off = 0.02 if part is not None and step >= part else 1e-16 * (fw != "numpy")
                rows.append({"model": name, "dtype": dtype, "mode": mode, "framework": fw,
                             "step": step, "loss": 1.0 / (step + 1) * (1 + off),
                             "grad_norm": 1.0, "rel_diff": off})
        models.append({"name": name, "dtype": dtype, "mode": mode, "seed": 0,
                       "spec_hash": "h", "steps": steps, "reference": "numpy",
                       "passed": None if mode == "native" else True, "frameworks": frameworks})
    norms = pd.DataFrame([{"model": name, "dtype": "float64", "mode": mode,
                           "framework": "numpy", "step": s, "layer": layer, "norm": 0.1 * s + 1}
                          for s in range(steps) for layer in ("0", "2")])
    return TrainResult(models=models, curves=pd.DataFrame(rows), grad_norms=norms)


LAYERS = [{"layer": "0", "type": "dense", "a": "numpy", "b": "torch",
           "forward_rel_err": 1e-16, "backward_rel_err": 3e-3},
          {"layer": "1", "type": "batchnorm", "a": "numpy", "b": "torch",
           "forward_rel_err": 2e-3, "backward_rel_err": 2e-3}]
PARTING = [{"pair": ["numpy", "torch"], "layer": "1", "type": "batchnorm",
            "direction": "forward"}]


@pytest.fixture
def results():
    """batchnorm_mlp disagrees (float64, torch off at 0.W) and its native tensorflow-like
    curve parts at step 2; xor_2_2_1 agrees everywhere."""
    specs = [api.zoo("batchnorm_mlp"), api.zoo("xor_2_2_1")]
    check = CheckResult(models=[
        _check_entry("batchnorm_mlp", "float64", {"loss": 0.0, "0.W": 4e-3, "1.gamma": 1e-16},
                     LAYERS, PARTING),
        _check_entry("batchnorm_mlp", "float32", {"loss": 0.0, "0.W": 2e-7, "1.gamma": 1e-7}),
        _check_entry("xor_2_2_1", "float64", {"loss": 0.0, "0.W": 3e-16, "0.b": 0.0}),
        _check_entry("xor_2_2_1", "float32", {"loss": 0.0, "0.W": 3e-7, "0.b": 1e-7})])
    grad = {"0.W": np.array([[1.0, 2.0], [3.0, 4.0]]), "1.gamma": np.ones(2)}
    off = dict(grad, **{"0.W": np.array([[1.0, 2.0], [3.0, 4.016]])})
    check.saved[("batchnorm_mlp", "float64")] = (None, {
        "numpy": {"status": "ok", "loss": 0.5, "grads": grad, "state": {}},
        "torch": {"status": "ok", "loss": 0.5, "grads": off, "state": {}}})
    aligned = _merge(_train("aligned", "batchnorm_mlp", 8), _train("aligned", "xor_2_2_1", 8))
    native = _merge(_train("native", "batchnorm_mlp", 8, parted=2, causes=[BN_CAUSE, "other"]),
                    _train("native", "xor_2_2_1", 8))
    manifest = {"command": ["crossgrad", "run"], "started": "s", "finished": "f",
                "versions": {"python": "3.11"}, "cpu": {"model": "cpu"},
                "threads": {"threads": 1}}
    return specs, check, aligned, native, manifest


def _merge(a, b):
    return TrainResult(models=a.models + b.models, curves=pd.concat([a.curves, b.curves]),
                       grad_norms=pd.concat([a.grad_norms, b.grad_norms]))


PNG = b"\x89PNG not drawn"


@pytest.fixture(autouse=True)
def no_static_figures(monkeypatch):
    """The PNGs take seconds each and are tested on their own (below): stubbed elsewhere."""
    monkeypatch.setattr(plots, "model_figure", lambda *a, **k: PNG)
    monkeypatch.setattr(plots, "layer_figure", lambda *a, **k: PNG)


def _doc(results):
    specs, check, aligned, native, manifest = results
    tables = {"checks": check.summary, "gradients": check.comparisons,
              "finite_differences": check.finite_difference,
              "curves": pd.concat([aligned.curves, native.curves]),
              "grad_norms": pd.concat([aligned.grad_norms, native.grad_norms]),
              "training": pd.concat([aligned.summary, native.summary])}
    return build_doc(specs, check, aligned, native, manifest, tables)


# ---- text ----------------------------------------------------------------------------------

def test_markdown_gets_plain_text_and_html_escaped_text(results):
    doc = _doc(results)
    md, page = doc.markdown(), doc.html("crossgrad report")
    assert "Ioffe & Szegedy's batch normalization" in md
    assert not re.search(r"&(amp|lt|gt|quot|#x?[0-9a-f]+);", md), "HTML entities leak into md"
    assert "Ioffe &amp; Szegedy&#x27;s batch normalization" in page
    assert "\\`" not in md, "code meant as a span written as text: its backticks escaped"
    assert "`crossgrad bench --step-time`" in md and "<code>crossgrad bench" in page


def test_heading_ids_are_valid_unique_slugs(results):
    doc = _doc(results)
    doc.h(2, "Models")          # the same text twice must not give the same id
    doc.h(2, "Models-1")        # nor a text that reads like the suffixed one
    doc.h(2, "Why? (a & b)")
    ids = [i for i in doc.heading_ids() if i is not None]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[\w-]+", i) for i in ids), ids
    assert {"models-1", "models-1-1", "why-a--b"} <= set(ids)
    assert slug("Training, native defaults") == "training-native-defaults"


class _Anchors(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.hrefs = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "a" and "href" in attrs:
            self.hrefs.append(attrs["href"])


def test_every_link_resolves_and_every_row_links_its_model(results):
    doc = _doc(results)
    parser = _Anchors()
    parser.feed(doc.html("crossgrad report"))
    internal = [h[1:] for h in parser.hrefs if h.startswith("#")]
    assert internal and set(internal) <= set(parser.ids)
    assert len(parser.ids) == len(set(parser.ids))
    md_targets = re.findall(r"\]\(#([^)]+)\)", doc.markdown())
    assert set(md_targets) <= set(doc.ids().values())
    # every model cell of every table is a link to that model's section
    model_id = doc.ids()["model:batchnorm_mlp"]
    for kind, *block in doc.blocks:
        if kind == "table" and block[0][0] == "model":
            cells = [r[0] for r in block[1] if r[0] != "median"]
            assert all(c.kind == "ref" and c.target.startswith("model:") for c in cells)
    assert internal.count(model_id) >= 5   # glance, check, aligned, native, speed rows


def test_a_failing_pair_shows_its_worst_tensors_values_and_first_parting_layer(results):
    md = _doc(results).markdown()
    section = md[md.index("### batchnorm_mlp"):md.index("### xor_2_2_1")]
    assert "float64: numpy vs torch" in section and "1 of 3 tensors beyond 1e-12" in section
    assert "Parts first at **layer 1 (batchnorm), forward**" in section
    row = next(line for line in section.splitlines() if line.startswith("| 0.W "))
    assert "4.0e-03" in row and "(1, 1)" in row and "| 4 | 4.016 |" in row
    glance = md[:md.index("**Contents**")]
    assert "FAIL: [batchnorm_mlp]" in glance and "parts first at layer 1 (batchnorm)" in glance


def test_findings_pick_the_worst_entry_of_the_worst_tensor(results):
    _, check, *_ = results
    [pair] = findings.failing_pairs(check.models[0], check.saved)
    assert pair["pair"] == ("numpy", "torch") and pair["failing"] == 1
    worst = pair["worst"][0]
    assert worst["param"] == "0.W" and worst["index"] == [1, 1]
    assert (worst["a_value"], worst["b_value"]) == (4.0, 4.016)
    assert findings.failing_pairs(check.models[2], check.saved) == []


def test_heatmap_only_where_a_pair_disagrees(results):
    _, check, *_ = results
    comparisons = check.comparisons
    kinds = lambda model: [f["data"][0]["type"] for f, _ in panels.model_panels(
        model, "numpy", None, None, None, comparisons[comparisons["model"] == model], [], [])]
    assert "heatmap" in kinds("batchnorm_mlp")
    assert "heatmap" not in kinds("xor_2_2_1")
    # the static figure: heatmap on disagreement, per-tensor agreement otherwise
    for model, title in (("batchnorm_mlp", "Worst gradient rel. error, float64"),
                         ("xor_2_2_1", "Gradient agreement per tensor")):
        fig = _figure_axes(model, comparisons[comparisons["model"] == model])
        assert any(ax.get_title().startswith(title) for ax in fig.axes)


def test_native_parting_is_annotated_with_its_cause_read_from_one_field(results, monkeypatch):
    specs, check, aligned, native, manifest = results
    parted = findings.partings(native)
    assert [(p["model"], p["framework"], p["step"]) for p in parted] == [
        ("batchnorm_mlp", "torch", 2)]
    fig = panels.training(native.curves[native.curves["model"] == "batchnorm_mlp"], "numpy",
                          "native", {"parts": 1e-3}, parted)
    [note] = fig["layout"]["annotations"]
    assert note["x"] == 2 and BN_CAUSE in note["text"] and "other" in note["hovertext"]
    assert fig["layout"]["shapes"][0]["x0"] == 2
    # the cause comes from one place: swapping it changes every mention
    monkeypatch.setattr(findings, "native_causes", lambda info: ["confirmed by ablation"])
    md = _doc(results).markdown()
    assert "confirmed by ablation" in md and BN_CAUSE not in md


def test_no_figure_file_can_be_another_model_s(results):
    """plots/<name>.png is a model's figure; its per-layer figure was plots/<name>-layers.png,
    which is also the figure of a model named "<name>-layers" (written over it). It is now
    plots/layers/<name>.png: no model name holds a '/'."""
    from crossgrad.harness.spec.parse import NAME
    images = [b[0] for kind, *b in _doc(results).blocks if kind == "img"]
    layer_figures = [n for n in images if n.startswith("layers/")]
    assert layer_figures and len(set(images)) == len(images)
    assert not any(NAME.fullmatch(n) for n in layer_figures)


def test_an_agreement_panel_with_nothing_on_its_axis_is_drawn():
    """A model whose only gradients are one framework's (a plugin with a NumPy forward
    alone) has no gradient pair for the agreement panel: its axis draws nothing, and
    measuring its labels (None) stopped the whole report."""
    fig = plots._figure((4, 3))
    ax = fig.add_subplot()
    ax.xaxis.set_visible(False)
    assert plots._reach_under(fig, ax) == 0


def test_speed_table_is_seconds_per_step(results):
    _, _, aligned, _, _ = results
    per_step = findings.seconds_per_step(aligned)
    assert per_step[("xor_2_2_1", "float64")]["torch"] == pytest.approx(0.05)
    md = _doc(results).markdown()
    speed = md[md.index("## Speed"):md.index("## Models")]
    assert "| [xor_2_2_1](#xor_2_2_1) | float64 | 50 | 50 |" in speed


def test_per_layer_plot_when_the_check_compared_layers(results):
    doc = _doc(results)
    images = [b[0] for kind, *b in doc.blocks if kind == "img"]
    assert "layers/batchnorm_mlp" in images and "layers/xor_2_2_1" not in images
    [fig] = [f for kind, *b in doc.blocks if kind == "panels" and b[0] == "batchnorm_mlp"
             for f in b[1] if "Per layer" in f["layout"]["title"]["text"]]
    xs = {x for t in fig["data"] for x in t["x"]}
    assert {"0 dense", "1 batchnorm"} <= xs
    assert any(t["name"] == "float64 tolerance" and t["y"][0] == 1e-12 for t in fig["data"])


# ---- plots ---------------------------------------------------------------------------------

def test_every_panel_is_a_valid_plotly_figure(results):
    go = pytest.importorskip("plotly.graph_objects")
    doc = _doc(results)
    figures = [f for kind, *b in doc.blocks if kind == "panels" for f in b[1]]
    assert len(figures) >= 9
    for fig in figures:
        go.Figure(fig)   # raises on any property Plotly does not know


def test_legends_stay_off_the_plot_areas(results):
    doc = _doc(results)
    for kind, *b in doc.blocks:
        if kind == "panels":
            for fig in b[1]:
                legend = fig["layout"]["legend"]   # right of the plot area
                assert legend["x"] > 1 and legend["xanchor"] == "left"
    _, check, *_ = results
    fig = _figure_axes("xor_2_2_1", check.comparisons)
    renderer = FigureCanvasAgg(fig).get_renderer()
    assert all(ax.get_legend() is None for ax in fig.axes)
    [legend] = fig.legends
    box = legend.get_window_extent(renderer)
    assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in fig.axes
                   if ax.get_visible() and ax.axison)


def _figure_axes(model, comparisons):
    """The model figure as a matplotlib Figure (plots.model_figure returns PNG bytes)."""
    captured = {}

    def keep(fig):
        captured["fig"] = fig
        matplotlib.pyplot.close(fig)   # as _png does; FigureCanvasAgg(fig) draws it again
        return b""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plots, "_png", keep)
        curves = _train("aligned", model, 5).curves
        REAL_MODEL_FIGURE(model, "numpy", curves, None, None,
                          comparisons[comparisons["model"] == model])
    return captured["fig"]


# ---- the folder ----------------------------------------------------------------------------

def test_the_report_links_every_csv_and_json_of_its_folder(results, tmp_path):
    specs, check, aligned, native, manifest = results
    out = tmp_path / "report"
    write_report(out, specs, check, aligned, native, manifest)
    page, md = (out / "report.html").read_text(), (out / "report.md").read_text()
    data = {p.name for p in out.iterdir() if p.suffix in (".csv", ".json")}
    assert {"results.json", "curves.csv"} <= data
    for name in data:
        assert f"href='{name}'" in page and f"]({name})" in md
    parser = _Anchors()
    parser.feed(page)
    for href in parser.hrefs:
        if not href.startswith(("#", "http")):
            assert (out / href).exists(), href
    for target in re.findall(r"\]\(([^)#][^)]*)\)", md):
        assert (out / target).exists(), target
    assert json.loads(re.search(r"id='panel-data'>(.*?)</script>", page).group(1))


def test_a_run_that_fails_then_diverges_is_a_fail_not_a_divergence():
    """Every framework diverged at step 117, but lockstep (or a curve) failed before it: the
    verdict, the footer's count and the note say FAIL, and do not blame the curves."""
    from crossgrad.harness.report.tables import diverged_line, train_footer, train_result
    failed = {"name": "m", "dtype": "float64", "passed": False, "diverged_at": 117,
              "frameworks": {}}
    diverged = dict(failed, name="n", passed=True)
    assert (train_result(failed), train_result(diverged)) == ("FAIL", "DIVERGED")
    footer = train_footer([failed, diverged])
    assert "1 of 2 aligned runs agree" in footer
    assert "1 diverged in every framework alike (DIVERGED)" in footer
    assert "the run FAILs before it" in diverged_line(failed)
    assert "curves disagree" not in diverged_line(failed)


def test_at_a_glance_counts_no_unchecked_check_as_agreeing(results):
    """NumPy alone in float32: the table said UNCHECKED, At a glance "Yes: 1 of 1 checks
    agree"; and a model whose loss is not finite hid every other's finite-difference worst
    behind its nan."""
    specs, check, aligned, native, manifest = results
    idle = check.models[3]  # xor_2_2_1 float32
    idle.update(unchecked="nothing compared (ran: numpy; ...)")
    check.models[2]["finite_difference"][0]["rel_err"] = float("nan")
    check.models[2].update(passed=False, not_finite="the loss is nan in every framework that ran")
    md = _doc(results).markdown()
    glance = md[md.index("Do the gradients agree?"):].split("\n")[0]
    assert "1 of 3 checks agree in every framework pair" in glance, glance
    assert "UNCHECKED: [xor_2_2_1](#xor_2_2_1) float32 (nothing compared" in glance, glance
    assert "finite differences worst 1.0e-09" in glance, glance


def test_at_a_glance_counts_no_diverged_training_as_agreeing_at_every_step(results):
    """Every framework diverged at step 3: once "1 of 1 ... agree ... at every step"."""
    specs, check, aligned, native, manifest = results
    m = aligned.models[0]
    m["diverged_at"] = 3
    for info in m["frameworks"].values():
        info["diverged_at"] = 3
    md = _doc(results).markdown()
    glance = md[md.index("Does training agree?"):].split("\n")[0]
    assert ("3 of 4 aligned runs' loss curves agree with the reference at every step, 1 up to "
            "where every framework diverged") in glance, glance


def test_a_framework_that_diverged_alone_is_said_in_the_report(results):
    """The terminal said "torch diverged ... at step 5"; the report's bullets left it out."""
    specs, check, aligned, native, manifest = results
    aligned.models[0]["frameworks"]["torch"]["diverged_at"] = 5
    md = _doc(results).markdown()
    assert "batchnorm_mlp](#batchnorm_mlp) float64: torch diverged (non-finite loss or " \
           "gradient norm) at step 5" in md


def test_the_aligned_section_names_each_reference_in_use(results):
    """A plugin without numpy_backward makes torch a model's reference: the section said
    "(numpy)" all the same."""
    specs, check, aligned, native, manifest = results
    assert "against the reference's (numpy), as the worst" in _doc(results).markdown()
    aligned.models[0]["reference"] = "torch"
    assert "against the reference's (torch or numpy, per model)" in _doc(results).markdown()
