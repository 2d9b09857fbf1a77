"""Which layer parts first: every pair of frameworks, layer by layer, on the first batch.

Each framework returns, for every top-level layer (a residual block is one unit), its
output and d loss / d(its input) (`layer_values` in each model.py; canonical layouts). A
pair is measured as everywhere else, max |a - b| / max |a|, against the pairwise
tolerance. The rows explain a failing check; they do not judge one: a check passes or
fails on its loss, gradients and state alone.

Where a failing pair parts first, in the order the computation runs:
1. forward: the first layer, in spec order, whose output leaves the tolerance;
2. backward: else the first layer, in backward order (last layer first), whose dL/dx does;
3. parameters: else every layer's output and dL/dx agree, so a layer computes the
   gradient of its own parameters wrongly from right inputs: the first such layer in
   backward order;
4. state: else the first layer whose running statistics differ;
5. loss: else only the loss value differs (no layer; the gradients agree).
"""
import math

import numpy as np

from ..registry import PARTICIPANTS, REFERENCE
from .pairwise import PAIRWISE, max_errors


def layer_rows(layers, results):
    """One row per pair of frameworks (a before b) that returned layer values, and per
    top-level layer: forward_rel_err, backward_rel_err (None where the layer has no input
    gradient: the embedding of token ids)."""
    ran = [fw for fw in PARTICIPANTS if results.get(fw, {}).get("status") == "ok"
           and "layer_outputs" in results[fw]]
    rows = []
    for i, a in enumerate(ran):
        for b in ran[i + 1:]:
            ra, rb = results[a], results[b]
            for layer in layers:
                name = layer["name"]
                rows.append({"layer": name, "type": layer["type"], "a": a, "b": b,
                             "forward_rel_err": _rel(ra["layer_outputs"].get(name),
                                                     rb["layer_outputs"].get(name)),
                             "backward_rel_err": _rel(ra["layer_input_grads"].get(name),
                                                      rb["layer_input_grads"].get(name))})
    return rows


def _rel(a, b):
    """The pairwise relative error; None if neither side has the value, inf if one lacks it
    or the shapes differ (an implementation returning the wrong thing)."""
    if a is None and b is None:
        return None
    if a is None or b is None or np.shape(a) != np.shape(b):
        return math.inf
    return max_errors(a, b)[1]


def first_partings(layers, rows, comparisons, dtype, tol=None):
    """One entry per failing pair (one with a comparison row that did not pass):
    {"pair": [a, b], "layer", "type", "direction"}; see the module's docstring. A pair
    without layer rows (a framework could not give its layer values) has none."""
    failing = list(dict.fromkeys((c["a"], c["b"]) for c in comparisons if not c["passed"]))
    by_pair = {pair: [r for r in rows if (r["a"], r["b"]) == pair] for pair in failing}
    return [_parting(layers, pair, by_pair[pair],
                     [c for c in comparisons if (c["a"], c["b"]) == pair and not c["passed"]],
                     PAIRWISE[dtype] if tol is None else tol)
            for pair in failing if by_pair[pair]]


def _parting(layers, pair, rows, failed, tol):
    def beyond(err):
        return err is not None and not err <= tol  # nan is beyond too

    types = {layer["name"]: layer["type"] for layer in layers}
    order = [layer["name"] for layer in layers]
    found = (next((("forward", r["layer"]) for r in rows if beyond(r["forward_rel_err"])), None)
             or next((("backward", r["layer"]) for r in reversed(rows)
                      if beyond(r["backward_rel_err"])), None))
    if found is None:
        grads = [c for c in failed if c["kind"] == "grad"]
        states = [c for c in failed if c["kind"] == "state"]
        if grads:
            found = "parameters", max((_top(c["param"]) for c in grads), key=order.index)
        elif states:
            found = "state", min((_top(c["param"]) for c in states), key=order.index)
        else:
            found = "loss", None
    direction, layer = found
    return {"pair": list(pair), "layer": layer, "type": types.get(layer), "direction": direction}


def _top(param):
    """The top-level layer of a canonical name: "3.1.W" -> "3"."""
    return param.split(".", 1)[0]


# a squashing layer whose outputs agree and whose dL/dx does not: its slope is a difference
# of nearly equal numbers where it saturates, and one ulp of y becomes a large relative error
SATURATED = {"tanh": " (if its units saturate, 1 - y^2 near 0 turns one ulp of y into this)",
             "sigmoid": " (if its units saturate, y (1 - y) near 0 turns one ulp of y into this)"}


def odd_one(entries):
    """The framework in every failing pair, where there are two pairs or more and one such
    framework: the one that departs from the others (torch wrong: numpy~torch, torch~jax,
    ...). None where the pairs do not say (one pair, or two frameworks wrong)."""
    pairs = [set(entry["pair"]) for entry in entries]
    common = set.intersection(*pairs) if len(pairs) > 1 else set()
    return common.pop() if len(common) == 1 else None


def parting_line(entry, odd=None):
    """"tensorflow parts from numpy at layer 3 (lstm), forward", for the terminal: the odd
    one (odd_one) parts from the other of its pair; with none, the reference is the one
    parted from; in a pair of two others, "torch and jax part at ..." (the pair's order, the
    registry's, says nothing about which is right)."""
    a, b = entry["pair"]
    where = f"layer {entry['layer']} ({entry['type']})"
    if odd in (a, b):
        who = f"{odd} parts from {a if odd == b else b} "
    elif REFERENCE in (a, b):
        who = f"{a if b == REFERENCE else b} parts from {REFERENCE} "
    else:
        who = f"{a} and {b} part "
    return who + {
        "forward": f"at {where}, forward",
        "backward": f"at {where}, backward" + SATURATED.get(entry["type"], ""),
        "parameters": f"at {where}, in its parameter gradients (every layer's output and "
                      "dL/dx agree)",
        "state": f"at {where}, in its running statistics (every layer's output and dL/dx "
                 "agree)",
        "loss": "at the loss value (every layer's output and dL/dx agree)",
    }[entry["direction"]]
