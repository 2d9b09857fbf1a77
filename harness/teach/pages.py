"""The explain pages: one per layer type, one per zoo model, the mistakes gallery, the index.

A layer page reads, top to bottom: the forward equation (the builders' shared first
docstring line), the backward math, the four implementations side by side (each
builder and what it uses, read from impls/*/layers.py now), the lines of each layout.py
that convert the layer's parameters, and the agreement measured on its example spec.
"""
from importlib import resources

from .. import registry
from ..report.tables import fmt
from ..spec import DTYPES, examples
from ..spec.parse import ZOO
from . import agreement, equations, gallery, source, text
from .markup import code, columns, curves_svg, esc, inline, link, page, snippet, table
from .measure import examples_of

FILES = {"layer": "layer-{}.html", "model": "model-{}.html"}


def layer_file(layer_type):
    return FILES["layer"].format(layer_type)


def model_file(name):
    return FILES["model"].format(name)


def label(fw):
    return registry.FRAMEWORKS[fw].label


# ---- a layer type ---------------------------------------------------------------------------

def layer_page(layer_type, measured, frameworks=registry.ORDER):
    eq = source.docstring_line(registry.REFERENCE, layer_type)
    body = [f"<h1>{esc(layer_type)}</h1>",
            "<p>Forward, with shapes (B the batch), the same first docstring line in the "
            "four <code>layers.py</code>:</p>", f"<p class='eq'>{esc(eq)}</p>",
            "<h2>Backward</h2><p>What the NumPy column writes by hand and the other three "
            "get from their automatic differentiation:</p>",
            f"<pre class='math'>{esc(chr(10).join(equations.backward(layer_type)))}</pre>",
            "<h2>Four implementations</h2>",
            "<p>Each framework's builder for this type and every class or function of its "
            "file it uses, read from the source when this page was written.</p>",
            columns([(f"{label(fw)}: {source.shown_path(source.impl_file(fw, 'layers'))}",
                      f"<p class='what'>{esc(source.docstring_rest(fw, layer_type))}</p>"
                      + "".join(snippet(s) for s in source.builder(fw, layer_type)))
                     for fw in frameworks]),
            "<h2>Layout conversions</h2>",
            "<p>The lines of each <code>layout.py</code> that hold for this type: the only "
            "place where a framework's parameter layout differs from the canonical one.</p>",
            columns([(f"{label(fw)}: {source.shown_path(source.impl_file(fw, 'layout'))}",
                      "".join(snippet(s) for s in source.layout(fw, layer_type)))
                     for fw in frameworks]),
            "<h2>Measured agreement</h2>", layer_agreement(layer_type, measured)]
    return page(f"{layer_type}: four implementations", "\n".join(body))


def layer_agreement(layer_type, measured):
    parts = [f"<p class='note'>{esc(measured.how)} Tolerances: {esc(agreement.TOLERANCES)}."
             "</p>"]
    for name in examples_of(layer_type):
        raw = examples.LAYERS[name]
        parts.append(f"<h3>Example <code>{esc(name)}</code>: "
                     f"{esc(', '.join(_layer_word(l) for l in raw['layers']))}; "
                     f"input {esc(raw['input_shape'])}, loss {esc(raw['loss']['type'])}</h3>")
        rows = []
        for dtype in DTYPES:
            entry = measured.layers.get(name, {}).get(dtype)
            if entry is None:
                continue
            for r in agreement.layer_rows(layer_type, entry):
                rows.append([dtype, f"{r['pair'][0]} vs {r['pair'][1]}", r["layer"],
                             fmt(r["forward"]), fmt(r["backward"]), fmt(r["params"]),
                             "PASS" if r["passed"] else "FAIL"])
            fd = agreement.layer_fd(layer_type, entry)
            whole = "PASS" if entry["passed"] else "FAIL"
            parts.append(f"<p>{esc(dtype)}: the whole example {whole}"
                         + (f"; finite differences of this layer's parameters: worst "
                            f"{fmt(fd[0])} over {fd[1]} probes, {'PASS' if fd[2] else 'FAIL'}"
                            if fd else "") + ".</p>")
        if rows:
            parts.append(table(["dtype", "pair", "layer", "output", "dL/dx",
                                "its parameters' gradients", "result"], rows,
                               numeric=(3, 4, 5)))
        else:
            parts.append("<p class='note'>Not a top-level layer of the example (inside a "
                         "residual block): its block's rows and the whole check speak for it."
                         "</p>")
    return "\n".join(parts)


def _layer_word(layer):
    keys = [f"{k}={v}" for k, v in layer.items() if k in ("units", "filters", "heads", "rate",
                                                          "pool_size", "dim")]
    inner = f" [{', '.join(_layer_word(s) for s in layer['layers'])}]" if "layers" in layer else ""
    return layer["type"] + (f"({', '.join(keys)})" if keys else "") + inner


