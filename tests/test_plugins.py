"""Plugin layers, from the spec to the workers: keys, parameters, bad plugins (exit 2), the
spec hash, and end to end: built-in layers re-declared as plugins agree bit for bit,
missing methods skip, raising or wrong plugins fail only their framework, a wrong NumPy
backward is caught by finite differences."""
import hashlib
import importlib
import json
import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import crossgrad
from crossgrad.harness import registry
from crossgrad.harness.cli import main
from crossgrad.harness.run import jobs, manifest, worker
from crossgrad.harness.run.executor import LocalExecutor
from crossgrad.harness.spec import load_spec, plugins as plugin_code

from conftest import BY_THE_NUMBERS, FRAMEWORKS

PLUGINS = Path(__file__).parent / "plugins"
VARIANTS = PLUGINS / "swish_variants.py"
BUILTINS = PLUGINS / "builtin_layers.py"
INSTALLED = [fw for fw in FRAMEWORKS if registry.installed(fw)]
IMG = {"source": "digits", "batch_size": 6}
SEQ = {"source": "random_sequence", "classes": 3, "examples": 20, "batch_size": 5}
# the twins' batches: a bias gradient summed over 16 or 10 rows, where a sum in another order
# (tf.add's gradient where keras' ops.add takes tf.nn.bias_add's) shows; over 6 it may not
TWIN_IMG, TWIN_SEQ = dict(IMG, batch_size=16), dict(SEQ, batch_size=10)
DIGITS = {"source": "digits", "batch_size": 7}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Whatever a command caches goes under tmp_path, never into the user's cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def spec(name, layers, input_shape, data, plugins):
    return {"name": name, "seed": 3, "input_shape": input_shape, "data": data,
            "plugins": [str(p) for p in plugins], "layers": layers,
            "loss": {"type": "softmax_cross_entropy"}}


def dense(units, kind="dense"):
    return {"type": kind, "units": units}


def conv(kind):
    return {"type": kind, "filters": 3, "kernel_size": [3, 2], "strides": [2, 2],
            "padding": "same"}


def swish(kind, **keys):
    return spec(kind, [dense(8), {"type": kind, **keys}, dense(10)], [64], DIGITS, [VARIANTS])


SPECS = {
    "builtin_conv": spec("builtin_conv", [conv("conv2d"), {"type": "tanh"}, {"type": "flatten"},
                                          dense(10)], [8, 8, 1], TWIN_IMG, []),
    "plugin_conv": spec("plugin_conv", [conv("my_conv2d"), {"type": "tanh"}, {"type": "flatten"},
                                        dense(10, "my_dense")], [8, 8, 1], TWIN_IMG,
                        [BUILTINS]),
    "builtin_lstm": spec("builtin_lstm", [{"type": "lstm", "units": 4}, dense(3)], [6, 3],
                         TWIN_SEQ, []),
    "plugin_lstm": spec("plugin_lstm", [{"type": "my_lstm", "units": 4}, dense(3, "my_dense")],
                        [6, 3], TWIN_SEQ, [BUILTINS]),
    "in_residual": spec("in_residual", [dense(6), {"type": "residual", "layers": [
        {"type": "scaled_swish", "gamma": 0.7, "init_beta": {"type": "normal", "mean": 1.0,
                                                             "std": 0.3}}, dense(6)]},
        dense(10)], [64], DIGITS, [VARIANTS]),
    "on_images": spec("on_images", [conv("conv2d"), {"type": "scaled_swish"},
                                    {"type": "flatten"}, dense(10)], [8, 8, 1], IMG, [VARIANTS]),
    "swish_partial": swish("swish_partial"),
    "swish_raising": swish("swish_raising"),
    "swish_float32": swish("swish_float32"),
    "module_plugin": spec("module_plugin", [dense(5), {"type": "offset"}, dense(10)], [64],
                          DIGITS, ["cg_test_module_plugin.layers"]),
}

MODULE = '''
import crossgrad

@crossgrad.layer("offset")
class Offset:
    """y = x + c, a trainable c per feature."""
    def params(self, in_shape):
        return {"c": ((in_shape[-1],), {"type": "normal", "std": 0.5})}

    def numpy_forward(self, p, x):
        return x + p["c"], None

    def numpy_backward(self, p, cache, dy):
        return dy, {"c": dy.sum(0)}

    def torch(self, p, x):
        return x + p["c"]

    def tensorflow(self, p, x):
        return x + p["c"]

    def jax(self, p, x):
        return x + p["c"]
'''


