"""`crossgrad import torch` and the original PyTorch model as a fifth participant.

Zoo models written as nn.Modules (tests/exports.py, into tmp_path) are imported back and
checked: the original agrees with the four in float64 and float32, a CNN's Linear after
an NCHW flatten included. Every option the importer maps runs through custom modules
(check and train); unsupported modules and options, bad state_dicts and bad `params`
files are exit 2, one line, nothing written; a model file that changed after the import
leaves the original out.
"""
import json
import pickle
import re
import os
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import crossgrad  # noqa: E402
from crossgrad.harness import api, registry  # noqa: E402
from crossgrad.harness.cli import main  # noqa: E402
from crossgrad.harness.errors import InputError  # noqa: E402
from crossgrad.harness.importers.build import import_torch  # noqa: E402
from crossgrad.harness.run.execute import participants  # noqa: E402
from crossgrad.harness.run.jobs import job_key  # noqa: E402
from crossgrad.harness.spec import load_spec, zoo_spec  # noqa: E402
from exports import data_source, nchw, torch_source  # noqa: E402
from limited import crossgrad as limited  # noqa: E402

# conv, pooling, an NCHW flatten; an LSTM; embedding, attention, layernorm, gelu, residual
# blocks, sequence mean (the other layers: test_every_mapped_option_agrees...)
ZOO = ["digits_cnn", "seq_lstm", "tiny_transformer"]
DTYPES = ["float64", "float32"]
FIVE = {*registry.ORDER, "original"}


def port(folder, name):
    """The zoo model `name` as a PyTorch file in `folder`, imported back -> Imported."""
    spec = zoo_spec(name)
    (folder / f"{name}.py").write_text(torch_source(spec))
    return import_torch(f"{folder / name}.py:build", nchw(spec.input_shape), spec.loss["type"],
                        data=data_source(spec), out=folder / f"{name}.toml")


@pytest.fixture(scope="module")
def zoo_checks(tmp_path_factory, executor):
    folder = tmp_path_factory.mktemp("torch_zoo")
    ported = [port(folder, name).spec for name in ZOO]
    specs = [spec.with_overrides(dtype=dtype) for spec in ported for dtype in DTYPES]
    result = api.check(specs, executor=executor)
    return {(m["name"], m["dtype"]): m for m in result.models}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ZOO)
def test_a_zoo_model_written_in_torch_agrees_with_the_four(zoo_checks, name, dtype):
    m = zoo_checks[(name, dtype)]
    ran = {fw for fw, info in m["frameworks"].items() if info["status"] == "ok"}
    assert ran == {fw for fw in FIVE if fw == "original" or registry.installed(fw)}
    assert m["frameworks"]["original"]["model_framework"] == "torch"
    with_original = [c for c in m["comparisons"] if "original" in (c["a"], c["b"])]
    assert {c["a"] for c in with_original} == ran - {"original"}
    assert all(c["b"] == "original" for c in with_original)  # it pairs after the four
    assert [c for c in m["comparisons"] if not c["passed"]] == []
    assert m["passed"] and m["first_parting"] == []
    assert {r["a"] for r in m["layers"] if r["b"] == "original"} == ran - {"original"}


def test_the_spec_says_what_the_import_converted(tmp_path):
    """digits_cnn: the input NCHW -> NHWC, and the Linear after the NCHW flatten has its
    rows permuted from (C, H, W) to (H, W, C) order: checked entry by entry."""
    done = port(tmp_path, "digits_cnn")
    assert "(C, H, W) = (1, 8, 8) per example (NCHW)" in done.text
    assert "flattened in (C, H, W) = (16, 2, 2) order" in done.text and "rows permuted" in done.text
    from crossgrad.harness.importers.torch_graph import load_factory
    net = load_factory(tmp_path / "digits_cnn.py", "build")
    weight = net.l7.weight.detach().numpy()                    # (10, C*H*W), (C, H, W) order
    by_chw = weight.T.reshape(16, 2, 2, 10)                      # [c, h, w, out]
    assert np.array_equal(done.arrays["7.W"].reshape(2, 2, 16, 10), by_chw.transpose(1, 2, 0, 3))
    assert np.array_equal(done.arrays["0.W"], net.l0.weight.detach().numpy().transpose(2, 3, 1, 0))


OPTIONS = '''
import torch
import torch.nn.functional as F
from torch import nn


class Image(nn.Module):
    """Strided conv with explicit padding, average pooling over real pixels only, max
    pooling with padding, dropout, BatchNorm1d and LayerNorm after an NCHW flatten."""
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, stride=2, padding=(1, 0))
        self.pool = nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False)
        self.mpool = nn.MaxPool2d(3, stride=1, padding=1)
        self.flat = nn.Flatten()
        self.drop = nn.Dropout(0.3)
        self.bn = nn.BatchNorm1d(72, momentum=0.2, eps=1e-4)
        self.norm = nn.LayerNorm(72)
        self.fc = nn.Linear(72, 4)
        self.act = nn.LeakyReLU(0.05)
        self.out = nn.Linear(4, 3)

    def forward(self, x):
        x = F.gelu(self.conv(x))
        x = self.mpool(self.pool(x))
        x = self.drop(self.flat(x))
        x = self.norm(self.bn(x))
        x = self.act(self.fc(x))
        return self.out(nn.functional.leaky_relu(x, 0.1))


class Sequence(nn.Module):
    """RNN, an LSTM's final state h[-1], Identity, a functional sigmoid, flatten by keyword;
    its output bias frozen (the original trains it, as the spec does)."""
    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(4, 6, batch_first=True)
        self.lstm = nn.LSTM(6, 5, batch_first=True)
        self.id = nn.Identity()
        self.fc = nn.Linear(5, 2)

    def forward(self, x):
        x, _ = self.rnn(x)
        _, (h, c) = self.lstm(x)
        return self.fc(self.id(torch.sigmoid(h[-1]))).flatten(start_dim=1)


class Tokens(nn.Module):
    """Embedding, a GRU's final state squeezed, BatchNorm1d, and a residual block."""
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(16, 6)
        self.gru = nn.GRU(6, 8, batch_first=True)
        self.bn = nn.BatchNorm1d(8)
        self.block = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8))
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        _, h = self.gru(self.emb(x))
        x = self.bn(h.squeeze(0))
        x = x + self.block(x)
        return self.fc(x)


def image():
    torch.manual_seed(1)
    return Image()


def sequence():
    torch.manual_seed(2)
    model = Sequence()
    model.fc.bias.requires_grad_(False)
    return model


def tokens():
    torch.manual_seed(3)
    return Tokens()
'''