# ---- a zoo model ----------------------------------------------------------------------------

def model_page(name, spec, measured, pages_of=()):
    """`pages_of`: the layer types that have a page beside this one, linked."""
    toml = (resources.files(ZOO) / f"{name}.toml").read_text()
    types = list(dict.fromkeys(examples.layer_types(spec.raw["layers"])))
    body = [f"<h1>{esc(name)}</h1>",
            f"<p class='why'>{esc(spec.reproduces or spec.description)}</p>",
            "<p>Layer types: " + ", ".join(
                link(t, layer_file(t))[1] if t in pages_of else esc(t) for t in types)
            + "</p>",
            "<h2>Gradient check</h2>", model_check(name, measured),
            "<h2>Training (aligned)</h2>", model_training(name, measured),
            "<h2>The spec</h2>",
            # a long spec (20 dense layers) stays folded under the numbers
            f"<details{' open' if toml.count(chr(10)) <= 60 else ''}><summary>"
            f"harness/spec/zoo/{esc(name)}.toml ({toml.count(chr(10))} lines)</summary>"
            f"{code(toml, 'toml')}</details>"]
    return page(f"{name}: the classic example and its numbers", "\n".join(body))


def model_check(name, measured):
    entries = measured.models.get(name, {}).get("check", {})
    if not entries:
        return "<p class='note'>Not measured.</p>"
    pairs = list(dict.fromkeys(p for e in entries.values() for p in agreement.check_rows(e)
                               ["pairs"]))
    rows = []
    for dtype, entry in sorted(entries.items(), key=lambda kv: DTYPES.index(kv[0])):
        r = agreement.check_rows(entry)
        rows.append([dtype, ", ".join(f"{registry.short(fw)} {s}" for fw, s in
                                      r["statuses"].items()),
                     *[fmt(r["pairs"].get(p)) for p in pairs], fmt(r["fd"]), r["result"]])
    return (f"<p class='note'>{esc(measured.how)} The worst relative error over the "
            f"gradient tensors of every pair; {esc(agreement.TOLERANCES)}.</p>"
            + table(["dtype", "frameworks", *[f"{registry.short(a)}~{registry.short(b)}"
                                              for a, b in pairs], "fin. diff.", "result"],
                    rows, numeric=tuple(range(2, 3 + len(pairs)))))


def model_training(name, measured):
    entries = measured.models.get(name, {}).get("train", {})
    if not entries:
        return "<p class='note'>Not trained.</p>"
    parts = []
    for dtype, entry in sorted(entries.items(), key=lambda kv: DTYPES.index(kv[0])):
        t = agreement.train_rows(entry)
        rows = [[r["framework"], r["status"], fmt(r["final_loss"]), fmt(r["max_rel_diff"]),
                 "-" if r["parted_at"] is None else r["parted_at"]] for r in t["rows"]]
        parts.append(f"<h3>{esc(dtype)}: {t['steps']} steps, {esc(t['result'])}</h3>"
                     + table(["framework", "status", "final loss",
                              f"max rel. diff. from {t['reference']}", "parts at"], rows,
                             numeric=(2, 3)))
        curves = measured.curves.get((name, dtype))
        if curves:
            parts.append(curves_svg(curves["loss"], title="loss") + " " + curves_svg(
                {fw: v for fw, v in curves["rel_diff"].items() if fw != t["reference"]},
                title=f"relative difference from {t['reference']}"))
    return "\n".join(parts)


# ---- the mistakes gallery -------------------------------------------------------------------

def mistakes_page(mistakes, entries):
    by_name = {e["name"]: e for e in entries}
    caught = sum(e["caught"] for e in entries)
    body = ["<h1>The mistakes gallery</h1>",
            f"<p class='why'>{caught} of {len(entries)} mistakes caught: each wrong form "
            "fails against finite differences and the frameworks, and its right form, next "
            "to it, passes.</p>",
            "<p>Backward formulas (NumPy, written by hand) are plugin layers put in place of "
            "one layer of a small network and run through <code>crossgrad check</code>: "
            "NumPy's gradient meets finite differences of its own forward and the gradients "
            "PyTorch, TensorFlow and JAX take of the same forward. Framework idioms take "
            "their gradients themselves and are compared with what <code>check</code> "
            "measures for the same network, weights and batch in every framework, and with "
            f"its finite differences. {esc(agreement.TOLERANCES)}.</p>",
            summary_table(mistakes, by_name)]
    for m in mistakes:
        body.append(mistake_section(m, by_name[m.name]))
    return page("The mistakes gallery", "\n".join(body))