@pytest.fixture(scope="module")
def module_root(tmp_path_factory):
    """A package `cg_test_module_plugin` importable here (not in the workers' sys.path)."""
    root = tmp_path_factory.mktemp("modules")
    (root / "cg_test_module_plugin").mkdir()
    (root / "cg_test_module_plugin" / "__init__.py").write_text("")
    (root / "cg_test_module_plugin" / "layers.py").write_text(MODULE)
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(root))
        yield root


@pytest.fixture(scope="module")
def checked(tmp_path_factory, module_root):
    """Every spec above checked in one batch, in every installed framework: workers of its
    own, started where MKL rounds by the numbers alone (conftest.BY_THE_NUMBERS), since the
    built-in layers and their plugin twins are compared bit for bit."""
    folder = tmp_path_factory.mktemp("specs")
    for name, body in SPECS.items():
        (folder / f"{name}.json").write_text(json.dumps(body))
    specs = [crossgrad.load(folder / f"{name}.json") for name in SPECS]
    with pytest.MonkeyPatch.context() as mp, LocalExecutor(workers=2, threads=1) as executor:
        for name, value in BY_THE_NUMBERS.items():
            mp.setenv(name, value)  # read as each worker starts
        result = crossgrad.check(specs, executor=executor)
    return {m["name"]: m for m in result.models}, result.saved


# ---- end to end --------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("layers", ["conv", "lstm"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_builtin_layers_as_plugins_agree_bit_for_bit(checked, framework, layers):
    """dense, conv2d and lstm written as plugins: the same loss and gradients, to the bit."""
    if framework not in INSTALLED:
        pytest.skip(f"{framework} is not installed")
    models, saved = checked
    builtin = saved[(f"builtin_{layers}", "float64")][1][framework]
    plugin = saved[(f"plugin_{layers}", "float64")][1][framework]
    assert models[f"plugin_{layers}"]["passed"], models[f"plugin_{layers}"]
    assert builtin["status"] == plugin["status"] == "ok"
    assert plugin["loss"] == builtin["loss"]
    assert list(plugin["grads"]) == list(builtin["grads"])
    for name, g in builtin["grads"].items():
        assert np.array_equal(plugin["grads"][name], g), \
            (name, np.abs(plugin["grads"][name] - g).max())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["in_residual", "on_images", "module_plugin"])
def test_plugins_agree_everywhere_they_can_stand(checked, name):
    """Inside a residual block (canonical name "1.0.beta"), on NHWC images, from a module."""
    model = checked[0][name]
    assert model["passed"], model
    assert {fw for fw, i in model["frameworks"].items() if i["status"] == "ok"} == set(INSTALLED)
    params = {c["param"] for c in model["comparisons"]} | {r["param"] for r in
                                                             model["finite_difference"]}
    expected = {"in_residual": "1.0.beta", "on_images": "1.beta", "module_plugin": "1.c"}[name]
    assert expected in params


@pytest.mark.slow
def test_a_missing_method_skips_that_framework_and_numpy_keeps_its_loss(checked):
    model = checked[0]["swish_partial"]
    fws = model["frameworks"]
    if "tensorflow" in INSTALLED:
        assert fws["tensorflow"]["status"] == "skipped"
        assert fws["tensorflow"]["error"] == \
            "plugin swish_partial has no tensorflow implementation"
    assert fws["numpy"]["status"] == "ok" and fws["numpy"]["gradients"] == "skipped"
    assert fws["numpy"]["gradients_reason"] == "plugin swish_partial has no numpy_backward"
    numpy_rows = [r for r in model["finite_difference"] if r["framework"] == "numpy"]
    assert numpy_rows and all(r["gradient_from"] == "torch" for r in numpy_rows)
    assert all(r["passed"] for r in numpy_rows)
    numpy_pairs = {c["kind"] for c in model["comparisons"] if c["a"] == "numpy"}
    assert numpy_pairs == {"loss"}
    assert model["passed"]