def test_every_mapped_option_agrees_in_check_and_training(tmp_path, executor):
    (tmp_path / "opts.py").write_text(OPTIONS)
    specs = [import_torch(f"{tmp_path}/opts.py:{factory}", shape, loss).spec
             for factory, shape, loss in (("image", [1, 9, 8], "softmax_cross_entropy"),
                                          ("sequence", [7, 4], "mse"),
                                          ("tokens", [5], "softmax_cross_entropy"))]
    three = ["numpy", "torch", "original"]
    checked = api.check(specs, frameworks=three, executor=executor)
    assert checked.passed, [m["comparisons"] for m in checked.models if not m["passed"]]
    trained = api.train([s.with_overrides(**{"train.steps": 15, "optimizer.type": "adam"})
                         for s in specs], frameworks=three, executor=executor)
    assert trained.passed
    for m in trained.models:
        assert m["frameworks"]["original"]["max_rel_diff"] <= 1e-10


def test_the_original_runs_in_bfloat16(tmp_path, executor):
    """ml_dtypes' bfloat16 arrays go in and out of the module the way the torch
    implementation takes them."""
    spec = port(tmp_path, "mlp_3_4_2").spec.with_overrides(dtype="bfloat16")
    m = api.check([spec], frameworks=["numpy", "torch", "original"], executor=executor).models[0]
    assert m["frameworks"]["original"]["status"] == "ok", m["frameworks"]["original"]
    assert m["passed"]


def test_training_the_original_follows_the_four(tmp_path, executor):
    spec = port(tmp_path, "seq_lstm").spec.with_overrides(
        **{"train.steps": 20, "optimizer.type": "adam", "train.clip_norm": 1.0, "train.l2": 1e-3})
    trained = api.train([spec], frameworks=["numpy", "torch", "original"], executor=executor)
    m = trained.models[0]
    assert m["passed"] and m["frameworks"]["original"]["status"] == "ok"
    assert m["frameworks"]["original"]["max_rel_diff"] <= 1e-10
    assert m["frameworks"]["original"]["final_params_rel_err"] <= 1e-10


# ---- bad input: exit 2, one line, nothing written ---------------------------------------------

REFUSED = {
    "pixel_shuffle": ("nn.Sequential(nn.Conv2d(4, 4, 1), nn.PixelShuffle(2))", [4, 4, 4],
                      "model.1: nn.PixelShuffle has no crossgrad layer"),
    "dilation": ("nn.Sequential(nn.Conv2d(1, 2, 3, dilation=2), nn.Flatten())", [1, 8, 8],
                 "model.0: nn.Conv2d dilation=(2, 2): crossgrad's conv2d has no dilation"),
    "groups": ("nn.Sequential(nn.Conv2d(2, 2, 3, groups=2), nn.Flatten())", [2, 8, 8],
               "model.0: nn.Conv2d groups=2"),
    "count_include_pad": ("nn.Sequential(nn.AvgPool2d(2, padding=1), nn.Flatten())", [1, 4, 4],
                          "model.0: nn.AvgPool2d count_include_pad=True with padding"),
    "ceil_mode": ("nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), nn.Flatten())", [1, 5, 5],
                  "model.0: nn.MaxPool2d ceil_mode=True"),
    "padding_mode": ("nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, padding_mode='reflect'), "
                     "nn.Flatten())", [1, 4, 4], "model.0: nn.Conv2d padding_mode='reflect'"),
    "gelu_tanh": ("nn.Sequential(nn.Linear(3, 3), nn.GELU(approximate='tanh'))", [3],
                  "model.1: nn.GELU(approximate='tanh')"),
    "softmax": ("nn.Sequential(nn.Linear(3, 3), nn.Softmax(-1))", [3],
                "model.1: nn.Softmax has no crossgrad layer"),
    "linear_on_image": ("nn.Sequential(nn.Linear(4, 3), nn.Flatten())", [2, 4, 4],
                        "model.0: nn.Linear on an NCHW image acts on its width"),
    "weight_norm": ("nn.Sequential(nn.utils.weight_norm(nn.Linear(3, 3)), nn.Tanh())", [3],
                    "model.0: nn.Linear: its 'weight' is computed at each call"),
    "parametrized": ("nn.Sequential(nn.utils.parametrizations.weight_norm(nn.Linear(3, 3)))",
                     [3], "model.0: nn.ParametrizedLinear has no crossgrad layer"),
    # a value a spec layer cannot take: the module as the model has it, not a spec field
    "dropout_of_every_value": ("nn.Sequential(nn.Linear(4, 6), nn.Dropout(1.0), nn.Linear(6, 1))",
                               [4], "model.1: nn.Dropout p=1.0: drops every value; crossgrad's "
                                    "dropout rate must be below 1"),
    "negative_slope": ("nn.Sequential(nn.Linear(3, 3), nn.LeakyReLU(-0.1))", [3],
                       "model.1: nn.LeakyReLU maps to crossgrad's leaky_relu layer, whose alpha "
                       "must be >= 0.0, got -0.1"),
    "layernorm_over_an_image": ("nn.Sequential(nn.Conv2d(1, 2, 3), nn.LayerNorm([2, 6, 6]), "
                                "nn.Flatten(), nn.Linear(72, 2))", [1, 8, 8],
                                "model.1: nn.LayerNorm over (2, 6, 6) on an NCHW image normalises "
                                "over each example's (C, H, W) together; crossgrad's layernorm "
                                "normalises the channels alone"),
}


