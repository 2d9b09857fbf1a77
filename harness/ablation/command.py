"""`crossgrad pitfalls [NAME ...] [--json OUT]`: every pitfall proven alone, in one run.

Prints one row per pitfall (native and aligned divergence against the tolerance) and
exits 1 if a pitfall does not reproduce, or a native form listed as agreeing does not
agree: either is a finding about the framework or about crossgrad.
"""
from ..compare.pitfalls import AGREE, BY_NAME
from ..errors import EXIT_DISAGREE, EXIT_OK, InputError
from ..options import (Progress, check_execution, claim_outputs, make_executor,
                       refuse_unused, repeated, tables_stream)
from ..report.tables import fmt, render
from ..run import manifest
from ..run.execute import frameworks_to_run
from ..run.outputs import write_json
from . import measure


LIST_IGNORES = ["--json", "--executor", "--ray-address", "--workers", "--threads", "--timeout",
                "--max-memory"]


def cmd_pitfalls(args):
    check_execution(args)
    unknown = [n for n in args.names if n not in BY_NAME]
    if unknown:
        raise InputError("pitfalls", unknown[0],
                         "no such pitfall (`crossgrad pitfalls --list` names them)")
    if repeated(args.names) is not None:  # as every list of names: a typo, not a wish
        raise InputError("pitfalls", repeated(args.names), "named twice; name each pitfall once")
    names, missing = frameworks_to_run(args.frameworks)  # a framework asked for must import
    chosen = measure.select(args.names, names)
    if not chosen:
        raise InputError("--frameworks", ",".join(names),
                         "none of the pitfalls asked for belongs to these frameworks")
    left_out = [p for p in measure.select(args.names) if p not in chosen]
    if args.names and args.frameworks and left_out:  # both asked for: one cannot be had
        raise InputError("--frameworks", ",".join(names),
                         f"{left_out[0].name} is a {left_out[0].framework} pitfall; add "
                         f"{left_out[0].framework} or leave the pitfall out")
    if args.list:
        # it names the pitfalls and runs nothing: what would write or run has no effect
        refuse_unused(args, "with --list, which runs nothing", LIST_IGNORES)
        print(render(["pitfall", "framework", "what"],
                     [[p.name, p.framework, p.what] for p in chosen]))
        return EXIT_OK
    outputs = claim_outputs(args, files=["--json"])
    started = manifest.now()
    planned, jobs = measure.plan(chosen)
    with make_executor(args) as executor:
        rows = measure.finish(planned, jobs, executor, Progress(len(jobs), args.quiet))
        said = executor.hellos
    out = tables_stream(outputs)
    print(table(rows), file=out)
    print(footer(rows, measure.select(args.names, list(missing))), file=out)
    if args.json:
        info = manifest.build([spec for _, _, spec, _, _ in planned], args.executor,
                              args.threads, started, said)
        write_json(outputs["--json"], document(rows, info))
    return EXIT_OK if all(proven(r) for r in rows) else EXIT_DISAGREE


def document(rows, info):
    """The --json document: {"pitfalls": [...], "agree": [...], "manifest": {...}}."""
    agree = {p.name for p in AGREE}
    return {"pitfalls": [r for r in rows if r["name"] not in agree],
            "agree": [r for r in rows if r["name"] in agree], "manifest": info}


def proven(row):
    return row.get("reproduced", row.get("agrees"))


def verdict(row):
    if row.get("error"):
        return "FAILED"
    if "agrees" in row:
        return "agrees" if row["agrees"] else "DIFFERS"
    return "REPRODUCED" if row["reproduced"] else "NOT REPRODUCED"


def table(rows):
    return render(["pitfall", "framework", "measure", "native", "aligned", "tolerance", "result"],
                  [[r["name"], r["framework"], r["measure"], fmt(r["naive_divergence"]),
                    fmt(r["aligned_divergence"]), fmt(r["tolerance"]), verdict(r)]
                   for r in rows])


def footer(rows, skipped=()):
    pitfalls = [r for r in rows if "reproduced" in r]
    agree = [r for r in rows if "agrees" in r]
    parts = [f"{len(pitfalls)} pitfalls: {sum(r['reproduced'] for r in pitfalls)} reproduced "
             "(native beyond the tolerance, aligned within it, in this run)"]
    if agree:
        parts.append(f"{len(agree)} native forms that agree: {sum(r['agrees'] for r in agree)} "
                     "within the tolerance")
    lines = [f"  {r['name']}: {r['error']}" for r in rows if r.get("error")]
    if skipped:
        lines.append(f"  skipped {len(skipped)} of frameworks not installed: "
                     + ", ".join(p.name for p in skipped))
    return "\n".join(lines + ["; ".join(parts)])


def add_pitfalls_args(p):
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="pitfalls to run (default: every one; --list names them)")
    p.add_argument("--list", action="store_true",
                   help="name the pitfalls, run nothing (--json and the execution options, "
                        "but --frameworks and --quiet, are refused)")
    p.add_argument("--json", metavar="OUT",
                   help="write the rows as JSON (schema: crossgrad schema pitfalls); '-': to "
                        "stdout, and the table to stderr")