@pytest.mark.slow
def test_a_plugin_that_raises_fails_its_framework_with_file_and_line(checked):
    model = checked[0]["swish_raising"]
    torch = model["frameworks"]["torch"]
    line = next(i for i, text in enumerate(VARIANTS.read_text().splitlines(), 1)
                if "torch version not written yet" in text)
    assert torch["status"] == "failed"
    assert "ValueError: torch version not written yet" in torch["error"]
    assert f"swish_variants.py:{line}" in torch["error"]
    others = [fw for fw in INSTALLED if fw != "torch"]
    assert all(model["frameworks"][fw]["status"] == "ok" for fw in others)
    assert not model["passed"]


@pytest.mark.slow
def test_a_plugin_in_the_wrong_dtype_fails_its_framework(checked):
    if "jax" not in INSTALLED:
        pytest.skip("jax is not installed")
    model = checked[0]["swish_float32"]
    jax = model["frameworks"]["jax"]
    lines = VARIANTS.read_text().splitlines()
    start = next(i for i, text in enumerate(lines) if "class Float32" in text)
    line = next(i for i in range(start, len(lines)) if "def jax" in lines[i]) + 1
    assert jax["status"] == "failed"
    assert "swish_float32" in jax["error"] and "float32" in jax["error"]
    assert f"swish_variants.py:{line}" in jax["error"]
    assert all(model["frameworks"][fw]["status"] == "ok" for fw in INSTALLED if fw != "jax")


@pytest.mark.slow
def test_a_wrong_numpy_backward_is_caught(tmp_path, capsys):
    """A term dropped from the hand-written backward: exit 1, and finite differences name
    NumPy's gradient of the layer before (dx of the plugin is what is wrong)."""
    path = tmp_path / "dropped.json"
    path.write_text(json.dumps(swish("swish_dropped_term")))
    out = tmp_path / "out.json"
    code = main(["check", str(path), "--frameworks", "numpy,torch", "--quiet", "--json",
                 str(out)])
    printed = capsys.readouterr().out
    assert code == 1
    model = json.loads(out.read_text())["models"][0]
    wrong = {r["param"] for r in model["finite_difference"] if r["status"] == "mismatch"}
    assert wrong and wrong <= {"0.W", "0.b"}
    assert all(r["framework"] == "numpy" for r in model["finite_difference"]
               if r["status"] == "mismatch")
    assert "finite differences disagree with numpy on 0." in printed


def test_gradients_that_meet_nothing_leave_the_check_unchecked(tmp_path, capsys):
    """float32 (no finite differences) and a NumPy with a forward pass alone: only the loss
    pairs torch with NumPy, and torch's gradients, wrong or right, met nothing. The check
    passed once, and crossgrad.testing's assertion with it."""
    path = tmp_path / "partial.json"
    path.write_text(json.dumps(dict(swish("swish_partial"), dtype="float32")))
    out = tmp_path / "out.json"
    assert main(["check", str(path), "--frameworks", "numpy,torch", "--json", str(out)]) == 0
    model = json.loads(out.read_text())["models"][0]
    assert {c["kind"] for c in model["comparisons"]} == {"loss"}
    assert model["passed"] and model["unchecked"] == (
        "the gradients of torch compared with nothing (no other framework that ran has "
        "gradients to pair with them, and no finite difference probed them): only the loss "
        "was compared")
    assert "UNCHECKED" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="the gradients of torch compared with nothing"):
        crossgrad.testing.assert_spec_agrees(path, frameworks=["numpy", "torch"])


@pytest.mark.slow
def test_plugins_train(executor, tmp_path):
    """The same curves in every framework; without numpy_backward NumPy cannot train."""
    specs = []
    for kind in ("scaled_swish", "swish_partial"):
        (tmp_path / f"{kind}.json").write_text(json.dumps(swish(kind, gamma=1.5)))
        specs.append(crossgrad.load(tmp_path / f"{kind}.json"))
    models = crossgrad.train(specs, steps=5, executor=executor).models
    assert models[0]["passed"] is True, models[0]
    partial = models[1]["frameworks"]
    assert partial["numpy"]["status"] == "skipped"
    assert partial["numpy"]["error"] == ("plugin swish_partial has no numpy_backward: NumPy "
                                         "cannot train it")
    assert models[1]["reference"] == "torch"


