"""Training speed without a changed bit: the free-running loops (records kept on the device,
one call per step) and `crossgrad bench --step-time`.

A diverged run must stop exactly where a step-by-step loop would: its parameters are the
ones before the diverged step, whether the loop checks every step (NumPy, PyTorch,
TensorFlow) or reads its records every few steps and undoes what ran ahead (JAX).
The plain NumPy loop the benchmark times the implementation against is the same math.
"""
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from crossgrad.harness import registry
from crossgrad.harness.bench import command as bench_command, plain_numpy, steptime
from crossgrad.harness.errors import InputError
from crossgrad.harness.run.jobs import Inputs
from crossgrad.harness.spec import parse_spec, zoo_spec

from conftest import FRAMEWORKS, need
from limited import NOTHING_BUILT, crossgrad as limited

# least squares at lr 50: the loss overflows at step 82 (float64) and 10 (float32), on both
# sides of JAX's every-16-steps read
DIVERGES = {"name": "diverges", "seed": 0, "input_shape": [4], "loss": {"type": "mse"},
            "data": {"source": "random_regression", "outputs": 2, "examples": 64},
            "layers": [{"type": "dense", "units": 2}],
            "optimizer": {"type": "sgd", "lr": 50.0}, "train": {"steps": 200}}
# with an optimizer state and a layer state, which a loop that undoes steps must put back:
# it diverges at step 18 (float64: JAX replays two steps of its window) and 16 (float32)
DIVERGES_WITH_STATE = dict(
    DIVERGES, name="diverges_with_state",
    layers=[{"type": "dense", "units": 8}, {"type": "batchnorm"}, {"type": "dense", "units": 2}],
    optimizer={"type": "momentum", "lr": 0.5, "momentum": 0.9})


def trained(impl, spec, inputs, steps):
    """(curves, params and state) of `steps` steps of the implementation's own train."""
    model = impl.model.build_model(spec.for_impls())
    impl.model.set_params(model, inputs.params, inputs.state)
    batches = [inputs.batches[k] for k in range(steps)]
    curves = impl.train.train(model, inputs.x, inputs.y, batches, inputs.masks)
    params, state = impl.model.get_params(model)
    return curves, {k: np.asarray(v) for k, v in {**params, **state}.items()}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("network", [DIVERGES, DIVERGES_WITH_STATE], ids=lambda n: n["name"])
def test_a_diverged_run_keeps_the_parameters_before_its_diverged_step(network, framework, dtype):
    """... and the layers' state after it: the loop stopped there."""
    need(framework)
    impl = registry.load(framework)
    impl.runtime.configure(1)
    spec = parse_spec(dict(network, dtype=dtype), "diverges.toml", "diverges")
    inputs = Inputs(spec)
    curves, params = trained(impl, spec, inputs, 200)
    at = curves["diverged_at"]
    assert at is not None and len(curves["loss"]) == at + 1
    assert not (np.isfinite(curves["loss"][at]) and np.isfinite(curves["grad_norm"][at]))
    before, params_before = trained(impl, spec, inputs, at)  # stops just before it
    assert before["diverged_at"] is None
    assert before["loss"] == curves["loss"][:at] and before["grad_norm"] == curves["grad_norm"][:at]
    for name, value in params_before.items():
        if name in spec.state_specs():  # the diverged step's batch moved it
            assert value.tobytes() != params[name].tobytes(), name
        else:
            assert value.tobytes() == params[name].tobytes(), name


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_training_leaves_the_arrays_it_was_given_and_gave_as_they_were(framework, dtype):
    """A loop that updates its parameters in place (NumPy's SGD) does so only on arrays of its
    own: the arrays set_params took and those get_params returned before keep their bytes."""
    need(framework)
    impl = registry.load(framework)
    impl.runtime.configure(1)
    spec = parse_spec(dict(DIVERGES, dtype=dtype, optimizer={"type": "sgd", "lr": 0.1}),
                      "sgd.toml", "sgd")
    inputs = Inputs(spec)
    given = {k: bits(v) for k, v in inputs.params.items()}
    model = impl.model.build_model(spec.for_impls())
    impl.model.set_params(model, inputs.params, inputs.state)
    held = impl.model.get_params(model)[0]
    before = {k: bits(np.asarray(v)) for k, v in held.items()}
    for _ in range(2):  # a second train starts from the first one's parameters
        impl.train.train(model, inputs.x, inputs.y, [inputs.batches[k] for k in range(5)], {})
    assert {k: bits(v) for k, v in inputs.params.items()} == given
    assert {k: bits(np.asarray(v)) for k, v in held.items()} == before
    assert {k: bits(np.asarray(v)) for k, v in impl.model.get_params(model)[0].items()} != before


