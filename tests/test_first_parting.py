"""Which layer parts first: each top-level layer's output and dL/dx, pair by pair.

Unbroken, every layer case agrees layer by layer in every pair of frameworks and dtype,
and so does a plugin layer. Broken on purpose (a plugin whose NumPy backward drops a
term; one layer of one framework patched inside its worker by a test-only
sitecustomize.py on the workers' PYTHONPATH), the check names that layer, and the
direction in which it parts: forward, backward, or in its parameter gradients alone.
"""
import json
import math
import os
from pathlib import Path

import pytest

from crossgrad.harness import api
from crossgrad.harness.compare.layers import odd_one, parting_line
from crossgrad.harness.compare.pairwise import PAIRWISE
from crossgrad.harness.registry import ORDER
from crossgrad.harness.report.tables import check_table
from crossgrad.harness.run.executor import LocalExecutor
from crossgrad.harness.spec import parse_spec

from cases import LAYERS
from conftest import need

DTYPES = ["float64", "float32"]
PAIRS = [(a, b) for i, a in enumerate(ORDER) for b in ORDER[i + 1:]]


def specs(raws, dtypes):
    return [parse_spec(dict(raw, dtype=dtype), f"{raw['name']}.toml", raw["name"])
            for raw in raws for dtype in dtypes]


def check_without_probes(parsed, **options):
    """api.check without finite-difference probes: test_frameworks.py runs those, and the
    layer values need only the loss and its gradients."""
    prepared = api.prepare(parsed)
    for _, inputs in prepared:
        inputs.probes = []
    return api.check(parsed, prepared=prepared, **options)


@pytest.fixture(scope="module")
def checked(executor):
    result = check_without_probes(specs(LAYERS.values(), DTYPES), executor=executor)
    return result, {(m["name"], m["dtype"]): m for m in result.models}


@pytest.mark.parametrize("pair", PAIRS, ids="~".join)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(LAYERS))
def test_every_layer_agrees_in_every_pair(checked, case, dtype, pair):
    need(pair[0]), need(pair[1])
    model = checked[1][(LAYERS[case]["name"], dtype)]
    rows = [r for r in model["layers"] if (r["a"], r["b"]) == pair]
    spec_layers = LAYERS[case]["layers"]
    assert [r["type"] for r in rows] == [layer["type"] for layer in spec_layers]
    assert [r["layer"] for r in rows] == [str(i) for i in range(len(spec_layers))]
    tol = PAIRWISE[dtype]
    for r in rows:
        assert r["forward_rel_err"] <= tol, r
        if r["layer"] == "0" and r["type"] == "embedding":  # token ids: no dL/dx
            assert r["backward_rel_err"] is None
        else:
            assert r["backward_rel_err"] <= tol, r
    assert model["passed"] and model["first_parting"] == []


