"""MNIST files and `data.examples`: the first `examples` images are the ones loaded, with the
numbers of converting the whole file and slicing it, while memory follows `examples` (as the
estimate does) and not the file; a bad labels file is named as such, not its images.

The memory cases run the loader in a child process with an address-space limit: a
regression that converts every image dies there, not on the machine. Files live under
tmp_path.
"""
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from crossgrad.harness.errors import InputError
from crossgrad.harness.spec import parse_spec, sizes
from crossgrad.harness.spec.data import load_data

from cases import idx

IMAGES, LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
FORMATS = ["npz", "idx", "idx.gz"]


def mnist_files(tmp_path, form, images, labels):
    """`images` and `labels` written as an .npz or an IDX folder (gzipped or not); -> its path."""
    if form == "npz":
        np.savez(tmp_path / "d.npz", x=images, y=labels)
        return tmp_path / "d.npz"
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name, data in ((IMAGES, idx(images, 3)), (LABELS, idx(labels, 1))):
        if form == "idx.gz":
            (folder / (name + ".gz")).write_bytes(gzip.compress(data, compresslevel=1))
        else:
            (folder / name).write_bytes(data)
    return folder


def digits(n, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, n).astype(np.uint8))


def mnist_data(path, examples):
    return {"source": "mnist", "path": str(path), "examples": examples}


# ---- the same examples, the same bits --------------------------------------------------------

@pytest.mark.parametrize("input_shape", [[784], [28, 28, 1]])
@pytest.mark.parametrize("examples", [1, 37, 1999, 2000, None])
@pytest.mark.parametrize("form", FORMATS)
def test_examples_are_the_first_of_the_whole_file_bit_for_bit(tmp_path, form, examples,
                                                               input_shape):
    images, labels = digits(2000)
    path = mnist_files(tmp_path, form, images, labels)
    # what loading did when it converted every image and then took `examples` of them
    whole_x, whole_y = images.astype(np.float64) / 255.0, labels.astype(np.int64)
    expected_x = whole_x[:examples].reshape(-1, *input_shape)
    data = load_data(mnist_data(path, examples), input_shape, 0, None)
    assert data.x.dtype == np.float64 and data.labels.dtype == np.int64
    assert data.x.shape == expected_x.shape and np.array_equal(data.x, expected_x)
    assert np.array_equal(data.labels, whole_y[:examples])


@pytest.mark.parametrize("form", FORMATS)
def test_more_examples_than_the_file_holds_are_bad_input(tmp_path, form):
    """Silently fewer would train on other data than the spec says."""
    images, labels = digits(50)
    path = mnist_files(tmp_path, form, images, labels)
    with pytest.raises(InputError, match=r"^.*spec\.toml: data\.examples: .* has 50 examples; "
                                         r"51 asked$"):
        load_data(mnist_data(path, 51), [784], 0, tmp_path / "spec.toml")
    assert len(load_data(mnist_data(path, 50), [784], 0, None).x) == 50


def test_float_pixels_and_labels_convert_as_before(tmp_path):
    images, labels = digits(500, seed=1)
    pixels = (images * 0.99 + np.random.default_rng(2).random(images.shape)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x_train=pixels.reshape(500, 784), y_train=labels.astype(float))
    data = load_data(mnist_data(tmp_path / "d.npz", 123), [784], 0, None)
    assert np.array_equal(data.x, (pixels.reshape(500, 784).astype(np.float64) / 255.0)[:123])
    assert np.array_equal(data.labels, labels[:123].astype(np.int64))


def test_the_whole_file_is_still_checked(tmp_path):
    """Only `examples` are converted, but a bad label beyond them still refuses the file."""
    images, labels = digits(50)
    labels = labels.astype(np.int64)
    labels[-1] = 10
    path = mnist_files(tmp_path, "npz", images, labels)
    with pytest.raises(InputError, match="labels must be digits 0-9, found 0..10"):
        load_data(mnist_data(path, 5), [784], 0, None)


# ---- memory follows `examples` ---------------------------------------------------------------

BIG = 70_000  # images: 55 MB as stored, 439 MB as float64
SLACK = 128 << 20  # what reading a file holds beyond its arrays (the .npz reader's buffers)

LOADER = """
import json, resource, sys
from crossgrad.harness.spec.data import load_data
size = [l for l in open("/proc/self/status") if l.startswith("VmSize:")][0].split()[1]
limit = int(size) * 1024 + int(sys.argv[2])  # above what the imports took
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
examples = int(sys.argv[3]) or None
try:
    data = load_data({"source": "mnist", "path": sys.argv[1], "examples": examples},
                     [784], 0, None)
except MemoryError:
    print(json.dumps("MemoryError"))
else:
    print(json.dumps(data.x.shape))
"""