# ---- a zero L1/L2 penalty, skipped where it would change no bit (NumPy, PyTorch) -----------

STEPWISE = ["numpy", "torch"]  # the two that take the penalty step by step, not compiled


def bits(a):
    """The bytes of an array: +0 and -0 differ, and NaNs compare."""
    return np.ascontiguousarray(a).tobytes()


def tensor(framework, a):
    if framework == "numpy":
        return a
    import torch
    return torch.tensor(a)


def penalty_both_ways(framework, w, c, l1=0.0, l2=0.0):
    """(loss, gradient) of sum(W * c) + penalty(W) for W = w, taken the penalty's way and by
    the vanishing shortcut: the data gradient is c itself, signed zeros included."""
    impl = registry.load(framework)
    L = impl.losses
    if framework == "numpy":
        slow_loss, extra = (w * c).sum(), L.penalty({"0.W": w}, l1, l2)
        slow_loss += extra[0]
        slow = c + extra[1]["0.W"]
        fast, fast_loss = c.copy(), (w * c).sum() + 0.0
        L.add_vanishing_penalty({"0.W": fast}, {"0.W": w}, l1, l2)
        return (slow_loss, slow), (fast_loss, fast)
    import torch
    param = torch.nn.Parameter(torch.from_numpy(w.T.copy()))  # torch's (out, in) weight
    weights = {"0.W": param.T}                                # canonical: a view, as in training
    loss = (param * torch.from_numpy(c.T.copy())).sum()
    (slow_loss := loss + L.penalty(weights, l1, l2)).backward()
    slow, param.grad = param.grad.T.numpy().copy(), None
    loss = (param * torch.from_numpy(c.T.copy())).sum()
    (fast_loss := loss + 0.0).backward()
    L.add_vanishing_penalty({"0.W": param.grad}, {"0.W": param}, l1, l2)
    return ((slow_loss.detach().numpy(), slow),
            (fast_loss.detach().numpy(), param.grad.T.numpy().copy()))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("framework", STEPWISE)