CANCELLING = '''
import crossgrad


@crossgrad.layer("bias_dense")
class BiasDense:
    """y = x W + b; declares b a shift of each output feature."""
    keys = {"units": int, "declared": True}

    @property
    def shifts(self):
        return ("b",) if self.declared else ()

    def params(self, in_shape):
        return {"W": ((in_shape[-1], self.units), "glorot_uniform"),
                "b": ((self.units,), {"type": "normal", "std": 0.5})}

    def out_shape(self, in_shape):
        return (self.units,)

    def numpy_forward(self, p, x):
        return x @ p["W"] + p["b"], x

    def numpy_backward(self, p, x, dy):
        return dy @ p["W"].T, {"W": x.T @ dy, "b": dy.sum(0)}

    def torch(self, p, x):
        return x @ p["W"] + p["b"]


@crossgrad.layer("batch_center")
class BatchCenter:
    """y = x - its mean over the batch: a constant added to a feature changes nothing."""
    cancels_shifts = True

    def numpy_forward(self, p, x):
        return x - x.mean(0, keepdims=True), None

    def numpy_backward(self, p, cache, dy):
        return dy - dy.mean(0, keepdims=True), {}

    def torch(self, p, x):
        return x - x.mean(0, keepdim=True)
'''


@pytest.mark.parametrize("layers, zero", [
    ([{"type": "bias_dense", "units": 6}, {"type": "batchnorm"}], "0.b"),
    ([dense(6), {"type": "batch_center"}], "0.b"),
    ([{"type": "bias_dense", "units": 6}, {"type": "batch_center"}], "0.b"),
    ([{"type": "bias_dense", "units": 6, "declared": False}, {"type": "batchnorm"}], None),
], ids=["plugin-bias-then-batchnorm", "bias-then-plugin-norm", "both-plugins", "undeclared"])
def test_a_plugin_declares_gradients_zero_by_construction(tmp_path, capsys, layers, zero):
    """A bias right before a layer that cancels it gets rounding noise for its gradient in
    every framework: compared against the model's largest gradient where the plugins say
    so (shifts, cancels_shifts), as for the built-in dense and BatchNorm. Undeclared, noise
    against noise fails the pair, and the control one format wider (compare/control.py)
    measures it as noise: PASS*, the row saying so and what to declare."""
    (tmp_path / "mine.py").write_text(CANCELLING)
    body = spec("cancel", [*layers, {"type": "tanh"}, dense(10)], [64], DIGITS, ["mine.py"])
    out = tmp_path / "out.json"
    code = main(["check", str(write(tmp_path, body)), "--frameworks", "numpy,torch", "--quiet",
                 "--json", str(out)])
    model = json.loads(out.read_text())["models"][0]
    rows = [r for r in model["comparisons"] if r["param"] == "0.b"]
    assert code == 0, capsys.readouterr().out
    assert all(r.get("note", "").startswith("zero by construction (") for r in rows) == bool(zero)
    assert ("amplified" in model) == (not zero)
    if not zero:
        assert all(r["status"] == "amplified" and r["note"].startswith("rounding noise")
                   and "zero_gradients" in r["note"] for r in rows)


# ---- the spec side -----------------------------------------------------------------------------

def write(tmp_path, body, name="spec.json"):
    path = tmp_path / name
    path.write_text(json.dumps(body))
    return path


def test_a_plugin_layer_in_the_spec(tmp_path):
    """Keys typed by their defaults, parameters with canonical names, init_<param>."""
    shutil.copy(VARIANTS, tmp_path)
    body = swish("scaled_swish", gamma=2)
    body["plugins"] = ["swish_variants.py"]  # relative to the spec file
    loaded = load_spec(write(tmp_path, body))
    layer = loaded.layers[1]
    assert layer["gamma"] == 2.0 and isinstance(layer["gamma"], float)
    assert layer["out_shape"] == [8] and layer["plugin"] == "swish_variants.py"
    assert loaded.param_specs()["1.beta"] == {"shape": [8], "init": {"type": "ones"},
                                               "fan_in": 8, "fan_out": 8}
    body["layers"][1]["init_beta"] = {"type": "normal", "std": 0.1}
    assert load_spec(write(tmp_path, body)).param_specs()["1.beta"]["init"] == \
        {"type": "normal", "mean": 0.0, "std": 0.1}
    assert loaded.plugins[0]["path"] == str((tmp_path / "swish_variants.py").resolve())
    # the manifest says which code ran: the entry, the file, its sha256
    recorded = manifest.build([loaded], "local", 1, "now")["models"][0]["plugins"]
    code = (tmp_path / "swish_variants.py").read_bytes()
    assert recorded == [{"entry": "swish_variants.py", "path": loaded.plugins[0]["path"],
                         "sha256": hashlib.sha256(code).hexdigest()}]