def test_layers_frame_has_one_row_per_model_pair_and_layer(checked):
    result, by_key = checked
    frame = result.layers
    assert list(frame.columns) == ["model", "dtype", "layer", "type", "a", "b",
                                   "forward_rel_err", "backward_rel_err"]
    ran = {m: sum(info["status"] == "ok" for info in by_key[m]["frameworks"].values())
           for m in by_key}
    expected = sum(len(LAYERS[name]["layers"]) * n * (n - 1) // 2 for (name, _), n in ran.items())
    assert len(frame) == expected


# ---- plugin layers: a user's layer is a layer like any other ---------------------------------

VARIANTS = Path(__file__).parent / "plugins" / "swish_variants.py"
IMAGES = {"source": "digits", "batch_size": 6}
PLUGIN_SPECS = {
    # torch runs the images NCHW around the plugin, which sees them NHWC
    "swish_on_images": {"layers": [{"type": "conv2d", "filters": 3, "kernel_size": 2},
                                   {"type": "scaled_swish", "gamma": 0.7}, {"type": "flatten"},
                                   {"type": "dense", "units": 10}], "input_shape": [8, 8, 1]},
    # its hand-written NumPy backward forgets a term of dx; its forward is right
    "swish_dropped_term": {"layers": [{"type": "dense", "units": 8},
                                      {"type": "swish_dropped_term"},
                                      {"type": "dense", "units": 10}], "input_shape": [64]},
}


@pytest.fixture(scope="module")
def plugin_checked(executor):
    raws = [{"name": name, "seed": 3, "plugins": [str(VARIANTS)], "data": IMAGES,
             "loss": {"type": "softmax_cross_entropy"}, **body}
            for name, body in PLUGIN_SPECS.items()]
    result = check_without_probes(specs(raws, ["float64"]), executor=executor)
    return {m["name"]: m for m in result.models}


def test_a_plugin_layer_agrees_layer_by_layer(plugin_checked):
    model = plugin_checked["swish_on_images"]
    ran = [fw for fw, info in model["frameworks"].items() if info["status"] == "ok"]
    assert len(ran) >= 2 and model["passed"] and model["first_parting"] == []
    rows = [r for r in model["layers"] if r["layer"] == "1"]
    assert len(rows) == len(ran) * (len(ran) - 1) // 2
    assert all(r["type"] == "scaled_swish" and r["forward_rel_err"] <= PAIRWISE["float64"]
               and r["backward_rel_err"] <= PAIRWISE["float64"] for r in rows)


def test_a_plugin_with_a_wrong_backward_parts_there_backward(plugin_checked):
    model = plugin_checked["swish_dropped_term"]
    others = [fw for fw, info in model["frameworks"].items()
              if info["status"] == "ok" and fw != "numpy"]
    assert others and not model["passed"]
    assert model["first_parting"] == [{"pair": ["numpy", fw], "layer": "1",
                                       "type": "swish_dropped_term", "direction": "backward"}
                                      for fw in others]


# ---- one layer broken in one framework, inside its worker -----------------------------------

SITECUSTOMIZE = '''\
"""Test-only (tests/test_first_parting.py): break one layer of one framework in this worker.

CROSSGRAD_TEST_BREAK = JSON {model name: [framework, layer index, what]}, what one of
"forward" (the layer's output), "backward" (its dL/dx) or "parameters" (its parameter
gradients), each scaled by 1 + 1e-6. Applied to the implementation the worker loads.
"""
import json
import os
from types import SimpleNamespace

from crossgrad.harness import registry

SCALE = 1 + 1e-6
_load = registry.load


def numpy_broken(obj, what):
    def forward(p, x, ctx):
        y, cache = obj.forward(p, x, ctx)
        return (y * SCALE if what == "forward" else y), cache

    def backward(p, cache, dy):
        dx, grads = obj.backward(p, cache, dy)
        if what == "parameters":
            grads = {k: g * SCALE for k, g in grads.items()}
        return (dx * SCALE if what == "backward" else dx), grads
    return SimpleNamespace(forward=forward, backward=backward)


def torch_broken(module, what):
    from torch import nn
    assert what == "forward", what

    class Scaled(nn.Module):  # the wrapped layer has no parameters: nothing to rename
        def __init__(self):
            super().__init__()
            self.inner = module

        def forward(self, x):
            return self.inner(x) * SCALE
    return Scaled()


def load(name):
    impl = _load(name)
    breaks = json.loads(os.environ.get("CROSSGRAD_TEST_BREAK", "{}"))
    build = impl.model.build_model

    def build_model(spec, native=False):
        model = build(spec, native)
        framework, index, what = breaks.get(spec["name"], (None, None, None))
        if framework == name == "numpy":
            layer, obj = model.layers[index]
            model.layers[index] = (layer, numpy_broken(obj, what))
        elif framework == name == "torch":
            model.layers[index] = torch_broken(model.layers[index], what)
        return model
    impl.model.build_model = build_model
    return impl


registry.load = load
'''

# conv2d (0), sigmoid (1), conv2d (2), flatten (3), dense (4), on 8x8 images: torch runs
# them NCHW, so a layout slip in its layer values would part at layer 0
BROKEN = "conv2d_explicit_padding"
BREAKS = {
    "broken_forward": ["torch", 1, "forward"],
    "broken_backward": ["numpy", 2, "backward"],
    "broken_parameters": ["numpy", 2, "parameters"],
}


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    for fw in ("numpy", "torch"):
        need(fw)
    site = tmp_path_factory.mktemp("site")
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    raws = [dict(LAYERS[BROKEN], name=name) for name in BREAKS]
    with pytest.MonkeyPatch.context() as mp:
        # the workers start with it (this process does not): ahead of what was there
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site),
                                                               os.environ.get("PYTHONPATH")])))
        mp.setenv("CROSSGRAD_TEST_BREAK", json.dumps(BREAKS))
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        with LocalExecutor(workers=2, threads=1) as executor:
            result = check_without_probes(specs(raws, ["float64"]), executor=executor,
                                          frameworks=["numpy", "torch"])
    return {m["name"]: m for m in result.models}


def rows_of(model):
    return {r["layer"]: r for r in model["layers"] if (r["a"], r["b"]) == ("numpy", "torch")}


def test_a_broken_forward_parts_at_that_layer_forward(broken):
    model = broken["broken_forward"]
    assert not model["passed"]
    assert model["first_parting"] == [{"pair": ["numpy", "torch"], "layer": "1",
                                       "type": "sigmoid", "direction": "forward"}]
    rows = rows_of(model)
    assert rows["0"]["forward_rel_err"] <= PAIRWISE["float64"]
    assert rows["1"]["forward_rel_err"] == pytest.approx(1e-6, rel=1e-3)
    assert "torch parts from numpy at layer 1 (sigmoid), forward" in check_table([model])


def test_a_broken_backward_parts_at_that_layer_backward(broken):
    model = broken["broken_backward"]
    assert not model["passed"]
    assert model["first_parting"] == [{"pair": ["numpy", "torch"], "layer": "2",
                                       "type": "conv2d", "direction": "backward"}]
    rows = rows_of(model)
    tol = PAIRWISE["float64"]
    assert all(r["forward_rel_err"] <= tol for r in rows.values())   # the forward is right
    parted = [layer for layer, r in rows.items() if not r["backward_rel_err"] <= tol]
    assert parted == ["0", "1", "2"]  # the broken layer's dL/dx, and all below it
    assert "torch parts from numpy at layer 2 (conv2d), backward" in check_table([model])


