"""Assertions for your own test suite (pytest or any other runner).

    from crossgrad.testing import assert_gradients_agree, assert_spec_agrees

    def test_my_norm():
        assert_gradients_agree(params={"g": g}, inputs=(x,), torch=..., jax=...)

    def test_my_layer():
        assert_spec_agrees("specs/my_layer.toml", frameworks=["numpy", "torch"])

Both raise an AssertionError whose message is a table of the worst disagreements, the
way numpy.testing's messages read; they return the Comparison / CheckResult otherwise.
"""
from . import messages
from .api import check
from .functions import compare

__all__ = ["assert_gradients_agree", "assert_spec_agrees"]


def assert_gradients_agree(params, inputs=(), *, torch=None, tensorflow=None, jax=None,
                           numpy=None, dtype="float64"):
    """crossgrad.compare(...) with the same arguments, and assert_close() on its result."""
    __tracebackhide__ = True
    result = compare(params, inputs, torch=torch, tensorflow=tensorflow, jax=jax, numpy=numpy,
                     dtype=dtype)
    result.assert_close()
    return result


def assert_spec_agrees(spec_or_path, frameworks=None):
    """crossgrad.check on a spec (a Spec, a path or a zoo name, or a list of them): every
    framework that ran agrees pair by pair and with finite differences, and none failed."""
    __tracebackhide__ = True
    result = check(spec_or_path, frameworks=frameworks)
    if not result.passed:
        raise AssertionError(spec_report(result))
    return result


def spec_report(result):
    """The message: which models fail, failed frameworks, the worst tensors and probes."""
    dtypes = sorted({m["dtype"] for m in result.models})
    failing = [m for m in result.models if not m["passed"]]
    broken = [f" {m['name']} {m['dtype']}: {fw} {info['status']}: {info.get('error')}"
              for m in failing for fw, info in m["frameworks"].items()
              if info["status"] == "failed"]
    rows = [dict(r, model=m["name"], dtype=m["dtype"]) for m in result.models
            for r in m["comparisons"]]
    probes = [dict(r, model=m["name"]) for m in result.models for r in m["finite_difference"]]
    names = ", ".join(f"{m['name']} ({m['dtype']})" for m in failing)
    return messages.message(
        f"Spec gradients disagree: {names} ({messages.tolerances(dtypes)})",
        [messages.counts(rows, probes),
         "Frameworks that failed:\n" + "\n".join(broken) if broken else "",
         messages.worst_pairs(rows, with_model=True),
         messages.worst_probes(probes, with_model=True)])
