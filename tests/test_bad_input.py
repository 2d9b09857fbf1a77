"""Bad input: exit status 2, one line naming the file and the field, nothing written."""
import gzip
import json
import os
import tomllib

import numpy as np
import pytest

from crossgrad.harness.cli import main
from crossgrad.harness.spec.parse import load_spec

from cases import idx, mnist_spec_file
from limited import crossgrad

GOOD = """
name = "ok"
input_shape = [4]
[data]
source = "random_classification"
classes = 3
examples = 10
[[layers]]
type = "dense"
units = 3
[loss]
type = "softmax_cross_entropy"
"""


def variant(replace=None, append="", dtype=None):
    text = GOOD
    replace = dict(replace or {})
    if dtype:
        replace['name = "ok"\n'] = f'name = "ok"\ndtype = "{dtype}"\n'
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text + append


CASES = {
    "toml_syntax": ("name = \n", "line 1"),
    "empty_file": ("   \n", "empty"),
    "missing_input_shape": (variant({"input_shape = [4]\n": ""}), "input_shape"),
    "missing_layers": (variant({'[[layers]]\ntype = "dense"\nunits = 3\n': ""}), "layers"),
    "missing_units": (variant({"units = 3\n": ""}), "layers[0].units"),
    "missing_loss": (variant({'[loss]\ntype = "softmax_cross_entropy"\n': ""}), "loss"),
    "unknown_layer": (variant({'type = "dense"': 'type = "dense2"'}), "layers[0].type"),
    "unknown_loss": (variant({'"softmax_cross_entropy"': '"hinge"'}), "loss.type"),
    "unknown_optimizer": (variant(append='[optimizer]\ntype = "lion"\n'), "optimizer.type"),
    "unknown_init": (variant({"units = 3\n": 'units = 3\ninit = "xavier"\n'}), "layers[0].init.type"),
    "unknown_init_key": (variant({"units = 3\n": 'units = 3\ninit = {type = "normal", sdev = 1}\n'}),
                         "layers[0].init.sdev"),
    "orthogonal_bias": (variant({"units = 3\n": 'units = 3\nbias_init = "orthogonal"\n'}),
                        "layers[0].bias_init.type"),
    # finite bounds whose difference is not: NumPy's draw raised OverflowError, a traceback
    "uniform_range_overflows": (variant({"units = 3\n": 'units = 3\ninit = {type = "uniform", '
                                         'low = -1e308, high = 1e308}\n'}),
                                "layers[0].init.high: minus low"),
    # was "unknown key", as if bias_init were misspelt
    "bias_init_without_bias": (variant({"units = 3\n": 'units = 3\nuse_bias = false\n'
                                        'bias_init = "zeros"\n'}),
                               "layers[0].bias_init: is given with use_bias = false"),
    # finite in float64, inf in the spec's float32: every framework started from inf and the
    # run ended NOT FINITE (exit 1), blamed on the math
    "init_beyond_float32": (variant({'name = "ok"\n': 'name = "ok"\ndtype = "float32"\n',
                                     "units = 3\n": 'units = 3\ninit = {type = "constant", '
                                     'value = -1e300}\n'}),
                            "layers[0]: the initial 0.W (constant) reaches 1e+300, beyond "
                            "float32's largest finite value (3.4e+38)"),
    # 65520 rounds to inf in float16, whose largest value is 65504: the two printed apart
    "init_just_beyond_float16": (variant({'name = "ok"\n': 'name = "ok"\ndtype = "float16"\n',
                                          "units = 3\n": 'units = 3\ninit = {type = "constant", '
                                          'value = 65520.0}\n'}),
                                 "layers[0]: the initial 0.W (constant) reaches 6.552e+04, beyond "
                                 "float16's largest finite value (6.55e+04)"),
    "bias_init_beyond_float16_in_a_residual_block": (
        variant({'name = "ok"\n': 'name = "ok"\ndtype = "float16"\n',
                 '[[layers]]\ntype = "dense"': '[[layers]]\ntype = "residual"\nlayers = '
                 '[{type = "dense", units = 4, bias_init = {type = "normal", std = 1e6}}]\n'
                 '[[layers]]\ntype = "dense"'}),
        "layers[0].layers[0]: the initial 0.0.b (normal) reaches"),
    "unknown_data_source": (variant({'"random_classification"': '"cifar"'}), "data.source"),
    "unknown_key": (variant({"units = 3\n": "units = 3\nunit = 3\n"}), "layers[0].unit"),
    "unknown_top_key": (variant(append='optimiser = "sgd"\n'), "optimiser"),
    "units_is_string": (variant({"units = 3": 'units = "3"'}), "layers[0].units"),
    "units_is_float": (variant({"units = 3": "units = 3.5"}), "layers[0].units"),
    "units_zero": (variant({"units = 3": "units = 0"}), "layers[0].units"),
    "units_negative": (variant({"units = 3": "units = -3"}), "layers[0].units"),
    "examples_zero": (variant({"examples = 10": "examples = 0"}), "data.examples"),
    # plain SGD: torch keeps no velocity for it (lockstep had no optimizer state to compare)
    "momentum_without_momentum": (variant(append='[optimizer]\ntype = "momentum"\n'
                                                 'momentum = 0\n'), "optimizer.momentum"),
    "examples_beyond_digits": (variant({'"random_classification"\nclasses = 3\nexamples = 10':
                                        '"digits"\nexamples = 1798', "[4]": "[64]"}),
                               "data.examples"),
    "batch_too_big": (variant({"examples = 10": "examples = 10\nbatch_size = 11"}), "data.batch_size"),
    "lr_nan": (variant(append='[optimizer]\ntype = "sgd"\nlr = nan\n'), "optimizer.lr"),
    "lr_negative": (variant(append='[optimizer]\ntype = "adam"\nlr = -0.1\n'), "optimizer.lr"),
    "lr_string": (variant(append='[optimizer]\ntype = "adam"\nlr = "fast"\n'), "optimizer.lr"),
    "beta_one": (variant(append='[optimizer]\ntype = "adam"\nbeta2 = 1.0\n'), "optimizer.beta2"),
    # positive in the spec, not in the dtype the frameworks multiply by it in
    "eps_rounding_to_zero_in_float32": (
        variant(dtype="float32", append='[optimizer]\ntype = "adam"\neps = 1e-50\n'),
        "optimizer.eps: 1e-50 rounds to 0 in float32 (its smallest positive value is 1.4e-45)"),
    # TensorFlow and XLA flush it to 0, NumPy and PyTorch do not: the frameworks would part
    "lr_subnormal_in_float32": (
        variant(dtype="float32", append='[optimizer]\ntype = "sgd"\nlr = 1e-40\n'),
        "optimizer.lr: 1e-40 is subnormal in float32 (below 1.18e-38): TensorFlow and JAX"),
    "l2_subnormal_in_float64": (variant(append="[train]\nl2 = 1e-310\n"),
                                "train.l2: 1e-310 is subnormal in float64"),
    "clip_norm_beyond_float32": (
        variant(dtype="float32", append="[train]\nclip_norm = 1e39\n"),
        "train.clip_norm: 1e+39 is beyond float32's largest finite value (3.4e+38)"),
    # finite in float64, but nearer inf than float32's largest value, to which it rounds
    "clip_norm_rounding_to_inf_in_float32": (
        variant(dtype="float32", append="[train]\nclip_norm = 3.40282357e38\n"),
        "train.clip_norm: 3.402824e+38 is beyond float32's largest finite value (3.402823e+38)"),
    "layernorm_eps_in_a_residual_block": (
        variant({'[[layers]]\ntype = "dense"': '[[layers]]\ntype = "residual"\nlayers = '
                 '[{type = "layernorm", eps = 1e-46}]\n[[layers]]\ntype = "dense"'}, dtype="float32"),
        "layers[0].layers[0].eps: 1e-46 rounds to 0 in float32"),
    "leaky_relu_alpha_subnormal": (
        variant({'[[layers]]\ntype = "dense"': '[[layers]]\ntype = "leaky_relu"\n'
                 'alpha = 1e-39\n[[layers]]\ntype = "dense"'}, dtype="float32"),
        "layers[0].alpha: 1e-39 is subnormal in float32"),
    "batchnorm_momentum_rounding_to_zero": (
        variant({'[[layers]]\ntype = "dense"': '[[layers]]\ntype = "batchnorm"\n'
                 'momentum = 1e-300\n[[layers]]\ntype = "dense"'}, dtype="float32"),
        "layers[0].momentum: 1e-300 rounds to 0 in float32"),
    "steps_zero": (variant(append="[train]\nsteps = 0\n"), "train.steps"),
    "l2_negative": (variant(append="[train]\nl2 = -1e-3\n"), "train.l2"),
    "dropout_rate_one": (variant({'[[layers]]\ntype = "dense"': '[[layers]]\ntype = "dropout"\nrate = 1.0'
                                  '\n[[layers]]\ntype = "dense"'}), "layers[0].rate"),
    "dropout_rate_negative": (variant({'[[layers]]\ntype = "dense"': '[[layers]]\ntype = "dropout"\n'
                                       'rate = -0.1\n[[layers]]\ntype = "dense"'}), "layers[0].rate"),
    "seed_negative": (variant({'name = "ok"': 'name = "ok"\nseed = -1'}), "seed"),
    "dtype_unknown": (variant({'name = "ok"': 'name = "ok"\ndtype = "float8"'}), "dtype"),
    "input_shape_empty": (variant({"input_shape = [4]": "input_shape = []"}), "input_shape"),
    "input_shape_zero": (variant({"input_shape = [4]": "input_shape = [0]"}), "input_shape[0]"),
    "conv_after_flatten": (variant({"input_shape = [4]": "input_shape = [2, 2, 1]",
                                    '[[layers]]\ntype = "dense"': '[[layers]]\ntype = "flatten"\n'
                                    '[[layers]]\ntype = "conv2d"\nfilters = 2\nkernel_size = 1\n'
                                    '[[layers]]\ntype = "flatten"\n[[layers]]\ntype = "dense"'}),
                           "layers[1].type"),
    "kernel_too_big": (variant({"input_shape = [4]": "input_shape = [2, 2, 1]",
                                '[[layers]]\ntype = "dense"': '[[layers]]\ntype = "conv2d"\nfilters = 2\n'
                                'kernel_size = 3\n[[layers]]\ntype = "flatten"\n[[layers]]\ntype = "dense"'}),
                       "layers[0].kernel_size"),
    "residual_changes_shape": (variant({'[[layers]]\ntype = "dense"': '[[layers]]\ntype = "residual"\n'
                                        'layers = [{type = "dense", units = 5}]\n[[layers]]\ntype = "dense"'}),
                               "layers[0].layers"),
    "outputs_do_not_match_classes": (variant({"units = 3": "units = 4"}), "loss.type"),
    "regression_with_cross_entropy": (variant({'"random_classification"\nclasses = 3':
                                               '"random_regression"\noutputs = 3'}), "loss.type"),
    "reduction_unknown": (variant({'type = "softmax_cross_entropy"':
                                   'type = "softmax_cross_entropy"\nreduction = "avg"'}), "loss.reduction"),
    "padding_unknown": (variant({"input_shape = [4]": "input_shape = [2, 2, 1]",
                                 '[[layers]]\ntype = "dense"': '[[layers]]\ntype = "conv2d"\nfilters = 2\n'
                                 'kernel_size = 1\npadding = "full"\n[[layers]]\ntype = "flatten"\n'
                                 '[[layers]]\ntype = "dense"'}), "layers[0].padding"),
    "pool_padding_alone": (variant({"input_shape = [4]": "input_shape = [3, 3, 1]",
                                    '[[layers]]\ntype = "dense"': '[[layers]]\ntype = "maxpool2d"\n'
                                    'padding = [2, 2]\n[[layers]]\ntype = "flatten"\n'
                                    '[[layers]]\ntype = "dense"'}), "layers[0].padding"),
    "no_parameters": (variant({'type = "dense"\nunits = 3': 'type = "tanh"',
                               "input_shape = [4]": "input_shape = [3]"}), "layers"),
    "nesterov_without_momentum": (variant(append='[optimizer]\ntype = "nesterov"\nmomentum = 0.0\n'),
                                  "optimizer.momentum"),
    "embedding_not_first": (variant({"input_shape = [4]": "input_shape = [4]",
                                     '[[layers]]\ntype = "dense"': '[[layers]]\ntype = "embedding"\n'
                                     'vocab = 3\ndim = 2\n[[layers]]\ntype = "dense"'}), "layers[0].type"),
    "bad_name": (variant({'name = "ok"': 'name = "../escape"'}), "name"),
    "layers_not_a_list": (variant(append="").replace("[[layers]]", "[layers]"), "layers"),
    # the spec's limits (harness/spec/limits.py)
    "name_newline": (variant({'name = "ok"': 'name = "ok\\n"'}), "name"),
    "name_control": (variant({'name = "ok"': 'name = "o\\u0007k"'}), "name"),
    "name_101_characters": (variant({'name = "ok"': f'name = "{"n" * 101}"'}), "name"),
    "residual_17_deep": (variant({'[[layers]]\ntype = "dense"': "[[layers]]\n" + "type = \"residual\"\n"
                                  "layers = [" + '{type = "residual", layers = [' * 16 + '{type = "relu"}'
                                  + "]}" * 16 + "]\n[[layers]]\ntype = \"dense\""}),
                         "layers[0]" + ".layers[0]" * 16 + ".type"),
    "layers_257": (variant({'[[layers]]\ntype = "dense"': '[[layers]]\ntype = "relu"\n' * 256
                            + '[[layers]]\ntype = "dense"'}), "layers"),
    "input_shape_9_axes": (variant({"input_shape = [4]": "input_shape = [1, 1, 1, 1, 1, 1, 1, 1, 4]"}),
                           "input_shape"),
    # decoding: a ValueError from inside tomllib once, and a syntax error without its place
    "integer_of_5001_digits": (variant({"units = 3": "units = 1" + "0" * 5000}),
                               "layers[0].units: is an integer of 5,001 digits (at line"),
    "integer_of_5001_digits_beside_digits_in_a_string": (
        variant({'name = "ok"': f'name = "ok"\ndescription = "{"7" * 5000}"',
                 "units = 3": "units = -1" + "0" * 5000}), "layers[0].units"),
    "toml_unclosed_at_the_end": ('name = "x"\ninput_shape = [2\n',
                                 "line 3, column 1 (the end of the file): TOML syntax error"),
}