def test_wrong_parameter_gradients_from_right_layer_values_name_their_layer(broken):
    """Every output and dL/dx agree, the check fails: the layer computes its own parameter
    gradients wrongly, and the parting says which layer, "parameters"."""
    model = broken["broken_parameters"]
    assert not model["passed"]
    tol = PAIRWISE["float64"]
    assert all(r["forward_rel_err"] <= tol and r["backward_rel_err"] <= tol
               for r in rows_of(model).values())
    assert {c["param"] for c in model["comparisons"] if not c["passed"]} == {"2.W", "2.b"}
    assert model["first_parting"] == [{"pair": ["numpy", "torch"], "layer": "2",
                                       "type": "conv2d", "direction": "parameters"}]
    assert "torch parts from numpy at layer 2 (conv2d), in its parameter gradients" in \
        check_table([model])


def test_partings_name_the_first_layer_in_the_direction_of_the_computation():
    """The rule itself, on hand-made rows: forward before backward, backward from the last
    layer down; then parameters (last layer first), state, loss."""
    from crossgrad.harness.compare.layers import first_partings
    layers = [{"name": str(i), "type": t} for i, t in enumerate(["dense", "batchnorm", "dense"])]

    def rows(forward, backward):
        return [{"layer": str(i), "type": layers[i]["type"], "a": "numpy", "b": "jax",
                 "forward_rel_err": f, "backward_rel_err": b}
                for i, (f, b) in enumerate(zip(forward, backward))]

    def failed(*params):
        return [{"param": p, "kind": kind, "a": "numpy", "b": "jax", "passed": False}
                for kind, p in params]

    def parting(forward, backward, comparisons):
        (entry,) = first_partings(layers, rows(forward, backward), comparisons, "float64")
        return entry["layer"], entry["direction"]

    ok, bad = 1e-16, 1e-3
    grads = failed(("grad", "0.W"))
    assert parting([ok, bad, bad], [bad, bad, bad], grads) == ("1", "forward")
    assert parting([ok, ok, ok], [bad, bad, ok], grads) == ("1", "backward")
    assert parting([ok, ok, math.nan], [ok, ok, ok], grads) == ("2", "forward")
    assert parting([ok, ok, ok], [ok, ok, ok], failed(("grad", "0.W"), ("grad", "2.b"))) == \
        ("2", "parameters")
    assert parting([ok, ok, ok], [ok, ok, ok], failed(("state", "1.running_var"))) == \
        ("1", "state")
    assert parting([ok, ok, ok], [ok, ok, ok], failed(("loss", "loss"))) == (None, "loss")
    assert first_partings(layers, rows([bad] * 3, [bad] * 3), [], "float64") == []  # passes
    assert first_partings(layers, [], grads, "float64") == []  # no layer values to say where


def test_a_squashing_layer_parting_backward_names_saturation():
    """tanh or sigmoid whose outputs agree while dL/dx does not: one ulp of a saturated y is
    a large relative error of its slope; the line says so, and only there."""
    from crossgrad.harness.compare.layers import parting_line
    entry = {"pair": ("numpy", "jax"), "layer": "2", "direction": "backward"}
    assert parting_line(dict(entry, type="tanh")).endswith(
        "at layer 2 (tanh), backward (if its units saturate, 1 - y^2 near 0 turns one ulp of "
        "y into this)")
    assert "y (1 - y) near 0" in parting_line(dict(entry, type="sigmoid"))
    assert parting_line(dict(entry, type="dense")).endswith("at layer 2 (dense), backward")
    assert parting_line(dict(entry, type="tanh", direction="forward")).endswith("forward")


def test_the_framework_in_every_failing_pair_is_the_one_that_parts():
    """torch wrong among four: its pairs with tensorflow and jax once read "tensorflow parts
    from torch" and "jax parts from torch", the right ones named as parting."""
    at = {"layer": "1", "type": "dense", "direction": "forward"}
    torch_wrong = [dict(at, pair=pair) for pair in
                   (["numpy", "torch"], ["torch", "tensorflow"], ["torch", "jax"])]
    odd = odd_one(torch_wrong)
    assert odd == "torch"
    assert [parting_line(e, odd).split(" at ")[0] for e in torch_wrong] == \
        ["torch parts from numpy", "torch parts from tensorflow", "torch parts from jax"]
    two_wrong = [dict(at, pair=pair) for pair in (["numpy", "torch"], ["tensorflow", "jax"])]
    assert odd_one(two_wrong) is None
    assert parting_line(two_wrong[1]).startswith("tensorflow and jax part at layer 1")
    assert parting_line(two_wrong[0]).startswith("torch parts from numpy at")  # the reference