def test_the_spec_hash_follows_the_plugin_code(tmp_path):
    """A changed plugin file is another spec: the cache never serves the old results."""
    shutil.copy(VARIANTS, tmp_path)
    body = swish("scaled_swish")
    body["plugins"] = ["swish_variants.py"]
    path = write(tmp_path, body)
    before, again = load_spec(path).hash, load_spec(path).hash
    plugin = tmp_path / "swish_variants.py"
    plugin.write_text(plugin.read_text().replace("(1 - s)", "(1.0 - s)"))
    assert before == again != load_spec(path).hash


def test_a_module_plugin_hashes_the_code_it_runs(tmp_path, monkeypatch):
    """A module plugin's digest covers its whole top-level package and the modules beside it
    that it imports (followed through theirs): editing `pkg/common.py`, which `pkg.layers`
    imports, or `blocks.py` beside the package, changes it; a file nothing imports does not."""
    root = tmp_path / "root"
    (root / "cg_hash_pkg").mkdir(parents=True)
    (root / "cg_hash_pkg" / "__init__.py").write_text("")
    (root / "cg_hash_pkg" / "common.py").write_text("K = 1\n")
    (root / "cg_hash_pkg" / "layers.py").write_text(
        "import math\nfrom cg_hash_pkg.common import K\nimport cg_hash_blocks\n")
    (root / "cg_hash_blocks.py").write_text("import cg_hash_deeper\n")
    (root / "cg_hash_deeper.py").write_text("D = 2\n")
    (root / "cg_hash_unrelated.py").write_text("U = 3\n")
    monkeypatch.syspath_prepend(str(root))
    module = importlib.import_module("cg_hash_pkg.layers")
    files = {f.relative_to(root.resolve()).as_posix() for f in plugin_code._module_files(module)}
    assert files == {"cg_hash_pkg/__init__.py", "cg_hash_pkg/common.py", "cg_hash_pkg/layers.py",
                     "cg_hash_blocks.py", "cg_hash_deeper.py"}
    before = plugin_code._module_digest(module)
    for name in ("cg_hash_pkg/common.py", "cg_hash_deeper.py", "cg_hash_unrelated.py"):
        (root / name).write_text((root / name).read_text() + "# edited\n")
        now = plugin_code._module_digest(module)
        assert (now == before) == (name == "cg_hash_unrelated.py"), name
        before = now


def test_a_worker_refuses_a_plugin_changed_after_the_spec_was_read(tmp_path):
    shutil.copy(VARIANTS, tmp_path)
    body = swish("scaled_swish")
    body["plugins"] = ["swish_variants.py"]
    loaded = load_spec(write(tmp_path, body))
    job = jobs.check_job(loaded, jobs.Inputs(loaded), "numpy")
    plugin = tmp_path / "swish_variants.py"
    plugin.write_text(plugin.read_text() + "\n# edited\n")
    with pytest.raises(ValueError, match="changed after the spec was read"):
        worker.perform(registry.load("numpy"), job)