def run_cli(tmp_path, argv):
    outputs = [tmp_path / "out.json", tmp_path / "save", tmp_path / "report"]
    code = main(argv)
    return code, [p for p in outputs if p.exists()]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_spec(tmp_path, capsys, case):
    text, field = CASES[case]
    path = tmp_path / "bad.toml"
    path.write_text(text)
    code, written = run_cli(tmp_path, ["check", str(path), "--frameworks", "numpy", "--json",
                                       str(tmp_path / "out.json"), "--save", str(tmp_path / "save")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert written == []
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"crossgrad: {path}: "), err
    assert field in err[len(f"crossgrad: {path}: "):], err  # tmp_path holds the case's name
    assert "Traceback" not in err


@pytest.mark.parametrize("dtype, section, value", [
    ("float32", 'optimizer]\ntype = "adam"\neps', 2.0 ** -126),   # float32's smallest normal
    ("float32", "train]\nl1", 0.0),                                # zero: no penalty, as meant
    ("float64", 'optimizer]\ntype = "adam"\neps', 1e-300),         # normal in float64
    ("float32", "train]\nclip_norm", 3.4028235e38),   # rounds to float32's largest value
    ("float32", "train]\nl2", 1.17549435e-38)])      # rounds up to its smallest normal
def test_a_hyperparameter_the_dtype_holds_is_taken(tmp_path, dtype, section, value):
    path = tmp_path / "ok.toml"
    path.write_text(variant(append=f"[{section} = {value!r}\n", dtype=dtype))
    spec = load_spec(path)
    key = section.rsplit("\n", 1)[-1]
    table = spec.optimizer if section.startswith("optimizer") else spec.train
    assert table[key] == value


def test_a_dtype_given_on_the_command_line_checks_the_hyperparameters_again(tmp_path, capsys):
    """The spec's float64 holds lr = 1e-40; --dtype float32 does not (the spec is read again)."""
    path = tmp_path / "ok.toml"
    path.write_text(variant(append='[optimizer]\ntype = "sgd"\nlr = 1e-40\n'))
    assert load_spec(path).optimizer["lr"] == 1e-40
    code, written = run_cli(tmp_path, ["check", str(path), "--dtype", "float32", "--frameworks",
                                       "numpy", "--json", str(tmp_path / "out.json")])
    err = capsys.readouterr().err.strip()
    assert (code, written) == (2, [])
    assert err == (f"crossgrad: {path}: optimizer.lr: 1e-40 is subnormal in float32 (below "
                   f"1.18e-38): TensorFlow and JAX flush it to 0, NumPy and PyTorch compute with it")


def test_json_spec_with_the_same_keys(tmp_path):
    import tomllib
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(tomllib.loads(GOOD)))
    assert main(["check", str(path), "--frameworks", "numpy", "--quiet"]) == 0


