"""`crossgrad explain NAME ... [--out DIR] [--results DIR]`: the pages, and the text of one layer.

NAME is a layer type (`lstm`), a zoo model (`mlp_3_4_2`), `mistakes` (the gallery) or
`all` (every layer type, every zoo model and the gallery). The pages go to --out
(default reports/explain), a folder crossgrad owns like a report's (run/ownership.py);
one layer type alone is also printed as text, anything else as a summary.
"""
from ..errors import EXIT_DISAGREE, EXIT_OK, InputError
from ..options import Progress, check_execution, check_memory, make_executor, repeated
from ..run.atomic import atomic_dir
from ..run.ownership import claim_folder, overlap
from ..spec import zoo_names, zoo_spec
from . import equations, measure, pages, text
from .agreement import check_rows, layer_summary, train_rows

DEFAULT_OUT = "reports/explain"


def add_explain_args(p):
    p.add_argument("names", nargs="+", metavar="NAME",
                   help="a layer type (lstm), a zoo model (mlp_3_4_2), 'mistakes', or 'all'")
    p.add_argument("--out", metavar="DIR", default=DEFAULT_OUT,
                   help=f"the folder of HTML pages (default: {DEFAULT_OUT})")
    p.add_argument("--results", metavar="DIR",
                   help="read the zoo models' numbers from this report folder (made by "
                        "`crossgrad run --out DIR`) instead of checking and training them")


def resolve(names):
    """-> (layer types, zoo models, whether the gallery is asked for), each in catalog order."""
    types, models, gallery = set(), set(), False
    if repeated(names) is not None:  # as every list of names: a typo, not a wish
        raise InputError("explain", repeated(names), "named twice; name each once")
    for name in names:
        if name == "all":
            types |= set(equations.LAYER_TYPES)
            models |= set(zoo_names())
            gallery = True
        elif name == "mistakes":
            gallery = True
        elif name in equations.LAYER_TYPES:
            types.add(name)
        elif name in zoo_names():
            models.add(name)
        else:
            raise InputError("explain", name,
                             "neither a layer type, a zoo model, 'mistakes' nor 'all'; layer "
                             f"types: {', '.join(equations.LAYER_TYPES)}; zoo models: "
                             f"{', '.join(zoo_names())}")
    return ([t for t in equations.LAYER_TYPES if t in types],
            [m for m in zoo_names() if m in models], gallery)


def cmd_explain(args):
    check_execution(args)
    layer_types, models, gallery = resolve(args.names)
    if args.results and not models:
        raise InputError("--results", args.results, "reads zoo models' numbers; name a zoo "
                                                    "model (or all)")
    out = claim_out(args)
    given = measure.from_report(args.results, models) if args.results else None
    specs = {name: zoo_spec(name) for name in models}
    check_memory([*specs.values(), *(measure.example_spec(n, "float64")
                                     for n in measure.example_names(layer_types))],
                 args, training=True)
    total = measure.job_count(layer_types, models, gallery, args.results, args.frameworks)
    with make_executor(args) as executor:
        measured = measure.run(layer_types, models, gallery, frameworks=args.frameworks,
                               executor=executor, progress=Progress(total, args.quiet),
                               given=given)
    built = pages.build(layer_types, models, specs, measured,
                        measured.gallery if gallery else None)
    if len(layer_types) == 1 and not models and not gallery:
        print(text.layer(layer_types[0], measured) + "\n")
    else:
        print(text.summary(layer_types, models, measured) + "\n")
    for m in measured.skipped:
        print(f"not measured: mistake {m.name} ({m.framework} is not among --frameworks)")
    with atomic_dir(out, "explain", "--out") as tmp:
        for name, body in built.items():
            (tmp / name).write_text(body)
    print(f"pages: {out}/index.html")
    return EXIT_OK if agrees(layer_types, models, measured) else EXIT_DISAGREE


def claim_out(args):
    """--out, claimed for explain pages (a report there is not replaced by pages), apart from
    the report --results reads: the pages would replace it, or be written into it."""
    if args.results and overlap(args.out, args.results):
        raise InputError("--out", None, "overlaps --results (the same path, or one inside the "
                                        "other); choose paths apart")
    return claim_folder(args.out, "--out", "explain")


def agrees(layer_types, models, measured):
    """Every layer type within tolerance, every model passing, every mistake caught. A
    check or training with nothing compared (UNCHECKED: NumPy alone) disagreed with
    nothing; PASS* is a pass (rounding amplified)."""
    passing = ("PASS", "PASS*", "UNCHECKED")
    layers_ok = all(ok for t in layer_types for _, ok in layer_summary(t, measured).values())
    models_ok = all(check_rows(e)["result"] in passing for m in models
                    for e in measured.models.get(m, {}).get("check", {}).values()) and \
        all(train_rows(e)["result"] in passing for m in models
            for e in measured.models.get(m, {}).get("train", {}).values())
    caught = all(e["caught"] for e in measured.mistakes or [])
    return layers_ok and models_ok and caught
