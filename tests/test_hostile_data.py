"""Hostile data files under `[data] path`: every one is exit 2, one line naming the file and
what is wrong, nothing written; nothing blocks, nothing is inflated beyond its header.

The cases that could hang or allocate run in a child process with an address-space limit
and a timeout (tests/limited.py); every file lives under tmp_path.
"""
import gzip
import os
import stat
import struct
import zlib

import numpy as np
import pytest

from crossgrad.harness.cli import main
from crossgrad.harness.spec.mnist import load_mnist, mnist_sizes

from cases import idx, mnist_spec_file
from limited import NOTHING_BUILT, crossgrad

IMAGES, LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"


def spec_for(tmp_path, path):
    return mnist_spec_file(tmp_path, path, batch_size=2)


@pytest.fixture
def digits(tmp_path):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (6, 28, 28)), rng.integers(0, 10, 6)


def idx_folder(tmp_path, images, labels, gz=False):
    folder = tmp_path / "mnist"
    folder.mkdir(exist_ok=True)
    for name, data in ((IMAGES, images), (LABELS, labels)):
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return folder


def refused(tmp_path, capsys, path, blame):
    """Run check in-process on a spec whose data.path is `path`: exit 2, one line naming `blame`
    (the data file, or the spec and data.path), nothing written."""
    out = tmp_path / "out.json"
    code = main(["check", str(spec_for(tmp_path, path)), "--frameworks", "numpy",
                 "--json", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert str(blame) in err, err
    assert not out.exists()
    return err


# ---- not a regular file ------------------------------------------------------------------

def test_a_fifo_is_refused_at_once_without_opening_it(tmp_path):
    os.mkfifo(tmp_path / "data.npz")
    done = crossgrad(tmp_path, ["check", spec_for(tmp_path, "data.npz"), "--frameworks", "numpy"],
                     timeout=60)  # a regression blocks in open(): the timeout fails the test
    assert done.code == 2 and "FIFO" in done.stderr and "data.path" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_fifo_inside_the_idx_folder_is_refused(tmp_path, digits):
    folder = tmp_path / "mnist"
    folder.mkdir()
    os.mkfifo(folder / IMAGES)
    (folder / LABELS).write_bytes(idx(digits[1], 1))
    done = crossgrad(tmp_path, ["check", spec_for(tmp_path, "mnist"), "--frameworks", "numpy"],
                     timeout=60)
    assert done.code == 2 and "FIFO" in done.stderr and IMAGES in done.stderr, done.stderr


def test_a_device_is_refused(tmp_path, capsys):
    if not stat.S_ISCHR(os.stat("/dev/zero").st_mode):
        pytest.skip("no /dev/zero character device here")
    err = refused(tmp_path, capsys, "/dev/zero", "data.path")
    assert "character device" in err


def test_a_folder_where_a_file_is_expected(tmp_path, capsys, digits):
    folder = idx_folder(tmp_path, b"", idx(digits[1], 1))
    (folder / IMAGES).unlink()
    (folder / IMAGES).mkdir()
    err = refused(tmp_path, capsys, "mnist", IMAGES)
    assert "folder" in err


def test_symlinks_are_followed_and_loops_refused(tmp_path, capsys, digits):
    images, labels = digits
    np.savez(tmp_path / "real.npz", x=images.astype(np.uint8), y=labels)
    (tmp_path / "link.npz").symlink_to(tmp_path / "real.npz")
    x, y = load_mnist(str(tmp_path / "link.npz"), None)
    assert np.array_equal(x * 255, images) and np.array_equal(y, labels)
    (tmp_path / "a.npz").symlink_to(tmp_path / "b.npz")
    (tmp_path / "b.npz").symlink_to(tmp_path / "a.npz")
    assert "symlink loop" in refused(tmp_path, capsys, "a.npz", "data.path")


def test_a_path_outside_the_spec_folder_is_allowed(tmp_path, digits):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    np.savez(elsewhere / "d.npz", x=digits[0].astype(np.uint8), y=digits[1])
    (tmp_path / "specs").mkdir()
    spec = spec_for(tmp_path / "specs", "../elsewhere/d.npz")
    assert main(["check", str(spec), "--frameworks", "numpy", "--quiet"]) == 0


# ---- IDX: sizes from the header, bounded reads --------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_image_size_in_the_header_is_checked_before_reading(tmp_path, capsys, digits, gz):
    images, labels = digits
    idx_folder(tmp_path, idx(images[:, :27], 3), idx(labels, 1), gz)
    assert "27x28" in refused(tmp_path, capsys, "mnist", IMAGES)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("lie", ["more", "less"])
def test_body_must_match_the_header(tmp_path, capsys, digits, gz, lie):
    images, labels = digits
    claimed = (7 if lie == "more" else 5, 28, 28)
    idx_folder(tmp_path, idx(images, 3, claimed), idx(labels, 1, claimed[:1]), gz)
    err = refused(tmp_path, capsys, "mnist", IMAGES)
    assert "header says" in err


def gzip_bytes(data, level=6):
    return gzip.compress(data, compresslevel=level)


@pytest.mark.parametrize("damage", ["deflate", "crc", "truncated", "not_gzip"])
def test_broken_gzip_is_one_line(tmp_path, capsys, digits, damage):
    images, labels = digits
    good = gzip_bytes(idx(images, 3))
    bad = {"deflate": good[:10] + bytes([good[10] ^ 0xFF]) + b"\xff" * 40 + good[51:],
           "crc": good[:-8] + bytes([good[-8] ^ 0x01]) + good[-7:],
           "truncated": good[: len(good) // 2],
           "not_gzip": b"plainly not gzip data"}[damage]
    folder = idx_folder(tmp_path, b"", idx(labels, 1), gz=True)
    (folder / (IMAGES + ".gz")).write_bytes(bad)
    err = refused(tmp_path, capsys, "mnist", IMAGES)
    assert any(w in err for w in ("corrupt", "gzip", "truncated", "ends early", "IDX")), err


def bomb(header, inflated, member=16 << 20):
    """A gzip file whose first member holds `header` and then zeros, `inflated` bytes in all:
    concatenated members, each 16 MB of zeros in ~16 KB, so it is built in milliseconds."""
    zeros = gzip.compress(bytes(member), compresslevel=9)
    return gzip.compress(header) + zeros * (inflated // member)


def test_a_gzip_bomb_is_refused_not_inflated(tmp_path):
    """2 GB of zeros behind a header that declares 6 images: refused after reading what the
    header declares plus one byte, well inside a 1.5 GB address space."""
    header = struct.pack(">BBBBIII", 0, 0, 8, 3, 6, 28, 28)
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / (IMAGES + ".gz")).write_bytes(bomb(header, 2 << 30))
    (folder / LABELS).write_bytes(idx(np.zeros(6), 1))
    assert (folder / (IMAGES + ".gz")).stat().st_size < 3 << 20
    done = crossgrad(tmp_path, ["check", spec_for(tmp_path, "mnist"), "--frameworks", "numpy"],
                     address_space=1536 << 20)
    assert done.code == 2 and IMAGES in done.stderr and "more than" in done.stderr, done.stderr
    assert done.peak_rss < 400 << 20


def test_a_header_declaring_gigabytes_is_refused_by_the_estimate(tmp_path):
    """A 30-byte-per-image lie (3 million images declared) is refused from the headers alone."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / (IMAGES + ".gz")).write_bytes(gzip_bytes(struct.pack(">BBBBIII", 0, 0, 8, 3,
                                                                   3_000_000, 28, 28)))
    (folder / (LABELS + ".gz")).write_bytes(gzip_bytes(struct.pack(">BBBBI", 0, 0, 8, 1,
                                                                   3_000_000)))
    assert mnist_sizes("mnist", str(spec_for(tmp_path, "mnist")))[0] == 3_000_000
    done = crossgrad(tmp_path, ["check", spec_for(tmp_path, "mnist"), "--frameworks", "numpy",
                                "--max-memory", "2"], address_space=1 << 30)
    assert done.code == 2 and "data.path" in done.stderr and "3,000,000 examples" in done.stderr
    assert done.peak_rss < NOTHING_BUILT, done  # from the headers, nothing inflated


# ---- .npz and .npy --------------------------------------------------------------------------

def test_npy_is_named_as_such(tmp_path, capsys, digits):
    np.save(tmp_path / "images.npy", digits[0])
    assert ".npy" in refused(tmp_path, capsys, "images.npy", "images.npy")


def test_pickled_arrays_are_never_loaded(tmp_path, capsys, digits):
    labels = np.array([3, 1, 4, 1, 5, 9], dtype=object)
    np.savez(tmp_path / "d.npz", x=digits[0].astype(np.uint8), y=labels)
    assert "pickled" in refused(tmp_path, capsys, "d.npz", "d.npz")


@pytest.mark.parametrize("labels, words", [
    (np.arange(6) + 0.5, "integers 0-9"),
    (np.array([0, 1, 2, 3, 4, 10]), "0-9"),
    (np.array([0, 1, -1, 3, 4, 5]), "0-9"),
    (np.array([0, 1, np.nan, 3, 4, 5]), "integers"),
    (np.array(["a"] * 6), "dtype"),
])
def test_labels_must_be_integers_0_to_9(tmp_path, capsys, digits, labels, words):
    np.savez(tmp_path / "d.npz", x=digits[0].astype(np.uint8), y=labels)
    err = refused(tmp_path, capsys, "d.npz", "d.npz")
    assert "y" in err and words in err, err


def test_whole_float_labels_are_integers(tmp_path, digits):
    np.savez(tmp_path / "d.npz", x=digits[0].astype(np.float32), y=digits[1].astype(float))
    x, y = load_mnist(str(tmp_path / "d.npz"), None)
    assert y.dtype == np.int64 and np.array_equal(y, digits[1])


@pytest.mark.parametrize("pixels, words", [(300.0, "0-255"), (-1.0, "0-255"),
                                           (np.inf, "finite"), (np.nan, "finite")])
def test_pixels_must_be_within_0_255(tmp_path, capsys, digits, pixels, words):
    x = digits[0].astype(np.float64)
    x[2, 3, 4] = pixels
    np.savez(tmp_path / "d.npz", x=x, y=digits[1])
    err = refused(tmp_path, capsys, "d.npz", "d.npz")
    assert words in err, err


def test_a_member_larger_than_its_header_is_refused(tmp_path, capsys, digits):
    import io
    import zipfile
    body = io.BytesIO()
    np.save(body, digits[0].astype(np.uint8))
    with zipfile.ZipFile(tmp_path / "d.npz", "w") as z:
        z.writestr("x.npy", body.getvalue() + b"\0" * 100)
        y = io.BytesIO()
        np.save(y, digits[1])
        z.writestr("y.npy", y.getvalue())
    assert "x.npy" in refused(tmp_path, capsys, "d.npz", "d.npz")


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not really a zip", bytes(64)])
def test_not_an_npz(tmp_path, capsys, content):
    (tmp_path / "d.npz").write_bytes(content)
    refused(tmp_path, capsys, "d.npz", "d.npz")


def test_corrupt_deflate_inside_an_npz(tmp_path, capsys, digits):
    np.savez_compressed(tmp_path / "d.npz", x=digits[0].astype(np.uint8), y=digits[1])
    raw = bytearray((tmp_path / "d.npz").read_bytes())
    start = raw.index(b"x.npy") + 40  # inside the first member's compressed data
    raw[start:start + 30] = b"\xff" * 30
    (tmp_path / "d.npz").write_bytes(bytes(raw))
    refused(tmp_path, capsys, "d.npz", "d.npz")


def test_a_good_npz_and_idx_still_load(tmp_path, digits):
    images, labels = digits
    np.savez(tmp_path / "d.npz", x_train=images.astype(np.uint8), y_train=labels)
    x, y = load_mnist(str(tmp_path / "d.npz"), None)
    assert x.shape == (6, 28, 28) and np.allclose(x * 255, images) and (y == labels).all()
    idx_folder(tmp_path, idx(images, 3), idx(labels, 1), gz=True)
    x, y = load_mnist(str(tmp_path / "mnist"), None)
    assert np.allclose(x * 255, images) and (y == labels).all()
    assert zlib.crc32(x.tobytes()) == zlib.crc32((images / 255.0).tobytes())


# ---- no examples -----------------------------------------------------------------------------

@pytest.mark.parametrize("batch_size", [None, 2])
@pytest.mark.parametrize("form", ["npz", "idx", "idx.gz"])
def test_a_data_set_of_no_examples_is_refused(tmp_path, capsys, form, batch_size):
    """0 examples once reached the batch order's `n // batch_size`: a ZeroDivisionError, exit 1.
    Refused from the header, with or without a batch_size (without one, the whole set is
    the batch the layers are checked against)."""
    images, labels = np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8)
    if form == "npz":
        np.savez(tmp_path / "d.npz", x=images, y=labels)
        path, blame = "d.npz", f"{tmp_path / 'd.npz'}: x: has shape (0, 28, 28), 0 examples"
    else:
        idx_folder(tmp_path, idx(images, 3), idx(labels, 1), gz=form == "idx.gz")
        path = "mnist"
        blame = f"{IMAGES}{'.gz' if form == 'idx.gz' else ''}: byte 4: declares 0 images"
    spec = spec_for(tmp_path, path)
    if batch_size is None:
        spec.write_text(spec.read_text().replace("batch_size = 2\n", ""))
    out = tmp_path / "out.json"
    code = main(["check", str(spec), "--frameworks", "numpy", "--json", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and blame in err, err
    assert "needs at least one example" in err and not out.exists()
