"""The mistakes gallery: every wrong form is caught, every right form passes, the code of
both is read from its file, and the report's section says so.

One batch of checks with NumPy and PyTorch as the references (finite differences
included); the idioms of TensorFlow and JAX run in this process, as the gallery runs them.
"""
import copy
import dataclasses

import numpy as np
import pytest

from crossgrad.harness import registry
from crossgrad.harness.report.content import build_doc
from crossgrad.harness.teach import gallery, pages

from conftest import need

MISTAKES = gallery.discover()
REFERENCES = ["numpy", "torch"]


@pytest.fixture(scope="module")
def measured(executor):
    return {e["name"]: e for e in gallery.measure(MISTAKES, REFERENCES, executor)}


def test_the_gallery_has_what_it_promises():
    formulas = [m for m in MISTAKES if m.kind == "formula"]
    idioms = [m for m in MISTAKES if m.kind == "idiom"]
    assert len(formulas) >= 8 and all(m.framework == "numpy" for m in formulas)
    assert len(idioms) >= 6
    assert {"torch", "tensorflow", "jax"} <= {m.framework for m in idioms}
    assert len({m.name for m in MISTAKES}) == len(MISTAKES)
    assert any(gallery.network_name(m) == "mlp_3_4_2" for m in formulas)


@pytest.mark.parametrize("m", MISTAKES, ids=lambda m: m.name)
def test_each_mistake_reads_as_teaching_material(m):
    assert m.title and m.why.endswith(".") and m.why.count(". ") <= 1  # one sentence
    wrong, right, _ = gallery.code(m)
    assert wrong and right
    wrong_text, right_text = "\n".join(s.text for s in wrong), "\n".join(s.text for s in right)
    assert wrong_text != right_text
    if m.kind == "formula":
        assert "def numpy_backward" in wrong_text or "def gate_gradients" in wrong_text
        assert f'@crossgrad.layer("{gallery.type_of(m.wrong)}")' in wrong_text
    else:
        assert wrong_text.startswith("def wrong(") and right_text.startswith("def right(")


@pytest.mark.slow
@pytest.mark.parametrize("m", MISTAKES, ids=lambda m: m.name)
def test_every_mistake_is_caught(measured, m):
    need(m.framework)
    e = measured[m.name]
    assert not e["wrong"]["passed"], f"{m.name}: the wrong form passed: {e['wrong']}"
    assert e["right"]["passed"], f"{m.name}: the right form failed: {e['right']}"
    assert e["caught"]
    references = {a["reference"] for a in e["wrong"]["against"]}
    assert "finite differences" in references and set(REFERENCES) - {m.framework} <= references
    failing = [a for a in e["wrong"]["against"] if not a["passed"]]
    assert any(a["reference"] == "finite differences" for a in failing)  # the math says so


@pytest.mark.slow
def test_a_wrong_form_that_is_right_is_not_caught(executor):
    """The test above can fail: the same mistake with its right code as the wrong form."""
    m = next(m for m in MISTAKES if m.name == "jax_sum_not_mean")
    same = dataclasses.replace(m, wrong=m.right)
    (entry,) = gallery.measure([same], ["numpy"], executor)
    assert entry["wrong"]["passed"] and not entry["caught"]


@pytest.mark.slow
def test_a_none_gradient_fails_and_is_named(measured):
    e = measured["tape_unwatched_tensor"]
    assert e["wrong"]["missing"] == ["0.b", "2.b"] and not e["right"]["missing"]


@pytest.mark.slow
def test_the_gallery_page_and_the_report_section(measured):
    entries = [measured[m.name] for m in MISTAKES]
    html = pages.mistakes_page(MISTAKES, entries)
    assert f"{len(MISTAKES)} of {len(MISTAKES)} mistakes caught" in html
    for m in MISTAKES:
        assert f"id='{m.name}'" in html
    doc = build_doc([], None, None, None, {}, {}, mistakes=copy.deepcopy(entries))
    md = doc.markdown()
    assert "## Mistakes gallery" in md and f"{len(MISTAKES)} of {len(MISTAKES)}" in md
    assert all(f"`{m.name}`" in md for m in MISTAKES)
    assert "Mistakes gallery" not in build_doc([], None, None, None, {}, {}).markdown()


def test_the_float64_switches_are_put_back():
    jax, keras, torch = (pytest.importorskip(n) for n in ("jax", "keras", "torch"))
    before = (torch.get_default_dtype(), keras.backend.floatx(), jax.config.jax_enable_x64)
    for fw in registry.ORDER:
        with gallery.float64(fw):
            pass
    assert (torch.get_default_dtype(), keras.backend.floatx(), jax.config.jax_enable_x64) \
        == before


@pytest.mark.slow
def test_run_with_the_gallery_catches_every_mistake(tmp_path, monkeypatch, capsys):
    """In `run` the gallery's checks share the run's jobs: its check of a network at the
    weights after a step is a job of its own (the key holds the parameters), never the
    answer of the check at the initial weights; a mistake not caught is exit 1."""
    import re
    from crossgrad.harness.cli import main
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    code = main(["run", "--zoo", "xor_2_2_1", "--mistakes", "--skip-native", "--quiet",
                 "--out", str(tmp_path / "rep")])
    out = capsys.readouterr().out
    assert re.search(r"mistakes gallery: (\d+) of \1 caught\n", out), out
    assert code == 0


@pytest.mark.slow
def test_run_names_the_mistakes_its_frameworks_leave_out(tmp_path, monkeypatch, capsys):
    """With numpy and torch only, run said "12 of 12 caught" and not which 4 it left out,
    where explain names them."""
    from crossgrad.harness.cli import main
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["run", "--zoo", "xor_2_2_1", "--mistakes", "--skip-native", "--quiet",
                 "--frameworks", "numpy,torch", "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    left = [m for m in gallery.discover() if m.framework not in ("numpy", "torch")]
    assert left and all(f"not measured: mistake {m.name} ({m.framework} is not among "
                        f"--frameworks)" in out for m in left), out


def test_the_gallery_computes_keras_forms_in_float64_after_keras_was_used():
    """Keras' global dtype policy, once read, no longer follows floatx: a process that used
    Keras before (a model built in float32) had the gallery's Keras forms computed in
    float32. The gallery's switch sets both, and puts both back."""
    need("tensorflow")
    import keras
    from keras.src.backend.common import global_state
    keras.layers.Dense(2)(np.ones((1, 3), np.float32))  # the policy is read, and fixed
    found = keras.backend.floatx(), global_state.get_global_attribute("dtype_policy")
    with gallery.float64("tensorflow"):
        assert keras.layers.Dense(2)(np.ones((1, 3))).dtype == "float64"
    assert (keras.backend.floatx(), global_state.get_global_attribute("dtype_policy")) == found
