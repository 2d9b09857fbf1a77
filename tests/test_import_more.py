"""`crossgrad import`, beyond a chain of distinct modules in one file.

A model file's helper modules (from its folder) are recorded at the import and a change
to one leaves the original out, named; a module or layer without weights or randomness
may be called twice (a Dropout or a layer with weights may not); an in-place op that
overwrites a value something else reads is refused; F.max_pool2d and F.avg_pool2d map
like their modules; a flattened 1x1 image is in canonical order; a causal mask or a zero
initial state built from the input's size is a constant.
"""
import json
import os
import textwrap

import pytest

torch = pytest.importorskip("torch")

from crossgrad.harness import api, registry  # noqa: E402
from crossgrad.harness.cli import main  # noqa: E402
from crossgrad.harness.errors import InputError  # noqa: E402
from crossgrad.harness.importers.build import import_torch  # noqa: E402
from crossgrad.harness.run.execute import participants  # noqa: E402
from crossgrad.harness.spec import load_spec  # noqa: E402

THREE = ["numpy", "torch", "original"]


def _net(folder, source, name="net"):
    (folder / f"{name}.py").write_text("import torch\nfrom torch import nn\n"
                                       "import torch.nn.functional as F\n" +
                                       textwrap.dedent(source) + "\n\ndef build():\n"
                                       "    torch.manual_seed(0)\n    return Net()\n")
    return f"{folder}/{name}.py:build"