def test_json_syntax_error(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text('{"name": "x",\n "input_shape": [4,]}')
    assert main(["check", str(path), "--frameworks", "numpy"]) == 2
    err = capsys.readouterr().err
    assert "bad.json: line 2" in err and len(err.strip().splitlines()) == 1


def json_spec(tmp_path, text):
    path = tmp_path / "spec.json"
    path.write_text(text)
    return path


def refused_with(capsys, path, words):
    """check of `path`: exit 2, one line starting with the file, holding `words`."""
    assert main(["check", str(path), "--frameworks", "numpy", "--quiet"]) == 2
    err = one_line(capsys, f"crossgrad: {path}: ")
    assert err.startswith(f"crossgrad: {path}: {words}"), err


@pytest.mark.parametrize("where, field", [("top", "seed"), ("nested", "optimizer.lr")])
def test_a_json_key_given_twice_is_refused(tmp_path, capsys, where, field):
    """JSON keeps the last of two equal keys silently; TOML refuses them: so does crossgrad."""
    text = json.dumps(dict(tomllib.loads(GOOD), seed=0, optimizer={"type": "sgd", "lr": 0.1}))
    twice = {"top": ('"seed": 0', '"seed": 0, "seed": 5'),
             "nested": ('"lr": 0.1', '"lr": 0.1, "lr": 0.5')}[where]
    refused_with(capsys, json_spec(tmp_path, text.replace(*twice)),
                 f"{field}: is given twice in one object")


def test_a_json_integer_longer_than_python_reads(tmp_path, capsys):
    text = json.dumps(tomllib.loads(GOOD)).replace('"units": 3', '"units": 1' + "0" * 5000)
    refused_with(capsys, json_spec(tmp_path, text),
                 "layers[0].units: is an integer of 5,001 digits; Python reads integers of "
                 "at most 4,300")


def test_a_json_null_is_named_in_json_s_words(tmp_path, capsys):
    refused_with(capsys, json_spec(tmp_path, "null"), "must be a table, got null")


@pytest.mark.parametrize("key, field", [("seed", "seed"), ("dtype", "dtype"),
                                        ("optimizer", "optimizer"), ("units", "layers[0].units"),
                                        ("input_shape", "input_shape[0]")])
def test_a_json_null_value_is_refused_by_its_field(tmp_path, capsys, key, field):
    """Once a traceback (seed, dtype, units) or silently the default (optimizer)."""
    raw = tomllib.loads(GOOD)
    if key == "units":
        raw["layers"][0]["units"] = None
    elif key == "input_shape":
        raw["input_shape"] = [None]
    else:
        raw[key] = None
    refused_with(capsys, json_spec(tmp_path, json.dumps(raw)), f"{field}: is null")


def test_a_spec_that_is_not_utf8_is_refused_by_its_byte(tmp_path, capsys):
    """Decoded with errors="replace" once: the Latin-1 byte became U+FFFD and ran."""
    path = tmp_path / "latin1.toml"
    path.write_bytes(GOOD.replace('name = "ok"', 'name = "ok"\ndescription = "caf\xe9"')
                     .encode("latin-1"))
    offset = path.read_bytes().index(b"\xe9")
    refused_with(capsys, path, f"byte {offset} (line 3): not UTF-8")


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_a_byte_order_mark_in_front_of_a_spec_is_dropped(tmp_path, suffix):
    """Notepad saves UTF-8 with a BOM: TOML read it as "Invalid statement", JSON refused it."""
    text = GOOD if suffix == ".toml" else json.dumps(tomllib.loads(GOOD))
    plain, marked = tmp_path / f"plain{suffix}", tmp_path / f"marked{suffix}"
    plain.write_text(text, encoding="utf-8")
    marked.write_text(text, encoding="utf-8-sig")
    assert marked.read_bytes().startswith(b"\xef\xbb\xbf")
    assert load_spec(marked).for_impls() == load_spec(plain).for_impls()


def test_missing_spec_file(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml" in capsys.readouterr().err


def one_line(capsys, *words):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert all(w in err for w in words), err
    return err


def test_a_folder_given_as_the_spec(tmp_path, capsys):
    (tmp_path / "specs").mkdir()
    assert main(["check", str(tmp_path / "specs")]) == 2
    one_line(capsys, "specs", "is a folder, expected a spec file")


def test_a_spec_without_read_permission(tmp_path, capsys, monkeypatch):
    """Root reads anything, so the refusal is also simulated at os.open."""
    path = tmp_path / "secret.toml"
    path.write_text(GOOD)
    path.chmod(0)
    if os.geteuid() != 0:
        assert main(["check", str(path), "--frameworks", "numpy"]) == 2
        one_line(capsys, "secret.toml", "permission denied")
    real_open = os.open

    def denied(name, *args, **kwargs):
        if str(name) == str(path):
            raise PermissionError(13, "Permission denied", str(name))
        return real_open(name, *args, **kwargs)
    monkeypatch.setattr(os, "open", denied)
    assert main(["check", str(path), "--frameworks", "numpy"]) == 2
    one_line(capsys, "secret.toml", "permission denied")


def test_a_fifo_given_as_the_spec(tmp_path):
    os.mkfifo(tmp_path / "spec.toml")
    done = crossgrad(tmp_path, ["check", tmp_path / "spec.toml"], address_space=1 << 30,
                     timeout=60)  # a regression blocks reading the FIFO: the timeout fails it
    assert done.code == 2 and "FIFO" in done.stderr, done.stderr


def test_a_symlink_loop_given_as_the_spec(tmp_path, capsys):
    (tmp_path / "a.toml").symlink_to(tmp_path / "b.toml")
    (tmp_path / "b.toml").symlink_to(tmp_path / "a.toml")
    assert main(["check", str(tmp_path / "a.toml")]) == 2
    one_line(capsys, "a.toml", "symlink loop")


def test_a_spec_larger_than_a_mebibyte(tmp_path, capsys):
    path = tmp_path / "big.toml"
    path.write_text(GOOD + "#" * (1 << 20))
    assert main(["check", str(path)]) == 2
    one_line(capsys, "big.toml", "at most")


@pytest.mark.parametrize("form", ["json", "toml"])
def test_nesting_thousands_deep_is_one_line(tmp_path, capsys, form):
    """Deep enough for the TOML/JSON decoders' recursion: still one line naming the file."""
    if form == "json":
        text = ('{"name": "n", "input_shape": [2], "data": {"source": "xor"}, '
                '"loss": {"type": "mse"}, "layers": [' + '{"type": "residual", "layers": [' * 3000
                + '{"type": "relu"}' + "]}" * 3000 + "]}")
    else:
        text = ('name = "n"\ninput_shape = [2]\nlayers = [' + '{type = "residual", layers = [' * 1000
                + '{type = "relu"}' + "]}" * 1000 + "]\n")
    path = tmp_path / f"deep.{form}"
    path.write_text(text)
    assert main(["check", str(path)]) == 2
    one_line(capsys, f"deep.{form}", "nest deeper than 64")


def test_steps_over_a_billion(tmp_path):
    """In a child with little memory: drawing 1e9 steps' batches up front, as crossgrad once
    did, must fail there and not on the machine."""
    path = tmp_path / "bad.toml"
    path.write_text(variant(append="[train]\nsteps = 1000000001\n"))
    done = crossgrad(tmp_path, ["check", path, "--frameworks", "numpy"], address_space=1 << 30,
                     timeout=60)
    assert done.code == 2 and "train.steps: must be at most 1,000,000,000" in done.stderr, \
        done.stderr


def test_a_name_from_a_long_file_name(tmp_path, capsys):
    path = tmp_path / ("n" * 150 + ".toml")
    path.write_text(GOOD.replace('name = "ok"\n', ""))
    assert main(["check", str(path), "--frameworks", "numpy"]) == 2
    one_line(capsys, "name: is 150 characters long, at most 100", "from the file name")


def test_unknown_zoo_name(capsys):
    assert main(["check", "--zoo", "resnet50"]) == 2
    assert "resnet50" in capsys.readouterr().err


def test_unknown_framework(capsys):
    assert main(["check", "--zoo", "xor_2_2_1", "--frameworks", "numpy,mxnet"]) == 2
    assert "mxnet" in capsys.readouterr().err


def test_bad_cli_value_is_one_line(capsys):
    assert pytest.raises(SystemExit, main, ["check", "--dtype", "float8"]).value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def exit_status(argv):
    """main's return value, or the status of the SystemExit its option parser raised."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


def test_negative_seed_on_the_command_line(capsys):
    assert exit_status(["check", "--zoo", "xor_2_2_1", "--seed", "-3"]) == 2
    assert "--seed" in capsys.readouterr().err


def test_output_path_that_is_a_file(tmp_path, capsys):
    (tmp_path / "report").write_text("not a folder")
    assert main(["train", "--zoo", "xor_2_2_1", "--frameworks", "numpy",
                 "--out", str(tmp_path / "report")]) == 2
    assert "report" in capsys.readouterr().err


# ---- MNIST files ------------------------------------------------------------------------------

def mnist_spec(tmp_path, path):
    return mnist_spec_file(tmp_path, path, batch_size=4)


@pytest.fixture
def digits28():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (6, 28, 28)), rng.integers(0, 10, 6)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx_files(tmp_path, digits28, compress):
    images, labels = digits28
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name, data in (("train-images-idx3-ubyte", idx(images, 3)),
                       ("train-labels-idx1-ubyte", idx(labels, 1))):
        if compress:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    from crossgrad.harness.spec.data import load_mnist
    x, y = load_mnist(str(folder), None)
    assert x.shape == (6, 28, 28) and np.allclose(x * 255, images) and (y == labels).all()
    assert main(["check", str(mnist_spec(tmp_path, "mnist")), "--frameworks", "numpy", "--quiet"]) == 0


def test_mnist_npz(tmp_path, digits28):
    images, labels = digits28
    np.savez(tmp_path / "mnist.npz", x_train=images.astype(np.uint8), y_train=labels)
    assert main(["check", str(mnist_spec(tmp_path, "mnist.npz")), "--frameworks", "numpy",
                 "--quiet"]) == 0


@pytest.mark.parametrize("examples", [1, 2])
def test_batchnorm_on_an_mnist_file_of_one_example(tmp_path, capsys, examples):
    """Without batch_size or examples the batch is the whole file: one example is a batch of
    one, which BatchNorm cannot normalise (each value is its own mean). Known from the file's
    headers as the spec is read: exit 2 naming the layer, nothing written."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "one.npz", x=rng.integers(0, 256, (examples, 784)).astype(np.uint8),
             y=np.arange(examples) % 10)
    spec = tmp_path / "bn.toml"
    spec.write_text('name = "bn"\ninput_shape = [784]\n[data]\nsource = "mnist"\n'
                    'path = "one.npz"\n[[layers]]\ntype = "dense"\nunits = 4\n[[layers]]\n'
                    'type = "batchnorm"\n[[layers]]\ntype = "dense"\nunits = 10\n'
                    '[loss]\ntype = "softmax_cross_entropy"\n')
    out = tmp_path / "out"
    status = main(["check", str(spec), "--frameworks", "numpy", "--quiet", "--save", str(out)])
    if examples == 1:
        err = capsys.readouterr().err.strip()
        assert status == 2 and len(err.splitlines()) == 1 and "layers[1].type" in err
        assert "batch of one" in err and not out.exists()
    else:
        assert status == 0


@pytest.mark.parametrize("corruption", ["magic", "truncated", "gzip", "missing", "labels_count"])
def test_corrupt_mnist(tmp_path, capsys, digits28, corruption):
    images, labels = digits28
    folder = tmp_path / "mnist"
    folder.mkdir()
    image_bytes, label_bytes = idx(images, 3), idx(labels, 1)
    if corruption == "magic":
        image_bytes = b"\x00\x00\x09\x03" + image_bytes[4:]
    elif corruption == "truncated":
        image_bytes = image_bytes[:-100]
    elif corruption == "labels_count":
        label_bytes = idx(labels[:5], 1)
    (folder / "train-labels-idx1-ubyte").write_bytes(label_bytes)
    if corruption == "gzip":
        (folder / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    elif corruption != "missing":
        (folder / "train-images-idx3-ubyte").write_bytes(image_bytes)
    code = main(["check", str(mnist_spec(tmp_path, "mnist")), "--frameworks", "numpy",
                 "--json", str(tmp_path / "out.json")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and not (tmp_path / "out.json").exists()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert ("train-images" in err) or ("mnist.toml" in err), err


@pytest.mark.parametrize("how", ["spec", "--dtype"])
def test_a_params_file_value_beyond_the_dtype_is_refused(tmp_path, capsys, how):
    """A weight of 1e300 is a float64 start, but inf in float32: bad input naming the spec's
    `params`, whether the spec says float32 or --dtype does."""
    np.savez(tmp_path / "w.npz", **{"0.W": np.full((4, 3), 1e300), "0.b": np.zeros(3)})
    dtype = 'dtype = "float32"\n' if how == "spec" else ""
    path = tmp_path / "big.toml"
    path.write_text(variant({'name = "ok"\n': f'name = "ok"\n{dtype}params = "w.npz"\n'}))
    argv = ["check", str(path), "--frameworks", "numpy", "--json", str(tmp_path / "out.json")]
    code, written = run_cli(tmp_path, argv + (["--dtype", "float32"] if how == "--dtype" else []))
    err = capsys.readouterr().err
    assert (code, written) == (2, [])
    assert err == (f"crossgrad: {path}: params: 0.W reaches 1e+300, beyond float32's largest "
                   f"finite value (3.4e+38)\n")
