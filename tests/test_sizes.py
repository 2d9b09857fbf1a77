"""Memory estimated from the spec alone, before anything is allocated: the zoo passes with room
to spare, huge specs are refused within a second naming the biggest item and its field.

Every refusal runs in a child process with an address-space limit (tests/limited.py): a
regression that allocates instead of refusing dies there, not on the machine.
"""
import os
import tomllib

import pytest

from crossgrad.harness.spec import parse_spec, sizes, zoo_names, zoo_spec

from limited import NOTHING_BUILT, crossgrad

SMALL = """
name = "small"
input_shape = {input_shape}
[data]
source = "random_classification"
classes = 3
examples = {examples}
[[layers]]
type = "dense"
units = {units}
{extra}
[[layers]]
type = "dense"
units = 3
[loss]
type = "softmax_cross_entropy"
[train]
steps = {steps}
"""


def spec_file(tmp_path, input_shape="[4]", examples=16, units=5, steps=10, extra=""):
    path = tmp_path / "huge.toml"
    path.write_text(SMALL.format(input_shape=input_shape, examples=examples, units=units,
                                 steps=steps, extra=extra))
    return path


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", zoo_names())
def test_the_zoo_passes_with_room_to_spare(name, dtype):
    spec = zoo_spec(name).with_overrides(dtype=dtype)
    for training in (False, True):
        total = sum(item.bytes for item in sizes.estimate(spec, training))
        assert 0 < total < 100e6, (name, training, total)  # < 1% of a 16 GB machine's half


HUGE = {  # case -> (spec keys, command, the field blamed, words of the message)
    "units": (dict(units=100_000_000), "check", "layers[0].units",
              "100000000 units need 4.0 GB of weights"),
    "input_shape": (dict(input_shape="[100000, 100000]", extra='[[layers]]\ntype = "flatten"'),
                    "check", "input_shape", "of data"),
    "examples": (dict(examples=1_000_000_000), "check", "data.examples",
                 "1,000,000,000 examples"),
    "steps": (dict(steps=10_000_000), "train", "train.steps", "of loss curves"),
}


@pytest.mark.parametrize("case", sorted(HUGE))
def test_huge_specs_are_refused_within_a_second(tmp_path, case):
    keys, command, field, words = HUGE[case]
    done = crossgrad(tmp_path, [command, spec_file(tmp_path, **keys), "--frameworks", "numpy",
                                "--json", tmp_path / "out.json"], address_space=1 << 30)
    err = done.stderr.strip()
    assert done.code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"crossgrad: {tmp_path / 'huge.toml'}: {field}: "), err
    assert words in err and "over the limit" in err and "--max-memory" in err, err
    assert done.peak_rss < NOTHING_BUILT, done.peak_rss  # refused before any array is made
    assert not (tmp_path / "out.json").exists()


def test_check_of_ten_million_steps_with_dropout_costs_one_batch(tmp_path):
    """`check` needs step 0 only: the per-step arrays are drawn lazily, so a spec with
    train.steps = 1e7 and dropout checks in a small address space and in seconds."""
    path = spec_file(tmp_path, steps=10_000_000, extra='[[layers]]\ntype = "dropout"\nrate = 0.5')
    done = crossgrad(tmp_path, ["check", path, "--frameworks", "numpy", "--quiet"],
                     address_space=3 << 30)
    assert done.code == 0, done.stderr
    assert done.peak_rss < 400 << 20


def test_max_memory_raises_and_lowers_the_limit(tmp_path):
    path = spec_file(tmp_path, input_shape="[1000]", units=1000)  # ~0.1 GB estimated
    low = crossgrad(tmp_path, ["check", path, "--frameworks", "numpy", "--max-memory", "0.01"],
                    address_space=1 << 30)
    assert low.code == 2 and "set by --max-memory" in low.stderr, low.stderr
    high = crossgrad(tmp_path, ["check", path, "--frameworks", "numpy", "--max-memory", "10",
                                "--quiet"], address_space=3 << 30)
    assert high.code == 0, high.stderr


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", "inf"])
def test_max_memory_must_be_a_positive_number(tmp_path, value):
    done = crossgrad(tmp_path, ["check", "--zoo", "xor_2_2_1", "--max-memory", value],
                     address_space=1 << 30)
    assert done.code == 2 and "--max-memory" in done.stderr, done.stderr


def test_default_limit_is_half_the_machine():
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < sizes.default_limit() <= total // 2


def parsed(**keys):
    raw = {"name": "s", "input_shape": [8], "data": {"source": "random_classification",
                                                       "examples": 64, "batch_size": 16},
           "layers": [{"type": "dense", "units": 10}, {"type": "relu"},
                      {"type": "dense", "units": 3}],
           "loss": {"type": "softmax_cross_entropy"}, "optimizer": {"type": "adam"}}
    for key, value in keys.items():
        raw[key] = value
    return parse_spec(raw, "s.toml", "s")