def load_limited(path, budget, examples):
    """Load in a child whose address space may grow `budget` bytes past its imports;
    -> the shape loaded, or "MemoryError"."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", LOADER, str(path), str(budget),
                           str(examples or 0)], capture_output=True, text=True, timeout=120,
                          env=env)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    return out if out == "MemoryError" else tuple(out)


def estimated(tmp_path, path, examples):
    """The estimate `check` makes for a dense 784 -> 10 spec on the file, in bytes."""
    raw = {"name": "big", "input_shape": [784],
           "data": {"source": "mnist", "path": str(path), "examples": examples},
           "layers": [{"type": "dense", "units": 10}], "loss": {"type": "softmax_cross_entropy"}}
    spec = parse_spec(raw, str(tmp_path / "big.toml"), "big")
    return sum(item.bytes for item in sizes.estimate(spec, False))


@pytest.mark.parametrize("form", ["npz", "idx"])
def test_memory_follows_examples_not_the_file(tmp_path, form):
    path = mnist_files(tmp_path, form, *digits(BIG))
    budget = estimated(tmp_path, path, 10) + SLACK
    assert budget < BIG * 784 * 8  # a float64 copy of every image does not fit
    assert load_limited(path, budget, 10) == (10, 784)
    # the limit bites: the whole file, converted, is refused under it
    assert load_limited(path, budget, None) == "MemoryError"


# ---- the file a bad label is in --------------------------------------------------------------

@pytest.mark.parametrize("form", ["idx", "idx.gz"])
def test_bad_idx_labels_name_the_labels_file(tmp_path, form):
    images, _ = digits(10)
    folder = mnist_files(tmp_path, form, images, np.arange(200, 210))
    with pytest.raises(InputError) as caught:
        load_data(mnist_data(folder, None), [784], 0, None)
    err = str(caught.value)
    assert caught.value.file.startswith(str(folder / LABELS)), err
    assert IMAGES not in err and "labels must be digits 0-9, found 200..209" in err, err


def test_npz_labels_and_pixels_still_name_their_member(tmp_path):
    images, labels = digits(10)
    np.savez(tmp_path / "d.npz", x=images, y=labels.astype(np.int64) + 10)
    with pytest.raises(InputError, match=r"d\.npz: y: labels must be digits"):
        load_data(mnist_data(tmp_path / "d.npz", None), [784], 0, None)
    np.savez(tmp_path / "d.npz", x=images.astype(np.int16) * 2, y=labels)
    with pytest.raises(InputError, match=r"d\.npz: x: pixels must be within 0-255"):
        load_data(mnist_data(tmp_path / "d.npz", None), [784], 0, None)


# ---- the spec hash follows the data file's bytes ---------------------------------------------

def spec_beside(folder, data_path):
    """The same spec text in `folder`, reading `data_path` (relative to it)."""
    raw = {"input_shape": [784], "data": {"source": "mnist", "path": data_path, "batch_size": 5},
           "layers": [{"type": "dense", "units": 10}], "loss": {"type": "softmax_cross_entropy"}}
    return parse_spec(raw, str(folder / "spec.toml"), "mine")


@pytest.mark.parametrize("form", FORMATS)
def test_the_spec_hash_follows_the_data_not_its_path(tmp_path, form):
    """Two projects with the same spec text and `data.path`, other data beside each: other
    hashes (run --resume must not serve one's results for the other); the same data: one."""
    hashes = {}
    for name, seed in (("a", 1), ("b", 2), ("a_again", 1)):
        (tmp_path / name).mkdir()
        path = mnist_files(tmp_path / name, form, *digits(10, seed))
        (tmp_path / name / "spec.toml").write_text("")
        hashes[name] = spec_beside(tmp_path / name, path.name).hash
    assert hashes["a"] != hashes["b"]
    assert hashes["a"] == hashes["a_again"]


@pytest.mark.parametrize("form", ["npz", "idx.gz"])
def test_the_spec_hash_follows_the_data_not_its_container(tmp_path, form):
    """The same data written twice in other containers (a gzip header's time, a zip
    deflated or stored): one hash. Hashing the file's bytes made `run --resume` recompute,
    and the hash of the same data depend on the second it was written."""
    images, labels = digits(10)
    hashes = []
    for i, name in enumerate(("first", "second")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "spec.toml").write_text("")
        if form == "npz":
            save = (np.savez, np.savez_compressed)[i]
            save(folder / "d.npz", x=images, y=labels)
            target = "d.npz"
        else:
            (folder / "mnist").mkdir()
            for file, data in ((IMAGES, idx(images, 3)), (LABELS, idx(labels, 1))):
                packed = gzip.compress(data, compresslevel=1 + 8 * i, mtime=1_000_000 * i)
                (folder / "mnist" / (file + ".gz")).write_bytes(packed)
            target = "mnist"
        hashes.append(spec_beside(folder, target).hash)
    assert hashes[0] == hashes[1]


def test_each_idx_file_counts(tmp_path):
    """In an IDX folder the labels are data too: other labels, another hash."""
    images, labels = digits(10)
    folder = mnist_files(tmp_path, "idx", images, labels)
    (tmp_path / "spec.toml").write_text("")
    before = spec_beside(tmp_path, folder.name).hash
    (folder / LABELS).write_bytes(idx((labels + 1) % 10, 1))
    assert spec_beside(tmp_path, folder.name).hash != before


def test_data_drawn_from_the_seed_or_bundled_keeps_its_hash():
    """Only a file the spec points at is read for the hash: the zoo's hashes (bundled
    digits, random sources) are the ones on record in the reference report."""
    from crossgrad.harness.spec import zoo_spec
    manifest = Path(__file__).parents[1] / "reports" / "reference" / "manifest.json"
    recorded = json.loads(manifest.read_text())["models"]
    assert recorded
    for model in recorded:
        spec = zoo_spec(model["name"], dtype=model["dtype"])
        assert spec.data_sha256 is None and spec.hash == model["spec_hash"], model["name"]