def summary_table(mistakes, by_name):
    rows = []
    for m in mistakes:
        e = by_name[m.name]
        rows.append([link(m.name, f"#{m.name}"), m.kind, m.framework, e["network"],
                     text.form_line(e["wrong"]), text.form_line(e["right"]),
                     "caught" if e["caught"] else "NOT CAUGHT"])
    return table(["mistake", "kind", "framework", "network", "wrong form", "right form",
                  "result"], rows)


def mistake_section(m, e):
    wrong, right, shared = gallery.code(m)
    parts = [f"<h2 id='{esc(m.name)}'>{inline(m.title)}</h2>",
             f"<p class='why'>{inline(m.why)}</p>",
             f"<p class='note'>{esc(m.kind)} mistake in {esc(label(m.framework))}; network "
             f"<code>{esc(e['network'])}</code>; file {esc(e['file'])}</p>",
             columns([("wrong", "".join(snippet(s) for s in wrong)),
                      ("right", "".join(snippet(s) for s in right))])]
    if shared:
        parts.append("<p class='note'>Used by both:</p>" + "".join(snippet(s) for s in shared))
    refs = list(dict.fromkeys(a["reference"] for f in ("wrong", "right")
                              for a in e[f]["against"]))
    rows = []
    for f in ("wrong", "right"):
        form = e[f]
        against = {a["reference"]: a for a in form["against"]}
        cells = [f"{fmt(against[r]['rel_err'])} ({against[r]['param']})" if r in against else "-"
                 for r in refs]
        notes = "; ".join(filter(None, [form.get("error"),
                                        f"no gradient (None) for {', '.join(form['missing'])}"
                                        if form.get("missing") else None,
                                        _parting(form)]))
        rows.append([f, *cells, "PASS" if form["passed"] else "FAIL", notes or "-"])
    parts.append(table(["form", *[f"vs {r}" for r in refs], "result", "note"], rows,
                       numeric=tuple(range(1, 1 + len(refs)))))
    return "\n".join(parts)


def _parting(form):
    p = form.get("first_parting")
    if not p:
        return None
    return (f"{p['pair'][0]} and {p['pair'][1]} part first at layer {p['layer']} "
            f"({p['type']}), in its {p['direction']}")


# ---- the index ------------------------------------------------------------------------------

def index_page(layer_types, models, specs, measured, mistakes):
    body = ["<h1>crossgrad explain</h1>",
            "<p class='why'>Backpropagation by hand next to each framework's idiom: for every "
            "layer type, the math, then the NumPy forward and backward and the PyTorch, "
            "TensorFlow and JAX code side by side, read from the source files, with the "
            "agreement measured between them; for every zoo model, the classic example it "
            "reproduces and its numbers.</p>",
            f"<p class='note'>{esc(measured.how)} Took {measured.seconds:.0f} s.</p>"]
    if layer_types:
        rows = []
        for t in layer_types:
            s = agreement.layer_summary(t, measured)
            rows.append([link(t, layer_file(t)),
                         ("html", f"<code>{esc(source.docstring_line(registry.REFERENCE, t))}"
                                  "</code>"),
                         *[fmt(s[d][0]) if d in s else "-" for d in DTYPES],
                         "PASS" if s and all(ok for _, ok in s.values()) else
                         ("FAIL" if s else "-")])
        body += ["<h2>Layer types</h2>",
                 table(["layer", "forward", *[f"worst {d}" for d in DTYPES], "result"], rows,
                       numeric=(2, 3))]
    if models:
        rows = []
        for name in models:
            got = measured.models.get(name, {})
            check = [agreement.check_rows(e)["result"] for e in got.get("check", {}).values()]
            train = [agreement.train_rows(e)["result"] for e in got.get("train", {}).values()]
            rows.append([link(name, model_file(name)), specs[name].reproduces or
                         specs[name].description, _all(check), _all(train)])
        body += ["<h2>Zoo models</h2>",
                 table(["model", "reproduces", "check", "training"], rows)]
    if mistakes is not None:
        caught = sum(e["caught"] for e in mistakes)
        body += ["<h2>Mistakes</h2>",
                 f"<p>{link('The mistakes gallery', 'mistakes.html')[1]}: {caught} of "
                 f"{len(mistakes)} wrong backward formulas and framework idioms caught.</p>"]
    return page("crossgrad explain", "\n".join(body))


def _all(results):
    if not results:
        return "-"
    return "PASS" if all(r in ("PASS", "PASS*") for r in results) else "FAIL"


def build(layer_types, models, specs, measured, mistakes=None):
    """{file name: HTML} for everything asked for, and the index."""
    pages = {layer_file(t): layer_page(t, measured) for t in layer_types}
    pages.update({model_file(n): model_page(n, specs[n], measured, layer_types)
                  for n in models})
    if mistakes is not None:
        pages["mistakes.html"] = mistakes_page(mistakes, measured.mistakes)
    pages["index.html"] = index_page(layer_types, models, specs, measured, measured.mistakes)
    return pages