def _refused(tmp_path, capsys, source, shape, message):
    code = main(["import", "torch", _net(tmp_path, source), "--input-shape", shape,
                 "--loss", "mse", "--out", str(tmp_path / "m.toml")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"net.py:build: {message}" in err, err
    assert sorted(os.listdir(tmp_path)) == ["net.py"]


# ---- a helper module next to the model file ----------------------------------------------------

@pytest.fixture
def with_helper(tmp_path, capsys):
    """net.py builds its model from blocks_<test>.py beside it (a name no other test imports:
    a module already imported is found by its name)."""
    helper = f"blocks_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{helper}.py").write_text(
        "from torch import nn\nWIDTH = 8\n\n\ndef block():\n"
        "    return nn.Sequential(nn.Linear(6, WIDTH), nn.Sigmoid())\n")
    (tmp_path / "net.py").write_text(
        f"import torch\nfrom torch import nn\nfrom {helper} import block, WIDTH\n\n\n"
        "def build():\n    torch.manual_seed(0)\n    return nn.Sequential(block(), "
        "nn.Linear(WIDTH, 3))\n")
    assert main(["import", "torch", f"{tmp_path}/net.py:build", "--input-shape", "6", "--loss",
                 "softmax_cross_entropy", "--out", str(tmp_path / "net.toml")]) == 0
    capsys.readouterr()
    return tmp_path / "net.toml", tmp_path / f"{helper}.py"


def test_the_import_records_the_model_file_s_helper_modules(with_helper):
    spec_file, helper = with_helper
    assert f'helpers = [{{ file = "{helper.name}", sha256 = "' in spec_file.read_text()
    original = load_spec(spec_file).original
    assert [(h["file"], h["path"]) for h in original["helpers"]] == [(helper.name, str(helper))]
    assert participants(load_spec(spec_file), registry.PARTICIPANTS)["original"] is None
    # the spec file stays valid against the spec schema, and the original's cache key
    # follows the helper's bytes
    import jsonschema
    import tomllib
    from crossgrad.harness import schemas
    from crossgrad.harness.run.jobs import job_key
    jsonschema.validate(tomllib.loads(spec_file.read_text()), json.loads(schemas.text("spec")))
    spec = load_spec(spec_file)
    key = job_key("check", spec, "original", "2", False, participant="original")
    spec.original["helpers"][0]["sha256"] = "0" * 64
    assert job_key("check", spec, "original", "2", False, participant="original") != key


def test_a_changed_helper_leaves_the_original_out_naming_it(with_helper, capsys):
    spec_file, helper = with_helper
    helper.write_text(helper.read_text().replace("WIDTH = 8", "WIDTH = 5"))
    left_out = participants(load_spec(spec_file), registry.PARTICIPANTS)["original"]
    assert left_out["status"] == "skipped"
    assert left_out["error"] == (f"{helper.name}, which net.py imports, changed since the import "
                                 "(its sha256 is not the one in the spec's original.helpers); "
                                 "the original is left out: import it again to compare it")
    assert main(["check", str(spec_file), "--frameworks", "numpy,original", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert f"original failed: {helper.name}, which net.py imports, changed" in out
    assert "RuntimeError" not in out and "parts from numpy" not in out
    helper.unlink()
    assert f"{helper.name}, which net.py imports, is gone" in \
        participants(load_spec(spec_file), registry.PARTICIPANTS)["original"]["error"]


def test_a_spec_imported_before_helpers_were_recorded_still_runs_its_original(with_helper):
    spec_file, helper = with_helper
    text = "".join(line for line in spec_file.read_text().splitlines(True)
                   if not line.startswith("helpers = "))
    spec_file.write_text(text)
    spec = load_spec(spec_file)
    assert spec.original["helpers"] == []
    assert participants(spec, registry.PARTICIPANTS)["original"] is None


@pytest.mark.parametrize("entry, field", [
    ('{ file = "b.py" }', "original.helpers[0].sha256"),
    ('{ file = "b.py", sha256 = "00" }', "original.helpers[0].sha256"),
    ('{ file = "b.py", sha256 = "' + "0" * 64 + '", size = 1 }', "original.helpers[0].size"),
    ('"b.py"', "original.helpers[0]"),
])
def test_a_bad_helpers_entry_is_bad_input_naming_the_field(with_helper, entry, field):
    spec_file, _ = with_helper
    text = "".join(f"helpers = [{entry}]\n" if line.startswith("helpers = ") else line
                   for line in spec_file.read_text().splitlines(True))
    spec_file.write_text(text)
    with pytest.raises(InputError) as err:
        load_spec(spec_file)
    assert field in str(err.value)


def test_helpers_in_a_keras_original_are_bad_input(with_helper):
    spec_file, _ = with_helper
    text = spec_file.read_text().replace('framework = "torch"', 'framework = "keras"')
    spec_file.write_text(text.replace('factory = "build"\n', ""))
    with pytest.raises(InputError, match="original.helpers: a Keras model is its .keras file "
                                         "alone; no helpers"):
        load_spec(spec_file)


# ---- a module without weights called twice ------------------------------------------------------

BASIC_BLOCK = """
    class Net(nn.Module):  # torchvision's BasicBlock, small: one in-place ReLU called twice
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 3, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(3)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(3, 3, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(3)
            self.fc = nn.Linear(3 * 6 * 6, 3)

        def forward(self, x):
            identity = x
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            out += identity
            out = self.relu(out)
            return self.fc(torch.flatten(out, 1))
    """


def test_a_module_without_weights_called_twice_is_a_layer_per_call(tmp_path, executor):
    done = import_torch(_net(tmp_path, BASIC_BLOCK), [3, 6, 6], "softmax_cross_entropy")
    types = [layer["type"] for layer in done.spec.layers]
    assert types == ["residual", "relu", "flatten", "dense"]
    assert [layer["type"] for layer in done.spec.layers[0]["layers"]] == [
        "conv2d", "batchnorm", "relu", "conv2d", "batchnorm"]
    assert done.text.count("# model.relu: nn.ReLU") == 2
    checked = api.check([done.spec], frameworks=THREE, executor=executor)
    assert checked.passed, checked.models[0]["comparisons"]


def test_a_dropout_called_twice_is_refused_one_mask_per_call(tmp_path, capsys):
    _refused(tmp_path, capsys, """
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.a, self.b, self.drop = nn.Linear(3, 3), nn.Linear(3, 3), nn.Dropout(0.5)

            def forward(self, x):
                return self.b(self.drop(self.a(self.drop(x))))
        """, "3", "model.drop: nn.Dropout is called twice in forward: it draws a mask per "
                  "call, and each crossgrad dropout layer has its own")


def test_a_module_with_weights_called_twice_is_refused_as_shared(tmp_path, capsys):
    _refused(tmp_path, capsys, """
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.norm, self.act = nn.LayerNorm(3), nn.Tanh()

            def forward(self, x):
                return self.norm(self.act(self.norm(x)))
        """, "3", "model.norm: nn.LayerNorm is called twice in forward (shared weights)")


@pytest.mark.parametrize("source, shape, message", [
    ("""
        class Net(nn.Module):  # two modules, one Parameter
            def __init__(self):
                super().__init__()
                self.a, self.b, self.out = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 3)
                self.b.weight = self.a.weight

            def forward(self, x):
                return self.out(torch.tanh(self.b(torch.tanh(self.a(x)))))
        """, "4", "model.b: nn.Linear shares its weight with model.a (b.weight is a.weight)"),
    ("""
        class Net(nn.Module):  # a language model's embedding tied to its output layer
            def __init__(self):
                super().__init__()
                self.emb, self.fc, self.out = nn.Embedding(6, 4), nn.Linear(4, 4), nn.Linear(4, 6)
                self.out.weight = self.emb.weight

            def forward(self, x):
                return self.out(torch.tanh(self.fc(self.emb(x))).mean(1))
        """, "3", "model.out: nn.Linear shares its weight with model.emb (out.weight is "
                  "emb.weight)"),
])
def test_modules_sharing_a_parameter_are_refused(tmp_path, capsys, source, shape, message):
    """Tied weights train one tensor from both uses; the spec would train two apart."""
    _refused(tmp_path, capsys, source, shape, message + "; each crossgrad layer has its own")


def test_a_flatten_of_flat_values_keeps_their_order(tmp_path, executor):
    """nn.Flatten, then x.view(x.size(0), -1), as many models write it: the second changes
    nothing, and the Linear after them still has its rows permuted from (C, H, W) order."""
    done = import_torch(_net(tmp_path, """
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.features = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten())
                self.fc = nn.Linear(3 * 3 * 3, 2)

            def forward(self, x):
                x = self.features(x)
                return self.fc(x.view(x.size(0), -1))
        """), [2, 5, 5], "mse")
    assert done.text.count("rows permuted") == 1
    checked = api.check([done.spec], frameworks=THREE, executor=executor)
    assert checked.passed, checked.models[0]["comparisons"]


def test_an_in_place_dropout_applies_the_mask_once(tmp_path, executor):
    """nn.Dropout(inplace=True) has masked its input before a hook on its output runs: the
    original must apply the harness's mask once, as the four do."""
    done = import_torch(_net(tmp_path, """
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5, inplace=True),
                                          nn.Tanh(), nn.Linear(8, 3))

            def forward(self, x):
                return self.body(x)
        """), [4], "mse")
    checked = api.check([done.spec], frameworks=THREE, executor=executor)
    assert checked.passed, checked.models[0]["comparisons"]
    trained = api.train([done.spec.with_overrides(**{"train.steps": 5})], frameworks=THREE,
                        executor=executor)
    assert trained.passed and trained.models[0]["frameworks"]["original"]["max_rel_diff"] <= 1e-10


# ---- in place -----------------------------------------------------------------------------------

PREACT = """
    class Net(nn.Module):  # identity taken before an in-place op that overwrites it
        def __init__(self):
            super().__init__()
            self.fc0, self.fc1, self.fc2 = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 3)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            x = self.fc0(x)
            identity = x
            out = self.fc1({op})
            return self.fc2(out + identity)
    """


@pytest.mark.parametrize("op, message", [
    ("self.relu(x)", "model.relu: nn.ReLU (inplace=True) overwrites its input, which "
                     "`add` in forward reads after it"),
    ("F.relu(x, inplace=True)", "model.forward: F.relu overwrites its input"),
    ("x.relu_()", "model.forward: the tensor method .relu_() overwrites its input"),
    ("torch.relu_(x)", "model.forward: torch.relu_ overwrites its input"),
])
def test_an_in_place_op_over_a_value_read_again_is_refused(tmp_path, capsys, op, message):
    _refused(tmp_path, capsys, PREACT.format(op=op), "6", message)


def test_an_in_place_add_over_a_value_read_again_is_refused(tmp_path, capsys):
    _refused(tmp_path, capsys, """
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc0, self.fc1, self.fc2 = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 3)

            def forward(self, x):
                x = self.fc0(x)
                y = self.fc1(x)
                kept = y
                y = y.add_(x)
                return self.fc2(y + kept)
        """, "6", "model.forward: the tensor method .add_() overwrites its input, which `add` in "
                  "forward reads after it")


@pytest.mark.parametrize("call, message", [
    ("out.add_(x)", "model.forward: the tensor method .add_() changes its input in place and "
                    "its result is not used"),
    ("self.relu(out)", "model.relu: nn.ReLU (inplace=True) changes its input in place and its "
                       "result is not used"),
])
def test_an_in_place_op_whose_result_is_not_used_is_refused(tmp_path, capsys, call, message):
    """The trace drops a call whose result nothing uses; its change to `out` would be lost."""
    _refused(tmp_path, capsys, f"""
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc0, self.fc1 = nn.Linear(6, 6), nn.Linear(6, 3)
                self.relu = nn.ReLU(inplace=True)

            def forward(self, x):
                x = self.fc0(x)
                out = x * 1
                {call}
                return self.fc1(out)
        """, "6", message)


def test_in_place_ops_whose_input_nothing_else_reads_import(tmp_path, executor):
    done = import_torch(_net(tmp_path, """
        class Net(nn.Module):  # Conv-BN-ReLU(inplace=True), then .relu_() and `+=`
            def __init__(self):
                super().__init__()
                self.conv, self.bn = nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3)
                self.relu = nn.ReLU(inplace=True)
                self.fc0, self.fc1 = nn.Linear(12, 5), nn.Linear(5, 5)
                self.fc2 = nn.Linear(5, 3)

            def forward(self, x):
                x = torch.flatten(self.relu(self.bn(self.conv(x))), 1)
                x = self.fc0(x).relu_()
                y = self.fc1(x)
                y += x
                return self.fc2(y)
        """), [2, 4, 4], "softmax_cross_entropy")
    assert [layer["type"] for layer in done.spec.layers] == [
        "conv2d", "batchnorm", "relu", "flatten", "dense", "relu", "residual", "dense"]
    checked = api.check([done.spec], frameworks=THREE, executor=executor)
    assert checked.passed, checked.models[0]["comparisons"]


# ---- functional pooling, a flattened 1x1 image --------------------------------------------------

POOLS = """
    class Net(nn.Module):  # PyTorch's MNIST example pools with F.max_pool2d(x, 2)
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 3, 3), nn.Linear(3 * 3 * 3, 3)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv(x)), 2)
            x = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
            x = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
            return self.fc(torch.flatten(x, 1))
    """


def test_functional_pooling_maps_like_its_module(tmp_path, executor):
    done = import_torch(_net(tmp_path, POOLS), [1, 8, 8], "softmax_cross_entropy")
    pools = [(layer["type"], layer["pool_size"], layer["strides"], layer["padding"])
             for layer in done.spec.layers if "pool" in layer["type"]]
    assert pools == [("maxpool2d", [2, 2], [2, 2], "valid"),
                     ("avgpool2d", [3, 3], [1, 1], [1, 1]),
                     ("maxpool2d", [3, 3], [1, 1], [1, 1])]
    assert "# model.forward: F.max_pool2d" in done.text
    assert "# model.forward: F.avg_pool2d" in done.text
    checked = api.check([done.spec], frameworks=THREE, executor=executor)
    assert checked.passed, checked.models[0]["comparisons"]


@pytest.mark.parametrize("call, message", [
    ("F.max_pool2d(x, 2, ceil_mode=True)", "F.max_pool2d ceil_mode=True"),
    ("F.max_pool2d(x, 2, 2, 0, 2)", "F.max_pool2d dilation=2"),
    ("F.avg_pool2d(x, 3, 1, 1)", "F.avg_pool2d count_include_pad=True with padding"),
    ("F.avg_pool2d(x, 2, divisor_override=3)", "F.avg_pool2d divisor_override"),
])
def test_functional_pooling_refuses_what_its_module_refuses(tmp_path, capsys, call, message):
    _refused(tmp_path, capsys, f"""
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(2, 2)

            def forward(self, x):
                return self.fc(torch.flatten({call}, 1).mean(1, keepdim=True).expand(-1, 2))
        """, "1,6,6", f"model.forward: {message}")


@pytest.mark.parametrize("source, shape", [
    ("torch.flatten(self.c2(F.relu(self.c1(x))), 1)", [1, 8, 8]),   # ends in a 1x1 image
    ("torch.flatten(self.one(F.relu(self.c1(x))), 1)", [1, 8, 8]),  # ends in one channel
])
def test_a_flattened_image_of_one_pixel_or_channel_is_the_output(tmp_path, executor, source,
                                                                 shape):
    done = import_torch(_net(tmp_path, f"""
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.c1, self.c2 = nn.Conv2d(1, 4, 3), nn.Conv2d(4, 5, 6)
                self.one = nn.Conv2d(4, 1, 5)

            def forward(self, x):
                return {source}
        """), shape, "mse")
    assert done.spec.layers[-1]["type"] == "flatten" and "rows permuted" not in done.text
    checked = api.check([done.spec], frameworks=THREE, executor=executor)
    assert checked.passed, checked.models[0]["comparisons"]


# ---- constants built from the input's size ------------------------------------------------------

CAUSAL = """
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(16, 8)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.head = nn.Linear(8, 3)

        def forward(self, tokens):
            x = self.emb(tokens)
            mask = nn.Transformer.generate_square_subsequent_mask(x.size(1))
            x = self.attn(x, x, x, attn_mask=mask, need_weights=False)[0]
            return self.head(x.mean(1))
    """

TUTORIAL_LSTM = """
    class Net(nn.Module):  # the classic tutorial: initial states given, zeros
        def __init__(self):
            super().__init__()
            self.lstm, self.fc = nn.LSTM(4, 6, batch_first=True), nn.Linear(6, 3)
            self.h = nn.Parameter(torch.zeros(1, 1, 6))

        def forward(self, x):
            h0 = {h0}
            c0 = torch.zeros(1, x.size(0), 6)
            out, _ = self.lstm(x, (h0, c0))
            return self.fc(out[:, -1, :])
    """


def test_a_causal_mask_and_a_zero_state_built_from_the_input_s_size_import(tmp_path, executor):
    causal = import_torch(_net(tmp_path, CAUSAL, "causal"), [5], "softmax_cross_entropy")
    assert [layer.get("causal") for layer in causal.spec.layers if
            layer["type"] == "attention"] == [True]
    lstm = import_torch(_net(tmp_path, TUTORIAL_LSTM.format(h0="x.new_zeros(1, x.size(0), 6)"),
                             "lstm"), [5, 4], "softmax_cross_entropy")
    assert [layer["type"] for layer in lstm.spec.layers] == ["lstm", "dense"]
    checked = api.check([causal.spec, lstm.spec], frameworks=THREE, executor=executor)
    assert checked.passed, [m["comparisons"] for m in checked.models]


@pytest.mark.parametrize("h0, message", [
    ("torch.ones(1, x.size(0), 6)", "model.lstm: nn.LSTM is given an initial state (ones) that "
                                    "is not zeros"),
    ("self.h.expand(1, x.size(0), 6).contiguous()",
     "model.lstm: nn.LSTM is given an initial state (contiguous) made from a tensor of the "
     "model's"),
])
def test_an_initial_state_other_than_zeros_is_refused(tmp_path, capsys, h0, message):
    _refused(tmp_path, capsys, TUTORIAL_LSTM.format(h0=h0), "5,4", message)


# ---- Keras: one layer object applied twice; a flattened 1x1 channels_first image ---------------

def _keras():
    pytest.importorskip("tensorflow")
    return pytest.importorskip("keras")


def _save_functional(tmp_path, build):
    keras = _keras()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    keras.Model(inputs, build(keras.layers, inputs)).save(tmp_path / "m.keras")
    return tmp_path / "m.keras"


@pytest.mark.slow  # a check in all four frameworks and the original: 8 s
def test_a_keras_layer_without_weights_applied_twice_is_a_layer_per_call(tmp_path, executor):
    from crossgrad.harness.importers.build import import_keras

    def build(L, x):
        act = L.ReLU(name="act")
        return L.Dense(3)(act(L.Dense(8)(act(L.Dense(8)(x)))))
    done = import_keras(_save_functional(tmp_path, build), "softmax_cross_entropy")
    assert [layer["type"] for layer in done.spec.layers] == [
        "dense", "relu", "dense", "relu", "dense"]
    assert done.text.count("# model.act: keras.layers.ReLU") == 2
    checked = api.check([done.spec], frameworks=["numpy", "tensorflow", "original"],
                        executor=executor)
    assert checked.passed, checked.models[0]["comparisons"]


@pytest.mark.parametrize("layer, message", [
    ("Dropout", "model.again: Dropout is called more than once: it draws a mask (or noise) "
                "per call"),
    ("Dense", "model.again: is called more than once (shared weights)"),
])
def test_a_keras_dropout_or_a_layer_with_weights_applied_twice_is_refused(tmp_path, capsys,
                                                                         layer, message):
    def build(L, x):
        again = L.Dropout(0.5, name="again") if layer == "Dropout" else L.Dense(6, name="again")
        return L.Dense(3)(again(L.Dense(6)(again(x))))
    path = _save_functional(tmp_path, build)
    code = main(["import", "keras", str(path), "--loss", "mse", "--out", str(tmp_path / "o.toml")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"m.keras: {message}" in err, err
    assert sorted(os.listdir(tmp_path)) == ["m.keras"]


def test_a_keras_channels_first_model_ending_in_a_1x1_image_imports(tmp_path):
    from crossgrad.harness.importers.build import import_keras
    keras = _keras()
    inputs = keras.Input((1, 6, 6))
    x = keras.layers.Conv2D(4, 3, data_format="channels_first")(inputs)
    x = keras.layers.Conv2D(5, 4, data_format="channels_first")(x)
    keras.Model(inputs, keras.layers.Flatten()(x)).save(tmp_path / "fc.keras")
    done = import_keras(tmp_path / "fc.keras", "mse")
    assert done.spec.layers[-1]["type"] == "flatten" and "rows permuted" not in done.text
