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
from .api import check, framework_names
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
    framework that ran agrees pair by pair and with finite differences, none failed, each
    framework named in `frameworks` ran, and every model had something compared."""
    __tracebackhide__ = True
    result = check(spec_or_path, frameworks=frameworks)
    idle = unchecked(result, framework_names(frameworks))
    if not result.passed or idle:  # neither a skip nor an unchecked model fails a check
        raise AssertionError(spec_report(result, idle))
    return result


def unchecked(result, named):
    """Lines for what would let a test pass having checked nothing: a framework the caller
    named that was skipped (a plugin without its method, a typo in that method's name), a
    model with nothing compared (its "unchecked" reason)."""
    lines = []
    for m in result.models:
        where = f" {m['name']} {m['dtype']}"
        lines += [f"{where}: {fw} skipped: {info.get('error')}"
                  for fw, info in m["frameworks"].items()
                  if info["status"] == "skipped" and fw in (named or ())]
        lines += [f"{where}: {m['unchecked']}"] if m.get("unchecked") else []
    return lines


def spec_report(result, idle=()):
    """The message: which models fail, failed frameworks, what was not checked, the worst
    tensors and probes."""
    dtypes = sorted({m["dtype"] for m in result.models})
    failing = [m for m in result.models if not m["passed"]]
    broken = [f" {m['name']} {m['dtype']}: {fw} {info['status']}: {info.get('error')}"
              for m in failing for fw, info in m["frameworks"].items()
              if info["status"] == "failed"]
    rows = [dict(r, model=m["name"], dtype=m["dtype"]) for m in result.models
            for r in m["comparisons"]]
    probes = [dict(r, model=m["name"]) for m in result.models for r in m["finite_difference"]]
    undefined = [f" {m['name']} {m['dtype']}: {m['not_finite']}" for m in failing
                 if m.get("not_finite")]
    names = ", ".join(f"{m['name']} ({m['dtype']})" for m in failing)
    verb = "loss not finite" if failing and len(undefined) == len(failing) else "gradients disagree"
    title = (f"Spec {verb}: {names}" if failing else "Spec not checked in full") + f" ({messages.tolerances(dtypes)})"
    return messages.message(
        title,
        [messages.counts(rows, probes),
         "Loss not finite:\n" + "\n".join(undefined) if undefined else "",
         "Frameworks that failed:\n" + "\n".join(broken) if broken else "",
         "Not checked:\n" + "\n".join(idle) if idle else "",
         messages.worst_pairs(rows, with_model=True),
         messages.worst_probes(probes, with_model=True)])
