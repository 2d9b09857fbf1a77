"""What `crossgrad explain` prints: a layer type in full as text, or a summary of the rest.

The text says what the pages say, in reading order instead of side by side: the math,
each framework's code, the layout lines, the measured agreement.
"""
import textwrap

from .. import registry
from ..report.mistakes import form_text as form_line
from ..report.tables import fmt, render
from ..spec import DTYPES
from . import agreement, equations, source
from .measure import examples_of

RULE = "-" * 78


def layer(layer_type, measured):
    out = [layer_type, f"  forward   {source.docstring_line(registry.REFERENCE, layer_type)}"]
    back = equations.backward(layer_type)
    out += [f"  backward  {back[0]}", *[f"            {line}" for line in back[1:]], ""]
    for fw in registry.ORDER:
        label = registry.FRAMEWORKS[fw].label
        out += [RULE, f"{label}: {source.shown_path(source.impl_file(fw, 'layers'))}",
                textwrap.indent(source.docstring_rest(fw, layer_type), "  "), ""]
        out += [_snippet(s) for s in source.builder(fw, layer_type)]
    out += [RULE, "Layout conversions (layout.py)"]
    for fw in registry.ORDER:
        out += [f"{registry.FRAMEWORKS[fw].label}:"] + [_snippet(s) for s in
                                                         source.layout(fw, layer_type)]
    out += [RULE, layer_agreement(layer_type, measured)]
    return "\n".join(out)


def _snippet(s):
    return f"  # {s.path}:{s.line}\n{textwrap.indent(s.text, '  ')}\n"


def layer_agreement(layer_type, measured):
    out = [f"Measured agreement ({agreement.TOLERANCES})"]
    for name in examples_of(layer_type):
        rows = []
        for dtype in DTYPES:
            entry = measured.layers.get(name, {}).get(dtype)
            if entry is None:
                continue
            rows += [[dtype, f"{r['pair'][0]} vs {r['pair'][1]}", r["layer"], fmt(r["forward"]),
                      fmt(r["backward"]), fmt(r["params"]), "PASS" if r["passed"] else "FAIL"]
                     for r in agreement.layer_rows(layer_type, entry)]
            fd = agreement.layer_fd(layer_type, entry)
            if fd:
                rows.append([dtype, "finite differences", "", "", "", fmt(fd[0]),
                             "PASS" if fd[2] else "FAIL"])
        out += [f"example {name}:", render(["dtype", "pair", "layer", "output", "dL/dx",
                                            "parameters", "result"], rows)]
    return "\n".join(out)


def summary(layer_types, models, measured):
    """The index as text: each layer type's worst error, each model's verdicts, the mistakes."""
    out = []
    if layer_types:
        rows = []
        for t in layer_types:
            s = agreement.layer_summary(t, measured)
            rows.append([t, *[fmt(s[d][0]) if d in s else "-" for d in DTYPES],
                         "PASS" if s and all(ok for _, ok in s.values()) else "FAIL"])
        out.append(render(["layer", *[f"worst {d}" for d in DTYPES], "result"], rows))
    if models:
        rows = []
        for name in models:
            got = measured.models.get(name, {})
            rows.append([name, *[agreement.check_rows(got["check"][d])["result"]
                                 if d in got.get("check", {}) else "-" for d in DTYPES],
                         *[agreement.train_rows(got["train"][d])["result"]
                           if d in got.get("train", {}) else "-" for d in DTYPES]])
        out.append(render(["model", *[f"check {d}" for d in DTYPES],
                           *[f"train {d}" for d in DTYPES]], rows))
    if measured.mistakes is not None:
        out.append(mistakes(measured.mistakes))
    out.append(f"{measured.how} Took {measured.seconds:.0f} s.")
    return "\n\n".join(out)


def mistakes(entries):
    rows = [[e["name"], e["framework"], form_line(e["wrong"]), form_line(e["right"]),
             "caught" if e["caught"] else "NOT CAUGHT"] for e in entries]
    caught = sum(e["caught"] for e in entries)
    return (render(["mistake", "framework", "wrong form", "right form", "result"], rows)
            + f"\n{caught} of {len(entries)} mistakes caught ({agreement.TOLERANCES})")