BAD_PLUGINS = {
    # case: (plugin file text or None, spec changes, the field named)
    "missing_file": (None, {}, "plugins[0]"),
    "loop_of_links": ("LOOP", {}, "plugins[0]"),
    "not_a_regular_file": ("FOLDER", {}, "plugins[0]"),
    "syntax_error": ("import crossgrad\n@crossgrad.layer('x')\nclass X(:\n", {}, "plugins[0]"),
    "raises_at_import": ("import crossgrad\n1 / 0\n", {}, "plugins[0]"),
    "no_layer": ("import crossgrad\nclass X: pass\n", {}, "plugins[0]"),
    "builtin_name": ("import crossgrad\n@crossgrad.layer('dense')\nclass X: pass\n", {},
                     "plugins[0]"),
    "bad_type_name": ("import crossgrad\n@crossgrad.layer('my-layer')\nclass X: pass\n", {},
                      "plugins[0]"),
    "no_such_module": (None, {"plugins": ["cg_no_such_module_anywhere"]}, "plugins[0]"),
    "not_a_list": (None, {"plugins": "mine.py"}, "plugins"),
    "unknown_type": ("OK", {"type": "plug_typo"}, "layers[1].type"),
    "unknown_key": ("OK", {"gama": 2.0}, "layers[1].gama"),
    "key_of_the_wrong_type": ("OK", {"gamma": "big"}, "layers[1].gamma"),
    "bad_init_override": ("OK", {"init_beta": "onez"}, "layers[1].init_beta.type"),
    "params_nonsense": ("PARAMS return {'beta': ((-1,), 'ones')}", {}, "layers[1].type"),
    "params_bad_name": ("PARAMS return {'a.b': ((2,), 'ones')}", {}, "layers[1].type"),
    "params_bad_initializer": ("PARAMS return {'beta': ((8,), 'onez')}", {}, "layers[1].type"),
    "params_raises": ("PARAMS return 1 / 0", {}, "layers[1].type"),
    "out_shape_nonsense": ("OUT return 'wide'", {}, "layers[1].type"),
    "required_key_missing": ("KEYS {'units': int}", {}, "layers[1].units"),
    "params_orthogonal_vector": ("PARAMS return {'beta': ((8,), 'orthogonal')}", {},
                                 "layers[1].type"),
    "orthogonal_override_of_a_vector": ("OK", {"init_beta": "orthogonal"},
                                        "layers[1].init_beta.type"),
    "shifts_not_a_parameter": ("import crossgrad\n@crossgrad.layer('plug')\nclass P:\n"
                               "    shifts = ('b',)\n", {}, "layers[1].type"),
    "key_named_like_a_method": ("KEYS {'numpy_forward': 1.0}", {}, "layers[1].type"),
    "exits_while_loading": ("import sys\nsys.exit(0)\n", {}, "plugins[0]"),
    "registered_twice_in_one_file": (
        "import crossgrad\n@crossgrad.layer('plug')\nclass A: pass\n"
        "@crossgrad.layer('plug')\nclass B: pass\n", {}, "plugins[0]"),
}
PLUGIN = '''
import crossgrad

@crossgrad.layer("plug")
class Plug:
    keys = KEYS

    def params(self, in_shape):
        PARAMS

    def out_shape(self, in_shape):
        OUT

    def numpy_forward(self, p, x):
        return x, None
'''


def bad_plugin_text(text):
    if text is None or not text.startswith(("OK", "PARAMS", "OUT", "KEYS")):
        return text
    body = {"KEYS": "{'gamma': 1.0}", "PARAMS": "return {'beta': ((in_shape[-1],), 'ones')}",
            "OUT": "return in_shape"}
    for word in body:
        if text.startswith(word):
            body[word] = text[len(word) + 1:]
    out = PLUGIN
    for word, code in body.items():
        out = out.replace(word, code)
    return textwrap.dedent(out)


