"""Batch order and dropout masks drawn step by step: the same numbers as drawing them all at
once (the eager code below is what crossgrad did before), pickled as seed and sizes, and
read by every framework's training loop one step at a time."""
import math
import pickle
import tracemalloc
import zlib

import numpy as np
import pytest

from crossgrad.harness.run.jobs import Inputs, check_job, train_job
from crossgrad.harness.spec import data, parse_spec

from conftest import FRAMEWORKS, need


def eager_batch_order(n, batch_size, steps, seed, shuffle=True):
    """The former batch_order: every epoch's permutation drawn up front."""
    rng = np.random.default_rng([seed, 2])
    per_epoch = n // batch_size
    epochs = math.ceil(steps / per_epoch)
    order = [rng.permutation(n) if shuffle else np.arange(n) for _ in range(epochs)]
    order = np.stack([o[:per_epoch * batch_size] for o in order])
    return order.reshape(-1, batch_size)[:steps]


def eager_masks(layer, batch_size, steps, seed, dtype):
    """The former dropout_masks: rng.random((steps, batch, *shape)) at once."""
    rng = np.random.default_rng([seed, 3, zlib.crc32(layer["name"].encode())])
    u = rng.random((steps, batch_size, *layer["in_shape"]))
    return (u >= layer["rate"]).astype(dtype)


ORDERS = [(10, 3, 7, 0), (1797, 32, 120, 5), (4, 4, 9, 1), (257, 256, 3, 2), (64, 7, 40, 9)]


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("n, batch_size, steps, seed", ORDERS)
def test_batch_order_is_bit_identical_to_the_eager_draw(n, batch_size, steps, seed, shuffle):
    expected = eager_batch_order(n, batch_size, steps, seed, shuffle)
    lazy = data.batch_order(n, batch_size, steps, seed, shuffle)
    assert len(lazy) == steps and lazy.shape == expected.shape
    assert np.array_equal(np.stack(list(lazy)), expected)          # iteration
    rng = np.random.default_rng(seed)
    for k in [*reversed(range(steps)), *rng.integers(0, steps, 20)]:  # back and forth
        assert np.array_equal(lazy[int(k)], expected[k])
    assert np.array_equal(np.asarray(lazy), expected) and np.asarray(lazy).dtype == expected.dtype


MASKS = [([5], 0.4, 8, 3), ([3, 4], 0.5, 2, 50), ([6, 2, 3], 0.1, 5, 17), ([1], 0.9, 1, 40),
         ([16], 0.0, 4, 6)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("seed", [0, 7])
@pytest.mark.parametrize("shape, rate, batch_size, steps", MASKS)
def test_masks_are_bit_identical_to_the_eager_draw(shape, rate, batch_size, steps, seed, dtype):
    layer = {"name": "2.1", "in_shape": shape, "rate": rate}
    expected = eager_masks(layer, batch_size, steps, seed, dtype)
    lazy = data.dropout_masks([layer], batch_size, steps, seed, dtype)["2.1"]
    assert len(lazy) == steps and lazy.shape == expected.shape
    assert np.array_equal(np.stack(list(lazy)), expected)
    for k in [steps - 1, 0, steps // 2, steps // 2, steps // 2 + 1, -1]:  # jumps and repeats
        got = lazy[k]
        assert got.dtype == np.dtype(dtype) and np.array_equal(got, expected[k])
    assert np.array_equal(np.asarray(lazy), expected)


def test_steps_out_of_range_are_index_errors():
    lazy = data.batch_order(10, 3, 4, 0)
    masks = data.dropout_masks([{"name": "0", "in_shape": [2], "rate": 0.5}], 3, 4, 0,
                               "float64")["0"]
    for seq in (lazy, masks):
        with pytest.raises(IndexError):
            seq[4]
        with pytest.raises(IndexError):
            seq[-5]
        assert len(list(seq)) == 4


def spec(steps, dtype="float64"):
    return parse_spec({"name": "drop", "dtype": dtype, "input_shape": [6, 4],
                       "data": {"source": "random_sequence", "examples": 40, "batch_size": 8},
                       "layers": [{"type": "dense", "units": 5}, {"type": "dropout", "rate": 0.3},
                                  {"type": "residual", "layers": [
                                      {"type": "dense", "units": 5},
                                      {"type": "dropout", "rate": 0.5}]},
                                  {"type": "sequence_mean"}, {"type": "dense", "units": 3}],
                       "loss": {"type": "softmax_cross_entropy"},
                       "optimizer": {"type": "adam", "lr": 0.01}, "train": {"steps": steps}},
                      "drop.toml", "drop")


def test_jobs_pickle_small_whatever_the_steps():
    """A job carries seed and sizes for the per-step arrays, not steps x batch arrays."""
    sizes = {}
    for steps in (10, 10_000_000):
        inputs = Inputs(spec(steps))
        sizes[steps] = len(pickle.dumps(train_job(spec(steps), inputs, "numpy"), protocol=5))
        assert len(pickle.dumps(inputs.batches)) < 500
        assert all(len(pickle.dumps(m)) < 500 for m in inputs.masks.values())
        check = check_job(spec(steps), inputs, "numpy")
        assert check["masks"]["1"].shape == (8, 6, 5)  # step 0's masks only
    assert abs(sizes[10] - sizes[10_000_000]) < 100, sizes


def test_pickled_draws_continue_the_same_stream():
    inputs = Inputs(spec(30))
    again = pickle.loads(pickle.dumps((inputs.batches, inputs.masks)))
    for k in (0, 29, 5, 6):
        assert np.array_equal(again[0][k], inputs.batches[k])
        assert all(np.array_equal(again[1][n][k], m[k]) for n, m in inputs.masks.items())


def test_walking_the_steps_does_not_grow_memory():
    inputs = Inputs(spec(10_000_000))
    tracemalloc.start()
    for k, idx in enumerate(inputs.batches):
        masks = {name: m[k] for name, m in inputs.masks.items()}
        if k == 20_000:
            break
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    one_step = idx.nbytes + sum(m.nbytes for m in masks.values())
    assert peak < 50 * one_step + 100_000, (peak, one_step)


@pytest.fixture(scope="module")
def fed_both_ways(executor):
    """Each framework trains on the lazy draws and on the same draws as plain arrays."""
    jobs = []
    for dtype in ("float64", "float32"):
        s = spec(23, dtype)
        inputs = Inputs(s)
        for fw in FRAMEWORKS:
            lazy = dict(train_job(s, inputs, fw), key=None)
            eager = dict(lazy, batches=np.asarray(inputs.batches),
                         masks={k: np.asarray(m) for k, m in inputs.masks.items()})
            jobs += [lazy, eager]
    results = executor.run(jobs)
    return {(j["framework"], j["dtype"], i % 2): r for i, (j, r) in enumerate(zip(jobs, results))}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_every_train_loop_reads_step_k_alike(fed_both_ways, framework, dtype):
    """train(model, x, y, batches, masks) takes len(), [k], iteration and masks[name][k]:
    the lazy objects and the materialised arrays give the same bits."""
    need(framework)
    lazy, eager = fed_both_ways[(framework, dtype, 0)], fed_both_ways[(framework, dtype, 1)]
    assert lazy["status"] == "ok", lazy.get("error")
    assert lazy["curves"]["loss"] == eager["curves"]["loss"]
    assert lazy["curves"]["layer_norms"] == eager["curves"]["layer_norms"]
    assert all(np.array_equal(lazy["params"][k], eager["params"][k]) for k in lazy["params"])
    assert len(lazy["curves"]["loss"]) == 23