def by_field(items):
    out = {}
    for item in items:
        out[item.field] = out.get(item.field, 0) + item.bytes
    return out


def test_the_estimate_follows_its_formula():
    """Spot checks of the README formula: weights, batch activations, data, curves."""
    spec = parsed()
    items = by_field(sizes.estimate(spec, training=True, frameworks=4))
    b = 8
    # dense 8 -> 10: 90 parameters, copies: 4 + adam's 2 + 4 results, and the float64 draw
    assert items["layers[0].units"] == 90 * ((4 + 2 + 4) * b + 8) + 16 * 10 * b * 2
    assert items["layers[1].type"] == 16 * 10 * b * 2  # relu: output and its gradient
    data = 64 * (8 * (8 + b + b) + 8 * (1 + 3)) + 8 * 3 * 8 + 64 * 8 + 16 * 8 * b
    assert items["data.examples"] + items.get("input_shape", 0) == data
    assert items["train.steps"] == 100 * 4 * (2 + 2) * sizes.CURVE_VALUE
    check = by_field(sizes.estimate(spec, training=False, frameworks=4))
    assert "train.steps" not in check
    assert check["layers[0].units"] == 90 * ((4 + 0 + 4) * b + 3 * 8 + 8) + 16 * 10 * b * 2


def test_float32_halves_what_the_dtype_holds():
    f64 = sum(i.bytes for i in sizes.estimate(parsed(), True))
    f32 = sum(i.bytes for i in sizes.estimate(parsed(dtype="float32"), True))
    assert f32 < f64


def test_attention_counts_its_scores():
    raw = {"name": "t", "input_shape": [512, 16], "data": {"source": "random_sequence",
                                                            "examples": 8},
           "layers": [{"type": "attention", "heads": 8, "key_dim": 4},
                      {"type": "sequence_mean"}, {"type": "dense", "units": 3}],
           "loss": {"type": "softmax_cross_entropy"}}
    items = by_field(sizes.estimate(parse_spec(raw, "t.toml", "t"), False))
    assert items["layers[0].key_dim"] > 8 * 8 * 512 * 512 * 8 * 2  # B x heads x T x T


PADDED = """
name = "padded"
input_shape = [8, 8, 1]
[data]
source = "digits"
batch_size = 32
[[layers]]
type = "conv2d"
filters = 8
kernel_size = [3, 3]
padding = {padding}
[[layers]]
type = "relu"
[[layers]]
type = "maxpool2d"
pool_size = [2, 2]
[[layers]]
type = "conv2d"
filters = 16
kernel_size = [3, 3]
padding = "same"
[[layers]]
type = "flatten"
[[layers]]
type = "dense"
units = 10
[loss]
type = "softmax_cross_entropy"
"""


def test_activations_blown_up_by_an_earlier_padding_name_that_padding(tmp_path):
    """The biggest item is layers[3]'s activations, but its size comes from layers[0].padding:
    the refusal once said `layers[3].filters`, a key that changes nothing much."""
    path = tmp_path / "huge.toml"
    path.write_text(PADDED.format(padding="[100000, 100000]"))
    done = crossgrad(tmp_path, ["check", path, "--frameworks", "numpy"], address_space=1 << 30)
    err = done.stderr.strip()
    assert done.code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"crossgrad: {path}: layers[0].padding: [100000, 100000] grows "
                          f"conv2d's input (8, 8, 1) to (200006, 200006, 8); then conv2d at "
                          f"layers[3] on (100003, 100003, 8) needs "), err
    assert "over the limit" in err and done.peak_rss < NOTHING_BUILT, done.peak_rss


CONV_STRIDE = """
name = "strided"
input_shape = [4, 5, 2]
[data]
source = "random_classification"
classes = 3
examples = 8
batch_size = 4
[[layers]]
type = "conv2d"
filters = 2
kernel_size = 1
strides = [{stride}, 1]
padding = [{pad}, 0]
[[layers]]
type = "flatten"
[[layers]]
type = "dense"
units = 3
[loss]
type = "softmax_cross_entropy"
"""