@pytest.mark.parametrize("case", sorted(BAD_PLUGINS))
def test_a_bad_plugin_is_exit_2_naming_the_field(tmp_path, capsys, case):
    text, changes, field = BAD_PLUGINS[case]
    if text == "LOOP":
        (tmp_path / "mine.py").symlink_to("other.py")
        (tmp_path / "other.py").symlink_to("mine.py")
    elif text == "FOLDER":
        (tmp_path / "mine.py").mkdir()
    elif bad_plugin_text(text) is not None:
        (tmp_path / "mine.py").write_text(bad_plugin_text(text))
    body = spec("bad", [dense(8), {"type": "plug"}, dense(10)], [64], DIGITS, ["mine.py"])
    for key, value in changes.items():
        if key == "plugins":
            body["plugins"] = value
        elif key == "type":
            body["layers"][1]["type"] = value
        else:
            body["layers"][1][key] = value
    path = write(tmp_path, body)
    out = tmp_path / "out.json"
    code = main(["check", str(path), "--frameworks", "numpy", "--quiet", "--json", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert not out.exists()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"crossgrad: {path}: {field}: "), err
    assert "Traceback" not in err


def test_a_module_plugin_may_import_its_layers_from_a_module_beside_it(tmp_path, monkeypatch,
                                                                       capsys):
    """`from cg_reexport_blocks import Plug` in the module the spec names exposes Plug there:
    it registers for that module as if written in it (and its file is hashed with it)."""
    (tmp_path / "cg_reexport_blocks.py").write_text(bad_plugin_text("OK"))
    (tmp_path / "cg_reexport_top.py").write_text("from cg_reexport_blocks import Plug  # noqa\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    body = spec("reexport", [dense(8), {"type": "plug"}, dense(10)], [64], DIGITS,
                ["cg_reexport_top"])
    assert main(["check", str(write(tmp_path, body)), "--frameworks", "numpy", "--quiet"]) == 0, \
        capsys.readouterr().err


def test_a_shape_of_numpy_integers_is_a_shape(tmp_path, capsys):
    """np.prod(in_shape) is an np.int64: a shape made of it is taken as ints."""
    text = bad_plugin_text("PARAMS return {'beta': ((np.prod(in_shape),), 'ones')}")
    (tmp_path / "mine.py").write_text("import numpy as np\n" + text)
    body = spec("npint", [dense(8), {"type": "plug"}, dense(10)], [64], DIGITS, ["mine.py"])
    assert main(["check", str(write(tmp_path, body)), "--frameworks", "numpy", "--quiet"]) == 0, \
        capsys.readouterr().err


def test_a_loss_alone_is_not_said_to_be_compared(tmp_path, capsys):
    """NumPy without a backward, run alone: its loss is compared with nothing, so the notes
    say nothing was compared, and not that its loss is."""
    (tmp_path / "mine.py").write_text(bad_plugin_text("OK"))
    body = spec("alone", [dense(8), {"type": "plug"}, dense(10)], [64], DIGITS, ["mine.py"])
    assert main(["check", str(write(tmp_path, body)), "--frameworks", "numpy", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "nothing compared" in out and "numpy gradients skipped" in out, out
    assert "its loss is compared" not in out, out


def test_a_bad_plugin_error_says_where(tmp_path, capsys):
    (tmp_path / "mine.py").write_text("import crossgrad\n\n\nraise RuntimeError('not yet')\n")
    body = spec("bad", [dense(8), {"type": "plug"}, dense(10)], [64], DIGITS, ["mine.py"])
    assert main(["check", str(write(tmp_path, body)), "--frameworks", "numpy"]) == 2
    assert "mine.py raised RuntimeError: not yet (at mine.py:4) while loading" in \
        capsys.readouterr().err


def test_two_plugins_claiming_one_type(tmp_path, capsys):
    for name in ("a.py", "b.py"):
        (tmp_path / name).write_text(bad_plugin_text("OK"))
    body = spec("two", [dense(8), {"type": "plug"}, dense(10)], [64], DIGITS, ["a.py", "b.py"])
    path = write(tmp_path, body)
    assert main(["check", str(path), "--frameworks", "numpy"]) == 2
    assert f"{path}: plugins[1]: b.py registers 'plug', which a.py registers too" in \
        capsys.readouterr().err


def test_the_decorator_refuses_what_is_not_a_layer():
    with pytest.raises(ValueError, match="letters, digits and '_'"):
        crossgrad.layer("3d")
    with pytest.raises(TypeError, match="decorates a class"):
        crossgrad.layer("fn")(lambda x: x)


def test_importing_crossgrad_imports_no_framework():
    import subprocess
    code = ("import sys, crossgrad; crossgrad.layer; crossgrad.load; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'jax', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# ---- a plugin first on integer token inputs ----------------------------------------------------

TOKEN_PLUGIN = '''
import numpy as np

import crossgrad


@crossgrad.layer("pos_embed")
class PosEmbed:
    """Token ids (B, T) -> E[ids] + P, (B, T, dim): an embedding with learned positions."""
    keys = {"vocab": int, "dim": int}

    def params(self, in_shape):
        return {"E": ((self.vocab, self.dim), "he_normal"),
                "P": ((in_shape[0], self.dim), {"type": "normal", "std": 0.5})}

    def out_shape(self, in_shape):
        return (in_shape[0], self.dim)

    def numpy_forward(self, p, x):
        return p["E"][x] + p["P"], x

    def numpy_backward(self, p, x, dy):
        dE = np.zeros_like(p["E"])
        np.add.at(dE, x, dy)
        return None, {"E": dE, "P": dy.sum(0)}

    def torch(self, p, x):
        return p["E"][x] + p["P"]

    def tensorflow(self, p, x):
        import tensorflow as tf
        return tf.gather(p["E"], x) + p["P"]

    def jax(self, p, x):
        return p["E"][x] + p["P"]
'''
TOKENS = {"source": "random_tokens", "vocab": 11, "classes": 3, "examples": 16, "batch_size": 8}


def token_spec(first):
    return spec("tokens_first", [first, {"type": "sequence_mean"}, dense(3)], [7], TOKENS,
                ["tokens.py"])


def test_a_plugin_can_be_the_first_layer_on_token_inputs(tmp_path, executor):
    """Its methods receive the integer ids (the embedding is no longer the only way in), and
    every framework runs it: the ids take no gradient, E and P agree."""
    (tmp_path / "tokens.py").write_text(TOKEN_PLUGIN)
    path = write(tmp_path, token_spec({"type": "pos_embed", "vocab": 11, "dim": 4}))
    model = crossgrad.check([crossgrad.load(path)], executor=executor).models[0]
    assert {fw for fw, i in model["frameworks"].items() if i["status"] == "ok"} == \
        set(INSTALLED), model["frameworks"]
    assert model["passed"], [c for c in model["comparisons"] if not c["passed"]]
    compared = {c["param"] for c in model["comparisons"]} | \
        {r["param"] for r in model["finite_difference"]}
    assert {"0.E", "0.P"} <= compared


def test_token_inputs_still_need_an_embedding_or_a_plugin_first(tmp_path, capsys):
    (tmp_path / "tokens.py").write_text(TOKEN_PLUGIN)
    path = write(tmp_path, token_spec(dense(4)))
    assert main(["check", str(path), "--frameworks", "numpy", "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"crossgrad: {path}: layers[0].type: token inputs need an embedding (or a plugin "
        "layer, which receives the integer ids) as the first layer")


# ---- a file plugin is one file -----------------------------------------------------------------

@pytest.mark.parametrize("helper, imports, beside", [
    ("helpers.py", "from helpers import twice", "helpers, a module beside it"),
    ("helpers.py", "from .helpers import twice", "a module relative to it"),
    ("helpers/more.py", "import helpers.more", "helpers, a module beside it"),
], ids=["sibling", "relative", "sibling-package"])
def test_a_file_plugin_importing_a_file_beside_it_is_told_of_module_plugins(
        tmp_path, capsys, helper, imports, beside):
    """A file plugin runs alone, without its folder on sys.path, and only its bytes are
    hashed: code beside it is neither found nor covered. Exit 2, one line, naming
    plugins[0] and saying what to do instead."""
    (tmp_path / helper).parent.mkdir(exist_ok=True)
    (tmp_path / helper).write_text("def twice(x):\n    return 2 * x\n")
    (tmp_path / "mine.py").write_text(f"import crossgrad\n{imports}\n")
    path = write(tmp_path, spec("sib", [dense(8), {"type": "plug"}, dense(10)], [64], DIGITS,
                                ["mine.py"]))
    assert main(["check", str(path), "--frameworks", "numpy", "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"crossgrad: {path}: plugins[0]: mine.py imports {beside} (at mine.py:2): a file "
        "plugin is one self-contained file (loaded alone, only its bytes hashed); code split "
        "across files is a module plugin, plugins = [\"package.module\"], found on sys.path")


def test_a_file_plugin_missing_a_package_is_told_so_as_before(tmp_path, capsys):
    """No module of that name beside the file: an uninstalled package, not a split plugin."""
    (tmp_path / "mine.py").write_text("import crossgrad\nimport cg_not_installed_anywhere\n")
    path = write(tmp_path, spec("sib", [dense(8), {"type": "plug"}, dense(10)], [64], DIGITS,
                                ["mine.py"]))
    assert main(["check", str(path), "--frameworks", "numpy", "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"crossgrad: {path}: plugins[0]: mine.py raised ModuleNotFoundError: No module named "
        "'cg_not_installed_anywhere' (at mine.py:2) while loading")