def _factory_file(tmp_path, expression):
    (tmp_path / "bad.py").write_text(textwrap.dedent(f"""
        import torch
        from torch import nn


        def build():
            return {expression}
        """))
    return f"{tmp_path}/bad.py:build"


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_module_or_option_crossgrad_cannot_express_is_refused(tmp_path, capsys, case):
    expression, shape, message = REFUSED[case]
    before = sorted(os.listdir(tmp_path))
    code = main(["import", "torch", _factory_file(tmp_path, expression), "--input-shape",
                 ",".join(map(str, shape)), "--loss", "mse", "--out", str(tmp_path / "m.toml")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and message in err, err
    assert sorted(os.listdir(tmp_path)) == sorted(before + ["bad.py"])


CHAINS = {  # a module of one's own: (its source, what the one line says)
    "shared": ("""
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(3, 3)

            def forward(self, x):
                return self.fc(self.fc(x))
        """, "model.fc: nn.Linear is called twice in forward (shared weights)"),
    "concat": ("""
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.a, self.b = nn.Linear(3, 2), nn.Linear(3, 2)

            def forward(self, x):
                return torch.cat([self.a(x), self.b(x)], 1)
        """, "model.b: does not take the output of the layer before it (model.a)"),
    "control_flow": ("""
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(3, 3)

            def forward(self, x):
                return self.fc(x) if x.sum() > 0 else x
        """, "model: torch.fx cannot trace its forward"),
    "batch_first": ("""
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn, self.fc = nn.GRU(3, 4), nn.Linear(4, 2)

            def forward(self, x):
                out, _ = self.rnn(x)
                return self.fc(out[:, -1])
        """, "model.rnn: nn.GRU batch_first=False"),
    "own_module": ("""
        class Swish(nn.Module):
            def forward(self, x):
                return x * torch.sigmoid(x)


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc, self.act = nn.Linear(3, 3), Swish()

            def forward(self, x):
                return self.act(self.fc(x)).mean(1)
        """, "model.act: Swish (a module of your own): does not take the output of the layer "
             "before it (sigmoid)"),
    "attention_weights": ("""
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.attn = nn.MultiheadAttention(3, 1, batch_first=True)

            def forward(self, x):
                return self.attn(x, x, x)[1].mean(1)
        """, "model.attn: crossgrad follows its output"),
    "first_step": ("""
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn, self.fc = nn.LSTM(3, 4, batch_first=True), nn.Linear(4, 2)

            def forward(self, x):
                out, _ = self.rnn(x)
                return self.fc(out[:, 0])
        """, "model.rnn: nn.LSTM output read as out[:, 0]: crossgrad follows out (every step), "
             "out[:, -1] (the last) or the final state h[-1]"),
    "indexing": ("""
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(3, 4)

            def forward(self, x):
                return self.fc(x)[:, :, 1:3].mean(1)
        """, "model.forward: operator.getitem (x[:, :, 1:3]) has no crossgrad layer; indexing is "
             "read only after a recurrent layer, as out[:, -1] or h[-1]"),
}


@pytest.mark.parametrize("case", sorted(CHAINS))
def test_a_forward_that_is_not_a_chain_is_refused(tmp_path, capsys, case):
    source, message = CHAINS[case]
    (tmp_path / "net.py").write_text("import torch\nfrom torch import nn\n" +
                                     textwrap.dedent(source) + "\n\ndef build():\n"
                                     "    return Net()\n")
    code = main(["import", "torch", f"{tmp_path}/net.py:build", "--input-shape", "5,3",
                 "--loss", "mse", "--out", str(tmp_path / "m.toml")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"net.py:build: {message}" in err, err
    assert not (tmp_path / "m.toml").exists() and not (tmp_path / "m.params.npz").exists()


def _state_dict(tmp_path, change):
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    state = net.state_dict()
    change(state)
    torch.save(state, tmp_path / "w.pt")
    (tmp_path / "m.py").write_text("from torch import nn\n\n\ndef build():\n    return "
                                   "nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))\n")


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("2.bias"), "missing key '2.bias'"),
    (lambda s: s.__setitem__("3.weight", torch.zeros(2)), "unexpected key '3.weight'"),
    (lambda s: s.__setitem__("0.weight", torch.zeros(4, 5)), "0.weight: shape (4, 5), the "
                                                             "model's is (4, 3)"),
])
def test_a_state_dict_that_does_not_fit_is_refused(tmp_path, capsys, change, message):
    _state_dict(tmp_path, change)
    code = main(["import", "torch", f"{tmp_path}/m.py:build", "--weights", str(tmp_path / "w.pt"),
                 "--input-shape", "3", "--loss", "mse", "--out", str(tmp_path / "m.toml")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"w.pt: {message}" in err, err
    assert sorted(os.listdir(tmp_path)) == ["m.py", "w.pt"]


def test_weights_from_a_state_dict_are_the_spec_s(tmp_path, capsys):
    _state_dict(tmp_path, lambda s: s["0.weight"].fill_(0.25))
    assert main(["import", "torch", f"{tmp_path}/m.py:build", "--weights", str(tmp_path / "w.pt"),
                 "--input-shape", "3", "--loss", "mse", "--out", str(tmp_path / "m.toml")]) == 0
    assert "wrote" in capsys.readouterr().out
    stored = np.load(tmp_path / "m.params.npz")
    assert np.all(stored["0.W"] == 0.25) and set(stored.files) == {"0.W", "0.b", "2.W", "2.b"}
    assert load_spec(tmp_path / "m.toml").initial["0.W"].shape == (3, 4)


def _nan(path):
    state = torch.load(path)
    state["0.weight"][1, 2] = float("nan")
    torch.save(state, path)


@pytest.mark.parametrize("write, message", [
    (lambda path: path.write_bytes(b"not a torch file"),
     "w.pt: not a state_dict file: torch.load (weights only: no code from the file runs) cannot "
     "read it (Unsupported operand 110)"),
    (lambda path: path.write_bytes(pickle.dumps({"0.weight": [1.0]}, protocol=4)),
     "w.pt: not a state_dict file: torch.load (weights only: no code from the file runs) cannot "
     "read it (Unsupported operand 149)"),
    (lambda path: torch.save(torch.nn.Sequential(torch.nn.Linear(3, 4)), path),
     "w.pt: not a state_dict file: it holds a pickled torch.nn.modules.container.Sequential, "
     "which crossgrad does not unpickle (no code from the file runs); save model.state_dict() "
     "instead"),
    (lambda path: path.unlink(), "w.pt: no such file"),
    (_nan, "w.pt: 0.weight: holds non-finite values (nan or inf)"),
])
def test_a_weights_file_crossgrad_cannot_use_is_named_plainly(tmp_path, capsys, write, message):
    """One line naming the weights file (and the key), not torch's advice on weights_only
    cut mid-sentence, nor the model's factory for the file's NaN."""
    _state_dict(tmp_path, lambda s: None)
    write(tmp_path / "w.pt")
    files = sorted(os.listdir(tmp_path))
    code = main(["import", "torch", f"{tmp_path}/m.py:build", "--weights", str(tmp_path / "w.pt"),
                 "--input-shape", "3", "--loss", "mse", "--out", str(tmp_path / "m.toml")])
    err = capsys.readouterr().err
    assert code == 2 and err == f"crossgrad: {tmp_path}/{message}\n", err
    assert sorted(os.listdir(tmp_path)) == files


def test_a_file_that_is_not_a_state_dict_is_refused(tmp_path, capsys):
    _state_dict(tmp_path, lambda s: None)
    (tmp_path / "w.pt").write_bytes(b"not a pickle at all")
    code = main(["import", "torch", f"{tmp_path}/m.py:build", "--weights", str(tmp_path / "w.pt"),
                 "--input-shape", "3", "--loss", "mse", "--out", str(tmp_path / "m.toml")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "w.pt: not a state_dict file" in err


@pytest.mark.parametrize("argv, message", [
    (["m.py"], "expected FILE.py:FACTORY"),
    (["m.py:nothing"], "m.py has no function 'nothing'"),
    (["gone.py:build"], "no such file"),
])
def test_a_bad_factory_is_refused(tmp_path, capsys, argv, message):
    _state_dict(tmp_path, lambda s: None)
    code = main(["import", "torch", str(tmp_path / argv[0]), "--input-shape", "3", "--loss",
                 "mse", "--out", str(tmp_path / "m.toml")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_a_module_object_where_a_factory_is_expected_is_named(tmp_path, capsys):
    """`net = nn.Linear(4, 2)` is callable (its forward): said for what it is, not as the
    TypeError of calling its forward with no input."""
    (tmp_path / "misc.py").write_text("from torch import nn\n\nnet = nn.Linear(4, 2)\n")
    code = main(["import", "torch", f"{tmp_path}/misc.py:net", "--input-shape", "4", "--loss",
                 "mse", "--out", str(tmp_path / "m.toml")])
    err = capsys.readouterr().err
    assert code == 2 and err == (f"crossgrad: {tmp_path}/misc.py:net: net is an nn.Module, not a "
                                 "function returning one: crossgrad calls net() to build the "
                                 "model (def net(): return ...)\n"), err
    assert sorted(os.listdir(tmp_path)) == ["misc.py"]


def test_a_factory_raising_a_message_of_several_lines_is_one_line(tmp_path, capsys):
    (tmp_path / "m.py").write_text("def build():\n    raise RuntimeError('boom\\nmore')\n")
    code = main(["import", "torch", f"{tmp_path}/m.py:build", "--input-shape", "4", "--loss",
                 "mse", "--out", str(tmp_path / "m.toml")])
    err = capsys.readouterr().err
    assert code == 2 and err == (f"crossgrad: {tmp_path}/m.py:build: m.py:build() raised "
                                 "RuntimeError: boom\n"), err


@pytest.mark.parametrize("out", [".toml", "sub/.toml"])
def test_an_out_with_no_name_before_toml_is_refused(tmp_path, capsys, out):
    """`--out .toml` wrote `.params.npz` beside a spec naming `.toml.params.npz`, which its
    own check then refused: refused before any work, naming --out."""
    _state_dict(tmp_path, lambda s: None)
    code = main(["import", "torch", f"{tmp_path}/m.py:build", "--input-shape", "3", "--loss",
                 "mse", "--out", str(tmp_path / out)])
    err = capsys.readouterr().err
    assert code == 2 and err == (f"crossgrad: --out: {tmp_path / out}: has nothing before .toml; "
                                 "name the spec, e.g. model.toml\n"), err
    assert sorted(os.listdir(tmp_path)) == ["m.py", "w.pt"]


# what PyTorch warns of as the model loads or runs once: (m.py, --input-shape, --weights
# written by, the import's exit status and the one line it prints)
WARNED = {
    "lstm_projection": ("""
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn, self.fc = nn.LSTM(3, 4, batch_first=True, proj_size=2), nn.Linear(2, 2)

            def forward(self, x):
                out, _ = self.rnn(x)
                return self.fc(out[:, -1])
        """, "5,3", None, 2, "model.rnn: nn.LSTM proj_size: crossgrad's LSTM has no projection"),
    "same_padding_with_an_even_kernel": ("""
        def Net():
            return nn.Sequential(nn.Conv2d(1, 2, 2, padding="same"), nn.Flatten(),
                                 nn.Linear(50, 2))
        """, "1,5,5", None, 0, "wrote m.toml (3 layers)"),
    "a_pickle_as_weights": ("""
        def Net():
            return nn.Sequential(nn.Linear(3, 2))
        """, "3", lambda path: path.write_bytes(pickle.dumps({"0.weight": [1.0]}, protocol=4)),
        2, "w.pt: not a state_dict file"),
}


@pytest.mark.slow  # subprocesses: a few seconds
@pytest.mark.parametrize("case", sorted(WARNED))
def test_the_framework_s_warnings_are_not_printed(tmp_path, case):
    """Bad input is one line and a good import one line: PyTorch's UserWarnings while the
    import loads and traces the model are not printed (run as a command: pytest would
    catch them in this process)."""
    source, shape, weights, code, line = WARNED[case]
    (tmp_path / "m.py").write_text("import torch\nfrom torch import nn\n" +
                                   textwrap.dedent(source) + "\n\ndef build():\n"
                                   "    torch.manual_seed(0)\n    return Net()\n")
    argv = ["import", "torch", "m.py:build", "--input-shape", shape, "--loss", "mse",
            "--out", "m.toml"]
    if weights is not None:
        weights(tmp_path / "w.pt")
        argv += ["--weights", "w.pt"]
    done = limited(tmp_path, argv, address_space=16 << 30)
    printed = done.stderr if code else done.stdout
    assert done.code == code and printed.count("\n") == 1 and line in printed, done
    assert "Warning" not in done.stderr + done.stdout and (code or done.stderr == ""), done


def test_an_existing_file_is_replaced_only_if_an_import_wrote_it(tmp_path):
    _state_dict(tmp_path, lambda s: None)
    argv = ["import", "torch", "m.py:build", "--input-shape", "3", "--loss", "mse",
            "--out", "m.toml"]
    (tmp_path / "m.toml").write_text("# my own notes\n")
    refused = limited(tmp_path, argv, address_space=16 << 30)
    assert refused.code == 2 and "m.toml: exists and is not a spec written by crossgrad import" \
        in refused.stderr
    assert (tmp_path / "m.toml").read_text() == "# my own notes\n"
    (tmp_path / "m.toml").unlink()
    (tmp_path / "m.params.npz").write_bytes(b"mine")
    refused = limited(tmp_path, argv, address_space=16 << 30)
    assert refused.code == 2 and "m.params.npz: exists" in refused.stderr
    assert (tmp_path / "m.params.npz").read_bytes() == b"mine"
    (tmp_path / "m.params.npz").unlink()
    assert limited(tmp_path, argv, address_space=16 << 30).code == 0
    first = (tmp_path / "m.toml").read_text()
    again = limited(tmp_path, argv, address_space=16 << 30)   # its own output: replaced
    # the same spec but for what stamps the weights (the factory's, drawn anew): their
    # digest, and the last line, which stamps the spec and the weights file
    def body(text):
        return [line for line in text.splitlines()[:-1] if not line.startswith("params_sha256")]
    second = (tmp_path / "m.toml").read_text()
    assert again.code == 0 and body(second) == body(first) and second != first
    for edit in ("m.toml", "m.params.npz"):  # changed since: the user's now
        before = (tmp_path / edit).read_bytes()
        if edit == "m.toml":
            (tmp_path / edit).write_text(before.decode().replace("\n[data]", "\n# mine\n[data]"))
        else:
            np.savez(tmp_path / edit, **{"0.W": np.ones((3, 4))})
        changed = (tmp_path / edit).read_bytes()
        refused = limited(tmp_path, argv, address_space=16 << 30)
        assert refused.code == 2 and f"{edit}: was written by crossgrad import but changed " \
            "since" in refused.stderr, refused.stderr
        assert (tmp_path / edit).read_bytes() == changed
        (tmp_path / edit).write_bytes(before)
    assert limited(tmp_path, argv, address_space=16 << 30).code == 0  # as written again


@pytest.mark.slow  # subprocesses: a few seconds
def test_an_import_s_file_changed_since_is_refused_naming_that_file(tmp_path):
    """A spec edited as its comment invites ([optimizer]) is the user's now, and says it was
    written by crossgrad import but changed; so are weights replaced, or with a byte added
    (the arrays unchanged: crossgrad cannot prove it wrote those bytes), named as the weights
    file. Each is kept byte for byte; the pair restored is replaced again."""
    _state_dict(tmp_path, lambda s: None)
    argv = ["import", "torch", "m.py:build", "--input-shape", "3", "--loss", "mse",
            "--out", "m.toml"]
    assert limited(tmp_path, argv, address_space=16 << 30).code == 0
    spec, weights = tmp_path / "m.toml", tmp_path / "m.params.npz"
    written = {f: f.read_bytes() for f in (spec, weights)}
    with np.load(weights) as held:
        other = {k: held[k] * 2 for k in held.files}
    changed_spec = ("m.toml: was written by crossgrad import but changed since (its sha256 is "
                    "no longer the one its last line records); move it or choose another --out")
    changed_weights = ("m.params.npz: was written by crossgrad import but changed since (its "
                       "sha256 is no longer the one m.toml's last line records); move it or "
                       "choose another --out")
    for file, edit, message in [
            (spec, lambda: spec.write_text(spec.read_text().replace("lr = 0.01", "lr = 0.1")),
             changed_spec),
            (weights, lambda: np.savez(weights, **other), changed_weights),
            (weights, lambda: weights.write_bytes(written[weights] + b"\0"), changed_weights)]:
        edit()
        changed = file.read_bytes()
        refused = limited(tmp_path, argv, address_space=16 << 30)
        assert refused.code == 2 and refused.stderr == f"crossgrad: {message}\n", refused.stderr
        assert file.read_bytes() == changed
        file.write_bytes(written[file])
    # a stamp from before the weights file's bytes were: it cannot vouch for them
    from crossgrad.harness.porting import EARLIER_STAMP, STAMP
    spec.write_text(spec.read_text().replace(STAMP, EARLIER_STAMP))
    refused = limited(tmp_path, argv, address_space=16 << 30)
    assert refused.code == 2 and refused.stderr.startswith(
        "crossgrad: m.params.npz: was written by an earlier crossgrad import"), refused.stderr
    assert weights.read_bytes() == written[weights]
    spec.write_bytes(written[spec])
    assert limited(tmp_path, argv, address_space=16 << 30).code == 0


# ---- `params = "x.npz"` in any spec ------------------------------------------------------------

SPEC = """
name = "hand"
input_shape = [3]
params = "hand.npz"

[data]
source = "random_regression"
outputs = 2

[[layers]]
type = "dense"
units = 4

[[layers]]
type = "batchnorm"

[[layers]]
type = "dense"
units = 2

[loss]
type = "mse"
"""


def _weights():
    rng = np.random.default_rng(0)
    return {"0.W": rng.normal(size=(3, 4)), "0.b": rng.normal(size=4),
            "1.gamma": np.ones(4), "1.beta": np.zeros(4), "2.W": rng.normal(size=(4, 2)),
            "2.b": np.zeros(2)}


def test_a_hand_written_spec_takes_its_weights_from_a_file(tmp_path):
    (tmp_path / "hand.toml").write_text(SPEC)
    weights = dict(_weights(), **{"1.running_var": np.full(4, 2.0)})
    np.savez(tmp_path / "hand.npz", **weights)
    spec = load_spec(tmp_path / "hand.toml")
    inputs = api.prepare([spec])[0][1]
    assert np.array_equal(inputs.params["0.W"], weights["0.W"])
    assert np.array_equal(inputs.state["1.running_var"], np.full(4, 2.0))
    assert np.array_equal(inputs.state["1.running_mean"], np.zeros(4))  # not in the file
    before = spec.hash
    weights["2.b"][0] = 1e-3
    np.savez(tmp_path / "hand.npz", **weights)
    assert load_spec(tmp_path / "hand.toml").hash != before  # the hash covers the values


@pytest.mark.parametrize("change, message", [
    (lambda w: w.pop("2.b"), "hand.npz: 2.b: missing: the spec's layers have this parameter"),
    (lambda w: w.__setitem__("3.W", np.ones(2)), "hand.npz: 3.W: extra"),
    (lambda w: w.__setitem__("0.W", np.ones((4, 3))), "hand.npz: 0.W: has shape (4, 3), the "
                                                      "spec's layer needs (3, 4)"),
    (lambda w: w["0.b"].__setitem__(1, np.nan), "hand.npz: 0.b: holds non-finite values"),
    (lambda w: w.__setitem__("0.b", np.array([None] * 4, object)), "0.b.npy: holds Python "
                                                                   "objects (pickled data)"),
    (lambda w: w.__setitem__("0.b", np.arange(4)), "hand.npz: 0.b: is int64"),
])
def test_a_params_file_that_does_not_fit_the_layers_is_refused(tmp_path, capsys, change, message):
    (tmp_path / "hand.toml").write_text(SPEC)
    weights = _weights()
    change(weights)
    np.savez(tmp_path / "hand.npz", **weights)
    code = main(["check", str(tmp_path / "hand.toml"), "--frameworks", "numpy",
                 "--json", str(tmp_path / "out.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out.json").exists()


def test_a_params_file_that_is_not_an_npz_is_refused(tmp_path, capsys):
    (tmp_path / "hand.toml").write_text(SPEC)
    np.save(tmp_path / "hand.npz", np.ones(3))
    os.replace(tmp_path / "hand.npz.npy", tmp_path / "hand.npz")
    assert main(["check", str(tmp_path / "hand.toml"), "--frameworks", "numpy"]) == 2
    assert "hand.npz: is a .npy file" in capsys.readouterr().err
    (tmp_path / "hand.npz").write_text("text")
    assert main(["check", str(tmp_path / "hand.toml"), "--frameworks", "numpy"]) == 2
    assert "hand.npz: not an .npz file" in capsys.readouterr().err


# ---- the original as a participant: selection, cache, a changed file ---------------------------

@pytest.fixture
def imported(tmp_path, capsys):
    _state_dict(tmp_path, lambda s: None)
    assert main(["import", "torch", f"{tmp_path}/m.py:build", "--input-shape", "3", "--loss",
                 "mse", "--out", str(tmp_path / "m.toml")]) == 0
    capsys.readouterr()
    return tmp_path / "m.toml"


def test_frameworks_names_the_original_like_a_framework(imported, capsys, executor):
    out = imported.parent / "c.json"
    assert main(["check", str(imported), "--frameworks", "numpy,original", "--json", str(out),
                 "--quiet"]) == 0
    document = json.loads(out.read_text())
    assert schema_errors("check", document) == []
    m = document["models"][0]
    assert list(m["frameworks"]) == ["numpy", "original"]
    assert {(c["a"], c["b"]) for c in m["comparisons"]} == {("numpy", "original")}
    assert "np~orig" in capsys.readouterr().out
    assert main(["check", str(imported), "--frameworks", "numpy,torch", "--json", str(out),
                 "--quiet"]) == 0
    assert "original" not in json.loads(out.read_text())["models"][0]["frameworks"]


def schema_errors(name, document):
    import jsonschema
    from crossgrad.harness import schemas
    validator = jsonschema.Draft202012Validator(json.loads(schemas.text(name)))
    return [e.message for e in validator.iter_errors(document)]


def test_asking_for_the_original_of_a_spec_never_imported_is_bad_input(capsys):
    assert main(["check", "--zoo", "xor_2_2_1", "--frameworks", "numpy,original"]) == 2
    assert "--frameworks: original: no spec here was imported" in capsys.readouterr().err


def test_a_model_file_changed_since_the_import_leaves_the_original_out(imported):
    model = imported.parent / "m.py"
    model.write_text(model.read_text() + "\n# edited\n")
    out = imported.parent / "c.json"
    assert main(["check", str(imported), "--json", str(out), "--quiet",
                 "--frameworks", "numpy,torch,original"]) == 1   # asked for by name: it fails
    frameworks = json.loads(out.read_text())["models"][0]["frameworks"]
    assert frameworks["numpy"]["status"] == frameworks["torch"]["status"] == "ok"
    assert frameworks["original"]["status"] == "failed"
    assert "m.py changed since the import" in frameworks["original"]["error"]
    spec = load_spec(imported)
    left_out = participants(spec, registry.PARTICIPANTS)  # not asked for by name: skipped
    assert [fw for fw, r in left_out.items() if r is None] == registry.ORDER
    assert left_out["original"]["status"] == "skipped"
    model.unlink()
    assert "m.py is gone" in participants(spec, registry.PARTICIPANTS)["original"]["error"]


def test_the_cache_keys_the_original_by_its_model_file(imported):
    spec = load_spec(imported)
    torch_key = job_key("check", spec, "torch", "2", False)
    original_key = job_key("check", spec, "torch", "2", False, participant="original")
    assert torch_key != original_key
    other = load_spec(imported)
    other.original = dict(other.original, sha256="0" * 64)
    assert job_key("check", other, "torch", "2", False, participant="original") != original_key
    assert job_key("check", other, "torch", "2", False) == torch_key  # the four: unchanged


# ---- Python --------------------------------------------------------------------------------------

def test_from_torch_returns_a_spec_and_writes_nothing(tmp_path, monkeypatch, executor):
    monkeypatch.chdir(tmp_path)
    net = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    spec = crossgrad.from_torch(net, (3,), loss="mse")
    assert spec.original is None and set(spec.initial) == {"0.W", "0.b", "2.W", "2.b"}
    assert np.array_equal(spec.initial["2.W"], net[2].weight.detach().numpy().T)
    assert crossgrad.check(spec, frameworks=["numpy", "torch"], executor=executor).passed
    (tmp_path / "m.py").write_text("from torch import nn\n\n\ndef build():\n    return "
                                   "nn.Sequential(nn.Linear(3, 2))\n")
    from_file = crossgrad.from_torch("m.py:build", (3,), loss="mse")
    assert from_file.original["factory"] == "build"
    result = crossgrad.check(from_file.with_overrides(dtype="float32"),
                             frameworks=["numpy", "original"], executor=executor)
    assert result.passed and result.models[0]["frameworks"]["original"]["status"] == "ok"
    assert sorted(os.listdir(tmp_path)) == ["m.py"]
    with pytest.raises(InputError, match="model.1: nn.Softmax has no crossgrad layer"):
        crossgrad.from_torch(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Softmax(-1)),
                             (3,), loss="mse")


def test_bad_input_in_python_is_crossgrad_s_public_input_error():
    """What from_torch raises is crossgrad.InputError, a public name, the command's line."""
    assert "InputError" in crossgrad.__all__ and crossgrad.InputError is InputError
    with pytest.raises(crossgrad.InputError) as caught:
        crossgrad.from_torch(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Softmax(-1)),
                             (3,), loss="mse")
    assert (caught.value.file, caught.value.field) == ("model", "model.1")
    assert str(caught.value) == "model: model.1: nn.Softmax has no crossgrad layer"
    with pytest.raises(crossgrad.InputError) as caught:  # the whole model: named once
        crossgrad.from_torch(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.PixelShuffle(2)),
                             (4,), loss="mse")
    assert caught.value.field is None
    assert str(caught.value).startswith("model: does not run on a batch of shape (3, 4) ")


@pytest.mark.parametrize("shape", [4, (-4,), ("4",), (4.0,), (), (True,), "4", (1,) * 9])
def test_an_input_shape_that_is_not_sizes_is_input_error(shape):
    """Named as the argument, before torch is given it (a TypeError or RuntimeError else)."""
    with pytest.raises(crossgrad.InputError, match=r"^input_shape: expected one example's "
                                                   r"shape, 1 to 8 positive integers"):
        crossgrad.from_torch(torch.nn.Sequential(torch.nn.Linear(4, 2)), shape, loss="mse")


@pytest.mark.parametrize("shape, need", [("1000000,1000000", "24.0 TB"),
                                         ("99999999999,99999999", "240.0 EB")])
def test_an_input_shape_too_big_to_trace_is_refused_before_allocating(tmp_path, capsys, shape,
                                                                     need):
    (tmp_path / "m.py").write_text("from torch import nn\n\n\ndef build():\n    return "
                                   "nn.Sequential(nn.Linear(4, 2))\n")
    code = main(["import", "torch", f"{tmp_path}/m.py:build", "--input-shape", shape, "--loss",
                 "mse", "--out", str(tmp_path / "o.toml")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"--input-shape: ({shape.replace(',', ', ')}) per example: the 3 examples the import " \
           f"runs the model on need {need}, over the limit of " in err, err
    assert sorted(os.listdir(tmp_path)) == ["m.py"]


# ---- the README's "Port a model", run as written ----------------------------------------------

@pytest.mark.slow
def test_the_readme_port_example(tmp_path):
    import shlex
    import subprocess
    import sys
    from test_readme_examples import ALL, as_pasted, blocks, write_files
    write_files(tmp_path, "my_model.py")
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    for name in ("import-my_model", "check-my_model"):
        command, *expected = blocks("output", name)[0].splitlines()
        argv = shlex.split(command.removeprefix("$ "))[1:]
        done = subprocess.run([sys.executable, "-m", "crossgrad.harness.cli", *argv], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr
        if ALL or name.startswith("import"):  # the check's table has all four frameworks
            assert as_pasted(done.stdout.splitlines(), expected), done.stdout
    written = (tmp_path / "my_model.toml").read_text().splitlines()
    (excerpt,) = blocks("output", "my_model.toml")
    assert [line for line in excerpt.splitlines() if line and line not in written] == []


def test_a_linked_weights_file_is_refused_and_kept(tmp_path):
    _state_dict(tmp_path, lambda s: None)
    (tmp_path / "mine.npz").write_bytes(b"mine")
    (tmp_path / "m.params.npz").symlink_to("mine.npz")
    refused = limited(tmp_path, ["import", "torch", "m.py:build", "--input-shape", "3",
                                 "--loss", "mse", "--out", "m.toml"], address_space=16 << 30)
    assert refused.code == 2 and "m.params.npz: is a link" in refused.stderr
    assert os.readlink(tmp_path / "m.params.npz") == "mine.npz"
    assert (tmp_path / "mine.npz").read_bytes() == b"mine" and not (tmp_path / "m.toml").exists()


@pytest.mark.slow  # workers started afresh: seconds each
def test_a_spec_that_cannot_be_written_leaves_the_previous_pair(tmp_path):
    """The spec fails to be written (a file size limit standing in for a full disk) after
    the weights were: neither replaces its predecessor, the message says so truly, and the
    next import replaces both."""
    import resource
    import subprocess
    import sys
    (tmp_path / "m.py").write_text("from torch import nn\n\n\ndef build():\n    return "
                                   "nn.Sequential(nn.Linear(4, 3), *[nn.Tanh() for _ in "
                                   "range(120)], nn.Linear(3, 3))\n")  # a long spec, few weights
    argv = ["import", "torch", "m.py:build", "--input-shape", "4", "--loss", "mse",
            "--out", "m.toml"]
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))

    def crossgrad(size_limit=resource.RLIM_INFINITY):
        def limit():
            resource.setrlimit(resource.RLIMIT_FSIZE, (size_limit, size_limit))
        return subprocess.run([sys.executable, "-m", "crossgrad.harness.cli", *argv],
                              cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300, preexec_fn=limit)

    assert crossgrad().returncode == 0
    written = {name: (tmp_path / name).read_bytes() for name in ("m.toml", "m.params.npz")}
    assert len(written["m.params.npz"]) < 4096 < len(written["m.toml"])
    failed = crossgrad(size_limit=4096)
    assert failed.returncode == 1 and failed.stderr.splitlines() == [
        "crossgrad: m.toml: could not be written (File too large); the previous output "
        "there, if any, is unchanged"], failed.stderr
    assert {name: (tmp_path / name).read_bytes() for name in written} == written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.params.npz", "m.py", "m.toml"]
    again = crossgrad()
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "m.params.npz").read_bytes() != written["m.params.npz"]


def test_an_imported_spec_beside_other_weights_is_refused(imported, capsys):
    """The spec records what its weights file held (params_sha256): the pair parted (the
    file replaced, or an import killed between its two renames) is one line naming the key,
    exit 2; the same weights saved again (other bytes, other member order) are the same."""
    spec_text = imported.read_text()
    assert re.search(r'^params_sha256 = "[0-9a-f]{64}"$', spec_text, re.M)
    weights_file = imported.parent / "m.params.npz"
    with np.load(weights_file) as held:
        weights = {k: held[k] for k in held.files}
    np.savez_compressed(weights_file, **dict(reversed(list(weights.items()))))
    assert load_spec(imported).initial is not None
    moved = dict(weights)
    name = sorted(moved)[0]
    moved[name] = moved[name] * 2 + 1  # in the file's own dtype (float32 here)
    np.savez(weights_file, **moved)
    assert main(["check", str(imported), "--frameworks", "numpy"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "m.toml: params_sha256: m.params.npz holds other " \
                                      "weights than this spec was written with" in err, err


@pytest.mark.parametrize("line, message", [
    ('params_sha256 = "abc"', "params_sha256: must be 64 lowercase hexadecimal digits"),
    (f'params_sha256 = "{"0" * 64}"', "params_sha256: hand.npz holds other weights"),
])
def test_a_hand_written_params_sha256_is_checked(tmp_path, capsys, line, message):
    (tmp_path / "hand.toml").write_text(SPEC.replace('params = "hand.npz"',
                                                     f'params = "hand.npz"\n{line}'))
    np.savez(tmp_path / "hand.npz", **_weights())
    assert main(["check", str(tmp_path / "hand.toml"), "--frameworks", "numpy"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    (tmp_path / "none.toml").write_text(SPEC.replace('params = "hand.npz"', line))
    assert main(["check", str(tmp_path / "none.toml"), "--frameworks", "numpy"]) == 2
    assert "params_sha256" in capsys.readouterr().err