def test_a_padding_a_stride_steps_over_counts_its_padded_image(tmp_path):
    """padding 1e6 with a stride of 1e6: one output row, and a padded image of 2e6 rows that
    NumPy builds whole (pad_hw). The estimate counted the windows alone: accepted under 50 MB,
    then 0.7 GB; 2^31 of each, 1.25 TiB, ended in a MemoryError."""
    path = tmp_path / "huge.toml"
    path.write_text(CONV_STRIDE.format(stride=10 ** 6, pad=10 ** 6))
    done = crossgrad(tmp_path, ["check", path, "--frameworks", "numpy", "--max-memory", "0.05"],
                     address_space=1 << 30)
    err = done.stderr.strip()
    assert done.code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"crossgrad: {path}: layers[0].padding: [1000000, 0] grows "
                          f"conv2d's input (4, 5, 2) to a padded image of (2000004, 5, 2), "
                          f"which needs "), err
    assert done.peak_rss < NOTHING_BUILT, done.peak_rss


def test_a_stride_beyond_int32_is_bad_input(tmp_path):
    """TensorFlow takes strides as int32: 2^31 failed in its worker alone, blamed on it."""
    path = tmp_path / "huge.toml"
    path.write_text(CONV_STRIDE.format(stride=2 ** 31, pad=0))
    done = crossgrad(tmp_path, ["check", path, "--frameworks", "numpy"], address_space=1 << 30)
    assert done.code == 2 and done.stderr.strip() == (
        f"crossgrad: {path}: layers[0].strides[0]: must be at most 2,147,483,647, "
        f"got 2,147,483,648"), done.stderr


def test_who_grew_the_activations():
    """The estimate's own fields are unchanged; the blame names what grew the input: an
    earlier layer's key, the layer's own padding, or nothing beyond the layer's size key."""
    spec = parse_spec(tomllib.loads(PADDED.format(padding="[100, 100]")), "p.toml", "p")
    blame = {i.field: i.blame for i in sizes.estimate(spec, training=False) if "activations"
             in i.text}
    assert blame["layers[0].filters"][0] == "layers[0].padding"  # its own padding
    assert blame["layers[0].filters"][1].startswith("[100, 100] grows conv2d's input (8, 8, 1) "
                                                    "to (206, 206, 8), which needs ")
    assert blame["layers[1].type"][0] == "layers[0].padding"
    assert blame["layers[3].filters"][0] == "layers[0].padding"
    unpadded = parse_spec(tomllib.loads(PADDED.format(padding='"valid"')), "p.toml", "p")
    assert all(i.blame is None for i in sizes.estimate(unpadded, training=False)
               if i.field.startswith("layers[0]"))
    mlp = by_blame(sizes.estimate(parsed(), training=False))
    assert mlp["layers[1].type"] == "layers[0].units"  # a relu's size is the dense's before it
    assert mlp["layers[0].units"] is None


def by_blame(items):
    return {i.field: i.blame and i.blame[0] for i in items if "activations" in i.text}


@pytest.mark.parametrize("n, text", [(5e2, "0.5 kB"), (3.2e9, "3.2 GB"), (4.5e14, "450.0 TB"),
                                     (2.4e15, "2.4 PB"), (999.96e12, "1.0 PB"),
                                     (7e18, "7.0 EB"), (2.4e27, "2.4e+09 EB")])
def test_sizes_are_said_in_the_unit_that_fits(n, text):
    """A padding of 10^7 once needed "2400000000000000.0 TB"."""
    assert sizes.gb(n) == text


FLAT = """
name = "flat"
input_shape = {input_shape}
[data]
source = "random_classification"
classes = 3
examples = 4
[[layers]]
type = "flatten"
[[layers]]
type = "dense"
units = {first}
[[layers]]
type = "dense"
units = {second}
[[layers]]
type = "dense"
units = 3
[loss]
type = "softmax_cross_entropy"
"""


def weights_blamed(**keys):
    spec = parse_spec(tomllib.loads(FLAT.format(**keys)), "f.toml", "f")
    return {i.field: i.blame for i in sizes.estimate(spec, training=False) if "weights" in i.text}


def test_weights_big_from_their_input_name_what_set_the_input():
    """A whole image flattened into a dense layer of 1000 units needs 72 GB: the refusal once
    named `layers[1].units`, whose 1000 is not what to change."""
    blame = weights_blamed(input_shape="[3000, 3000, 1]", first=1000, second=3)
    field, text = blame["layers[1].units"]
    assert field == "input_shape"
    assert text.startswith("[3000, 3000, 1] gives dense at layers[1] 9,000,000 input features, "
                           "so its 1000 units need 72.0 GB of weights (9,000,001,000 parameters")
    wide = weights_blamed(input_shape="[4]", first=1_000_000, second=1000)
    assert wide["layers[2].units"][0] == "layers[1].units"  # the earlier dense's million units
    assert wide["layers[2].units"][1].startswith("1000000 gives dense at layers[2] 1,000,000 "
                                                 "input features, so its 1000 units need ")
    assert wide["layers[1].units"] is None  # 4 inputs: its own units are its size