def test_a_vanishing_penalty_gives_the_penalty_s_bits(framework, dtype):
    """Every pairing of a data gradient (+0, -0, nonzero) with a weight (+, -, +0, -0): the
    sign of each zero the penalty leaves is the penalty's."""
    need(framework)
    values = np.array([1.5, -2.0, 0.0, -0.0], dtype)
    w = np.repeat(values, 4).reshape(4, 4)            # one weight value per row
    c = np.tile(np.array([0.0, -0.0, 3.0, -0.0], dtype), (4, 1))  # one gradient per column
    (slow_loss, slow), (fast_loss, fast) = penalty_both_ways(framework, w, c)
    assert registry.load(framework).losses.penalty_vanishes({"0.W": tensor(framework, w)},
                                                            0.0, 0.0)
    assert bits(fast) == bits(slow), (fast, slow)
    assert np.signbit(slow).any() and not np.signbit(slow[:, 0]).any()  # both signs occur
    assert bits(fast_loss) == bits(slow_loss)
    c_neg = -np.ones_like(w) * 0.0                    # a loss of -0: the penalty makes it +0
    (slow_loss, _), (fast_loss, _) = penalty_both_ways(framework, np.abs(w), c_neg)
    assert bits(fast_loss) == bits(slow_loss) == bits(np.asarray(0.0, dtype))
    c_plus = np.tile(np.array([0.0, 3.0, -1.5, 0.0], dtype), (4, 1))  # zeros, none of them -0
    (_, slow), (_, fast) = penalty_both_ways(framework, w, c_plus)
    assert bits(fast) == bits(slow) and bits(fast) == bits(c_plus)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf - inf, inf * 0 on purpose
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_numpy_penalty_gradient_has_the_bits_of_l1_sign_plus_2_l2_w(dtype):
    """buffered_penalty takes l1 sign(W) + (2 l2) W in fewer passes where no W is 0 or NaN
    (losses.signed_sum): the same bits as the formula, value and gradient, at every scale
    (subnormal and overflowing terms included), with zeros, infinities and NaNs (the
    formula's own passes), for zero and nonzero l1 and l2, on a transposed W too."""
    from crossgrad.impls.numpy_manual import losses as L
    rng, info = np.random.default_rng(0), np.finfo(dtype)
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, info.smallest_subnormal, -info.tiny / 3]
    for trial in range(120):
        scale = 10.0 ** rng.uniform(np.log10(info.tiny) - 3, np.log10(info.max))
        w = (rng.standard_normal((int(rng.integers(1, 9)), int(rng.integers(1, 9)))) * scale)
        w = w.astype(dtype)
        if trial % 3 == 0:
            w.flat[rng.integers(w.size)] = special[trial // 3 % len(special)]
        w = w.T if trial % 4 == 0 else w
        for l1, l2 in [(1e-4, 1e-4), (0.0, 1e-3), (1e-3, 0.0), (0.0, 0.0), (3.0, 1e30)]:
            tmp = np.empty_like(w)
            value = l1 * np.abs(w, out=tmp).sum() + l2 * np.multiply(w, w, out=tmp).sum()
            grad = np.sign(w) * np.asarray(l1, dtype) + np.multiply(w, 2 * l2, out=tmp)
            got, grads = L.buffered_penalty({"0.W": w}, l1, l2, {})
            assert bits(grads["0.W"]) == bits(grad), (w, l1, l2)
            assert bits(np.float64(got)) == bits(np.float64(value)), (w, l1, l2)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy's, on the non-finite weights
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("framework", STEPWISE)
def test_a_penalty_vanishes_only_at_plus_zero_with_finite_squares(framework, dtype):
    need(framework)
    L = registry.load(framework).losses
    big = np.sqrt(np.finfo(dtype).max)                 # its square overflows
    fine = {"0.W": tensor(framework, np.ones((3, 2), dtype)),
            "2.W": tensor(framework, np.full(4, -2.0, dtype))}
    assert L.penalty_vanishes(fine, 0.0, 0.0) and L.penalty_vanishes({}, 0.0, 0.0)
    for l1, l2 in [(1e-4, 0.0), (0.0, 1e-4), (-0.0, 0.0), (0.0, -0.0)]:
        assert not L.penalty_vanishes(fine, l1, l2), (l1, l2)
    for bad in [np.inf, -np.inf, np.nan, big, big / 2]:
        w = np.ones((3, 2), dtype)
        w[1, 1] = bad
        assert not L.penalty_vanishes(dict(fine, **{"4.W": tensor(framework, w)}), 0.0, 0.0), bad
    for bad in [np.inf, np.nan, big * 2]:  # a penalty that does not vanish: not finite
        w = np.ones((3, 2), dtype)
        w[1, 1] = bad
        (loss, _), _ = penalty_both_ways(framework, w, np.ones_like(w))
        assert np.isnan(loss)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("framework", STEPWISE)
def test_training_keeps_its_bits_with_the_vanishing_penalty(framework, dtype, monkeypatch):
    """digits_mlp one example at a time: the 8x8 digits' blank pixels give weight gradients of
    exactly +0 and -0. Curves and parameters bit for bit with the penalty taken in full."""
    need(framework)
    impl = registry.load(framework)
    impl.runtime.configure(1)
    spec = zoo_spec("digits_mlp", dtype=dtype)
    inputs = Inputs(spec, steps=1)
    batches = [np.array([k]) for k in range(12)]

    def run():
        model = impl.model.build_model(spec.for_impls())
        impl.model.set_params(model, inputs.params, inputs.state)
        curves = impl.train.train(model, inputs.x, inputs.y, batches, {})
        return curves, impl.model.get_params(model)[0]
    vanished = []
    taken = impl.train.penalty_vanishes
    monkeypatch.setattr(impl.train, "penalty_vanishes",
                        lambda *a: vanished.append(taken(*a)) or vanished[-1])
    fast = run()
    assert vanished == [True] * len(batches)
    monkeypatch.setattr(impl.train, "penalty_vanishes", lambda *a: False)
    slow = run()
    assert fast[0] == slow[0]
    for name, value in slow[1].items():
        assert bits(fast[1][name]) == bits(value), name


PLAIN_CASES = [(fw, name) for fw in FRAMEWORKS for name in ("digits_mlp", "digits_cnn")
               if fw != "numpy" or name in plain_numpy.NETWORKS]


@pytest.mark.parametrize("framework, name", PLAIN_CASES, ids=["-".join(c) for c in PLAIN_CASES])
def test_each_timed_plain_call_starts_from_the_initial_weights(framework, name):
    """The implementation's timed calls each start from the spec's parameters; the plain
    loop's start from its initial weights and optimizer state too (reset), not from where
    the last call left them: after three calls, the fourth repeats the first bit for bit."""
    need(framework)
    spec = zoo_spec(name, dtype="float32")
    if framework != "numpy":  # with an optimizer state to reset (the NumPy loop is SGD's)
        spec = spec.with_overrides(**{"optimizer": {"type": "adam", "lr": 0.01}})
    plain = steptime.plain_loops(framework)
    inputs = Inputs(spec, steps=3)
    loops = plain.build(name, spec.for_impls())
    curves = []
    for _ in range(4):
        plain.reset(loops)
        curves.append(plain.train(loops, inputs.x, inputs.y, list(inputs.batches)))
    assert curves[1]["loss"][0] != curves[0]["loss"][-1]  # three steps moved the weights
    assert curves[3] == curves[0]


@pytest.mark.parametrize("batch_size", [None, 1], ids=["spec_batch", "batch_1"])
@pytest.mark.parametrize("name", sorted(plain_numpy.NETWORKS))
def test_the_plain_numpy_loop_is_the_implementations_math(name, batch_size):
    """One SGD step (mnist_mlp: with L1 and L2) of the plain loop and of the implementation,
    from the same weights on the same batch: the same loss, norms and new weights. A batch of
    one takes both through their outer products."""
    impl = registry.load("numpy")
    spec = zoo_spec(name, dtype="float64")
    if batch_size:
        spec = spec.with_overrides(**{"data.batch_size": batch_size})
    inputs = Inputs(spec, steps=1)
    model = impl.model.build_model(spec.for_impls())
    impl.model.set_params(model, inputs.params, inputs.state)
    plain = plain_numpy.build(name, spec.for_impls())
    plain["weights"] = [(inputs.params[f"{i}.W"].copy(), inputs.params[f"{i}.b"].copy())
                        for i in range(0, 2 * len(plain["weights"]), 2)]  # dense at 0, 2, 4
    batches = [inputs.batches[0]]
    expected = impl.train.train(model, inputs.x, inputs.y, batches, {})
    got = plain_numpy.train(plain, inputs.x, inputs.y, batches)
    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-13)
    np.testing.assert_allclose(got["grad_norm"], expected["grad_norm"], rtol=1e-12)
    np.testing.assert_allclose(got["layer_norms"], list(expected["layer_norms"].values()),
                               rtol=1e-12)
    params = impl.model.get_params(model)[0]
    for i, (w, b) in enumerate(plain["weights"]):
        np.testing.assert_allclose(w, params[f"{2 * i}.W"], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(b, params[f"{2 * i}.b"], rtol=1e-12, atol=1e-15)


def crossgrad(*args, cwd):
    return subprocess.run([sys.executable, "-m", "crossgrad.harness.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # workers started afresh: seconds each
def test_bench_step_time_writes_the_json_contract(tmp_path):
    out = tmp_path / "steps.json"
    run = crossgrad("bench", "--step-time", "--zoo", "digits_mlp", "--frameworks", "numpy",
                    "--batch-sizes", "1,8", "--json", str(out), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    document = json.loads(out.read_text())
    rows = document["results"]
    assert {(r["mode"], r["batch_size"]) for r in rows} == {
        (m, b) for m in ("impl", "plain") for b in (1, 8)}
    for r in rows:
        assert {"model", "framework", "mode", "batch_size", "step_seconds", "compile_seconds",
                "gflops"} <= set(r)
        assert r["model"] == "digits_mlp" and r["framework"] == "numpy"
        assert r["step_seconds"] > 0 and r["compile_seconds"] >= 0 and r["gflops"] > 0
    assert document["machine"]["gemm_gflops"]["numpy"] > 0
    assert document["machine"]["dtype"] == "float32"
    assert "impl/plain" in run.stdout and "digits_mlp" in run.stdout


class Call:
    """A simulated `train` call: `setup` seconds once per call plus `step` seconds a step;
    `stops` steps at most (a diverged run). -> (seconds, steps), as steptime.timed."""

    def __init__(self, setup, step, stops=None):
        self.setup, self.step, self.stops = setup, step, stops

    def __call__(self, k):
        steps = min(k, self.stops or k)
        return self.setup + steps * self.step, steps


@pytest.mark.parametrize("setup, step", [(0.006, 0.0005), (0.0, 0.0005), (0.05, 0.002),
                                         (0.004, 0.0002), (0.0, 0.02)])
def test_timed_calls_last_about_the_target_whatever_a_call_sets_up(setup, step):
    """A few steps' call can be mostly its setup: the size comes from a call long enough."""
    target = steptime.TARGET_SECONDS
    seconds = Call(setup, step)(steptime.sized(Call(setup, step)))[0]
    assert 0.75 * target <= seconds <= 1.5 * target


@pytest.mark.parametrize("setup, step, expected", [(0.0, 0.5, 3), (0.3, 0.00001, 3),
                                                   (0.0, 0.00001, steptime.MAX_STEPS)])
def test_timed_calls_keep_at_least_3_and_at_most_max_steps(setup, step, expected):
    assert steptime.sized(Call(setup, step)) == expected


def test_a_run_that_stops_early_is_sized_by_the_steps_it_took():
    assert steptime.sized(Call(0.0, 0.001, stops=2)) == math.ceil(steptime.TARGET_SECONDS / 0.001)


@pytest.mark.parametrize("value", ["0", "1,x", ""])
def test_bad_batch_sizes_are_refused_before_any_work(tmp_path, value):
    out = tmp_path / "steps.json"
    run = crossgrad("bench", "--step-time", "--zoo", "digits_mlp", "--frameworks", "numpy",
                    "--batch-sizes", value, "--json", str(out), cwd=tmp_path)
    assert run.returncode == 2
    assert "--batch-sizes" in run.stderr and len(run.stderr.strip().splitlines()) <= 3
    assert not out.exists()


# a dense layer of 3,000,000 units on 4 inputs: 0.6 GB estimated at its own batch of 1, 24 GB
# of activations at a batch of 1000: over --max-memory 2, under a large machine's default
WIDE = {"name": "wide", "dtype": "float32", "input_shape": [4],
        "data": {"source": "random_classification", "classes": 3, "examples": 16,
                 "batch_size": 1},
        "layers": [{"type": "dense", "units": 3_000_000}, {"type": "dense", "units": 3}],
        "loss": {"type": "softmax_cross_entropy"}, "train": {"steps": 10}}


def wide_spec(tmp_path):
    path = tmp_path / "wide.json"
    path.write_text(json.dumps(WIDE))
    return path


@pytest.mark.parametrize("case", ["data_repeated", "activations"])
def test_a_batch_size_over_the_memory_limit_is_refused_before_any_work(tmp_path, case):
    """The spec's own batch passes the estimate; --batch-sizes' largest is estimated too (a
    batch larger than the data set repeats it up to that many rows): one line naming the
    flag, the model and the batch size, exit 2, nothing allocated nor written."""
    out = tmp_path / "steps.json"
    model, batch, words = {
        "data_repeated": (["--zoo", "mnist_mlp"], "1000000000",
                          "repeated to 1,000,000,000 rows need"),
        "activations": ([wide_spec(tmp_path), "--max-memory", "2"], "1,1000",
                        "layers[0].units: dense on (4,) needs 24.0 GB of activations")}[case]
    done = limited(tmp_path, ["bench", "--step-time", *model, "--frameworks", "numpy",
                              "--batch-sizes", batch, "--json", out], address_space=2 << 30)
    err = done.stderr.strip()
    assert done.code == 2 and len(err.splitlines()) == 1, err
    name = "mnist_mlp" if case == "data_repeated" else "wide"
    big = f"{int(batch.split(',')[-1]):,}"
    assert err.startswith(f"crossgrad: --batch-sizes: {name} at batch size {big}: "), err
    assert words in err and "over the limit of" in err, err
    assert case == "data_repeated" or "over the limit of 2.0 GB (set by --max-memory)" in err
    assert done.peak_rss < NOTHING_BUILT, done.peak_rss
    assert not out.exists()


def test_the_batch_size_estimate_takes_the_limit_given():
    """--max-memory bounds the largest batch size (bench.command.plan, which
    `commands.cmd_step_time` passes args.max_memory to)."""
    spec = parse_spec(WIDE, "wide.json", "wide")
    bench_command.plan([spec], ["numpy"], [1, 10], max_memory=2)  # 0.8 GB: fits
    with pytest.raises(InputError) as refused:
        bench_command.plan([spec], ["numpy"], [1, 1000], max_memory=2)
    text = str(refused.value)
    assert text.startswith("--batch-sizes: wide at batch size 1,000: layers[0].units: "), text
    assert "24.0 GB of activations" in text and "over the limit of 2.0 GB (set by --max-memory)" \
        in text, text


class Recorded:
    """A LocalExecutor that runs nothing: it keeps the jobs and answers each with one row per
    batch size (bench.command.measure's side of the step benchmark, without workers)."""
    jobs = []

    def __init__(self, **options):
        self.hellos = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def run(self, jobs, on_result=None):
        Recorded.jobs = jobs
        return [{"status": "ok", "gemm_seconds": None, "gemm_n": 512,
                 "rows": [{"mode": "impl", "batch_size": b, "step_seconds": 1e-3,
                           "compile_seconds": 0.0, "steps": 3, "repeats": 5}
                          for b in job["batch_sizes"]]} for job in jobs]


def test_batch_size_1_is_skipped_for_a_batchnorm_that_it_leaves_one_value_per_channel(
        monkeypatch, capsys):
    """PyTorch raises there ("Expected more than 1 value per channel") and TensorFlow and JAX
    normalise every value to 0: no framework times it, one line says so, the JSON records it
    beside its results, and the other models keep batch size 1."""
    monkeypatch.setattr(bench_command, "LocalExecutor", Recorded)
    specs = [zoo_spec("batchnorm_mlp", dtype="float32"), zoo_spec("xor_2_2_1", dtype="float32")]
    document, failed = bench_command.measure(specs, ["numpy", "torch"], [1, 100, 1000])
    assert not failed
    assert {(j["model"], j["framework"]): j["batch_sizes"] for j in Recorded.jobs} == {
        ("batchnorm_mlp", f): [100, 1000] for f in ("numpy", "torch")} | {
        ("xor_2_2_1", f): [1, 100, 1000] for f in ("numpy", "torch")}
    assert document["skipped"] == [{"model": "batchnorm_mlp", "batch_size": 1,
                                    "reason": "batchnorm needs more than one value per channel"}]
    assert {"results", "machine"} <= set(document)
    assert not any(r["model"] == "batchnorm_mlp" and r["batch_size"] == 1
                   for r in document["results"])
    assert capsys.readouterr().err.splitlines() == [
        "batchnorm_mlp: batch size 1 skipped: batchnorm needs more than one value per channel"]


def test_a_batchnorm_over_an_image_keeps_batch_size_1():
    """One example of a 4x4 image gives each channel 16 values: the spec's own check takes
    a batch of one there, and so does the bench."""
    spec = parse_spec({"input_shape": [4, 4, 1],
                       "data": {"source": "random_classification", "classes": 2,
                                "examples": 8, "batch_size": 1},
                       "layers": [{"type": "conv2d", "filters": 2, "kernel_size": [3, 3]},
                                  {"type": "batchnorm"}, {"type": "flatten"},
                                  {"type": "dense", "units": 2}],
                       "loss": {"type": "softmax_cross_entropy"}}, "image.json", "image")
    assert bench_command.plan([spec], ["numpy"], [1, 8]) == ({"image": [1, 8]}, [])


def test_batch_sizes_that_leave_nothing_to_time_are_refused(tmp_path):
    out = tmp_path / "steps.json"
    run = crossgrad("bench", "--step-time", "--zoo", "batchnorm_mlp", "--frameworks", "numpy",
                    "--batch-sizes", "1", "--json", str(out), cwd=tmp_path)
    err = run.stderr.strip()
    assert run.returncode == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("crossgrad: --batch-sizes: leaves nothing to time: batchnorm_mlp "), err
    assert not out.exists()


@pytest.mark.slow  # a PyTorch worker started afresh: seconds
def test_bench_step_time_of_batchnorm_in_torch_skips_batch_size_1(tmp_path):
    need("torch")
    out = tmp_path / "steps.json"
    run = crossgrad("bench", "--step-time", "--zoo", "batchnorm_mlp", "--frameworks", "torch",
                    "--batch-sizes", "1,8", "--json", str(out), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "batchnorm_mlp: batch size 1 skipped: batchnorm needs more than one value per " \
           "channel" in run.stderr
    document = json.loads(out.read_text())
    assert {(r["framework"], r["batch_size"]) for r in document["results"]} == {("torch", 8)}
    assert document["skipped"] == [{"model": "batchnorm_mlp", "batch_size": 1,
                                    "reason": "batchnorm needs more than one value per channel"}]


@pytest.mark.parametrize("frameworks", ["original", "numpy,original"])
def test_original_for_specs_none_of_which_was_imported_is_refused(tmp_path, frameworks):
    """As `check` refuses it: the bench would time nothing, or drop it unsaid."""
    out = tmp_path / "steps.json"
    run = crossgrad("bench", "--step-time", "--zoo", "xor_2_2_1", "--frameworks", frameworks,
                    "--batch-sizes", "2", "--json", str(out), cwd=tmp_path)
    err = run.stderr.strip()
    assert run.returncode == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("crossgrad: --frameworks: original: no spec here was imported"), err
    assert not out.exists()
