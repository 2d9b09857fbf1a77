"""AssertionError messages that read like numpy.testing's: what was asked, how much disagrees,
then the worst tensors and probes as tables (the terminal tables' formatting)."""
from .harness.compare.finite_diff import TOLERANCE as FD_TOLERANCE
from .harness.compare.pairwise import PAIRWISE
from .harness.report.tables import fmt, render

SHOWN = 10  # rows per table: the worst ones


def tolerances(dtypes):
    pairwise = ", ".join(f"{d} <= {PAIRWISE[d]:g}" for d in dtypes)
    fd = f"; finite differences (float64) <= {FD_TOLERANCE:g}" if "float64" in dtypes else ""
    return f"pairwise relative error: {pairwise}{fd}"


def counts(pairs, probes):
    bad_pairs = sum(not r["passed"] for r in pairs)
    bad_probes = sum(not r["passed"] for r in probes)
    text = f"Mismatched: {bad_pairs} of {len(pairs)} pairwise comparisons"
    return text + (f", {bad_probes} of {len(probes)} finite-difference probes" if probes else "")


def worst_pairs(rows, with_model=False):
    """The failing pairwise rows, worst relative error first."""
    bad = sorted((r for r in rows if not r["passed"]), key=lambda r: -_key(r["rel_err"]))
    if not bad:
        return ""
    head = ["model", "dtype"] * with_model + ["param", "a", "b", "max_abs_err", "rel_err",
                                              "cosine"]
    body = [_where(r, with_model, "model", "dtype") +
            [r["param"], r["a"], r["b"], fmt(r["max_abs_err"]), fmt(r["rel_err"]),
             "-" if r.get("cosine") is None else f"{r['cosine']:.9f}"] for r in bad[:SHOWN]]
    return _titled("Worst pairwise errors", render(head, body), len(bad))


def worst_probes(rows, with_model=False):
    """The finite-difference probes that disagree, worst first."""
    bad = sorted((r for r in rows if not r["passed"]), key=lambda r: -_key(r["rel_err"]))
    if not bad:
        return ""
    head = ["model"] * with_model + ["framework", "param", "direction", "analytic", "numeric",
                                     "rel_err"]
    body = [_where(r, with_model, "model") +
            [r["framework"], r["param"], r["direction"], f"{r['analytic']:.9g}",
             f"{r['numeric']:.9g}", fmt(r["rel_err"])] for r in bad[:SHOWN]]
    return _titled("Worst finite differences", render(head, body), len(bad))


def _where(row, with_model, *keys):
    return [row[k] for k in keys] if with_model else []


def _titled(title, table, n):
    more = f" ({SHOWN} of {n} shown)" if n > SHOWN else ""
    return f"{title}{more}:\n" + "\n".join(" " + line for line in table.splitlines())


def _key(x):
    return float("inf") if x is None or x != x else x  # nan and None sort as the worst


def message(title, parts):
    return "\n".join([title, ""] + [p for p in parts if p])
