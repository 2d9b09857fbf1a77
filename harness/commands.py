"""What each `crossgrad` sub-command does; shared options live in options.py."""
from pathlib import Path

from . import api
from .errors import EXIT_DISAGREE, EXIT_OK, InputError
from .options import (Progress, add_dtype, add_execution, add_models, check_output_path,
                      collect_specs, make_executor)
from .report import tables
from .report.write import write_report
from .run import manifest
from .run.cache import ResultCache
from .run.execute import frameworks_to_run
from .run.outputs import save_arrays, write_json
from .spec import DTYPES, OPTIMIZERS, zoo_names, zoo_spec


def cmd_check(args):
    specs = collect_specs(args, [args.dtype])
    check_output_path(args.json, "file")
    check_output_path(args.save, "folder")
    names, _ = frameworks_to_run(args.frameworks)
    started = manifest.now()
    prepared = api.prepare(specs)
    with make_executor(args) as executor:
        result = api.check(specs, frameworks=args.frameworks, executor=executor,
                           prepared=prepared,
                           on_result=Progress(len(specs) * len(names), args.quiet))
        said = executor.hellos
    print(tables.check_table(result.models))
    print(tables.check_footer(result.models))
    if args.json:
        info = manifest.build(specs, args.executor, args.threads, started, said)
        write_json(args.json, dict(result.to_json(), manifest=info))
    if args.save:
        save_arrays(args.save, result.saved, "check")
    return EXIT_OK if result.passed else EXIT_DISAGREE


def add_check_outputs(p):
    p.add_argument("--json", metavar="OUT", help="write the results as JSON (schema in README)")
    p.add_argument("--save", metavar="DIR", help="write params, batch and gradients as .npz")


def cmd_zoo(args):
    for name in zoo_names():
        spec = zoo_spec(name)
        print(f"{name:18s} {spec.reproduces or spec.description}")
    return EXIT_OK


def cmd_train(args):
    specs = collect_specs(args, [args.dtype], **{"train.steps": args.steps})
    for path, what in ((args.json, "file"), (args.save, "folder"), (args.out, "folder")):
        check_output_path(path, what)
    names, _ = frameworks_to_run(args.frameworks)
    started = manifest.now()
    prepared = api.prepare(specs)
    with make_executor(args) as executor:
        result = api.train(specs, frameworks=args.frameworks, native=args.native_defaults,
                           executor=executor,
                           prepared=prepared,
                           on_result=Progress(len(specs) * len(names), args.quiet))
        said = executor.hellos
    print(tables.train_table(result.models))
    print(tables.train_footer(result.models))
    info = manifest.build(specs, args.executor, args.threads, started, said)
    if args.json:
        write_json(args.json, dict(result.to_json(), manifest=info))
    if args.save:
        save_arrays(args.save, result.saved, "train")
    if args.out:
        write_report(args.out, specs, aligned=None if args.native_defaults else result,
                     native=result if args.native_defaults else None, manifest=info)
        print(f"report: {Path(args.out) / 'report.html'}")
    return EXIT_OK if result.passed else EXIT_DISAGREE


def add_train_options(p):
    p.add_argument("--steps", type=int, help="override every spec's train.steps")
    p.add_argument("--native-defaults", action="store_true",
                   help="each framework's own optimizer/loss defaults instead of the aligned math")
    p.add_argument("--out", metavar="DIR", help="write a report folder (manifest, CSV, plots)")


def cmd_run(args):
    """The main job: check and train every model in both dtypes, then write the report."""
    dtypes = [args.dtype] if args.dtype else list(DTYPES)
    specs = collect_specs(args, dtypes, **{"train.steps": args.steps})
    check_output_path(args.out, "folder")
    names, _ = frameworks_to_run(args.frameworks)
    native_specs = [] if args.skip_native else [s for s in specs if s.dtype == "float64"]
    started = manifest.now()
    prepared = api.prepare(specs)
    cache = ResultCache(Path(args.out).parent / ".crossgrad-cache", reuse=args.resume)
    progress = Progress(len(names) * (2 * len(specs) + len(native_specs)), args.quiet)
    with make_executor(args) as executor:
        shared = dict(frameworks=args.frameworks, executor=executor, on_result=progress,
                      cache=cache)
        check = api.check(specs, prepared=prepared, **shared)
        aligned = api.train(specs, prepared=prepared, **shared)
        native = api.train(native_specs, native=True, prepared=[
            p for p in prepared if p[0] in native_specs], **shared) if native_specs else None
        said = executor.hellos
    print(tables.check_table(check.models))
    print(tables.check_footer(check.models))
    print()
    print(tables.train_table(aligned.models + (native.models if native else [])))
    print(tables.train_footer(aligned.models + (native.models if native else [])))
    info = manifest.build(specs, args.executor, args.threads, started, said)
    write_report(args.out, specs, check, aligned, native, info)
    print(f"\nreport: {Path(args.out) / 'report.html'} (and report.md, CSV tables, manifest.json)")
    return EXIT_OK if check.passed and aligned.passed else EXIT_DISAGREE


def add_run_options(p):
    p.add_argument("--steps", type=int, help="override every spec's train.steps")
    p.add_argument("--out", metavar="DIR", default="reports/latest",
                   help="the report folder (default: reports/latest)")
    p.add_argument("--resume", action="store_true",
                   help="reuse results of an earlier or interrupted run with the same key")
    p.add_argument("--skip-native", action="store_true",
                   help="leave out the native-defaults training")


def cmd_diff(args):
    from .report.diff import diff_reports, render
    changes = diff_reports(args.run_a, args.run_b)
    print(render(changes, args.run_a, args.run_b))
    return EXIT_DISAGREE if any(c["beyond_tolerance"] for c in changes) else EXIT_OK


def add_diff_args(p):
    p.add_argument("run_a", metavar="RUN_A", help="a report folder (crossgrad run --out)")
    p.add_argument("run_b", metavar="RUN_B", help="another report folder")


def _sweep_specs(args):
    from .sweep import parse_seeds, variants
    dtypes = [d.strip() for d in args.dtypes.split(",")]
    bad = [d for d in dtypes if d not in DTYPES]
    if bad:
        raise InputError("--dtypes", bad[0], f"choose from {', '.join(DTYPES)}")
    optimizers = [o.strip() for o in args.optimizers.split(",")] if args.optimizers else []
    unknown = [o for o in optimizers if o not in OPTIMIZERS]
    if unknown:
        raise InputError("--optimizers", unknown[0], f"choose from {', '.join(OPTIMIZERS)}")
    base = collect_specs(args, dtypes, **{"train.steps": args.steps})
    return variants(base, parse_seeds(args.seeds), optimizers)


def _run_sweep(specs, args, executor, quiet):
    names, _ = frameworks_to_run(args.frameworks)
    progress = Progress(2 * len(specs) * len(names), quiet)
    prepared = api.prepare(specs)
    shared = dict(frameworks=args.frameworks, executor=executor, on_result=progress,
                  prepared=prepared)
    check = api.check(specs, **shared)
    train = api.train(specs, **shared)
    return check, train


def cmd_sweep(args):
    specs = _sweep_specs(args)
    check_output_path(args.json, "file")
    started = manifest.now()
    with make_executor(args) as executor:
        check, train = _run_sweep(specs, args, executor, args.quiet)
        said = executor.hellos
    from .sweep import digest
    rows = sweep_rows(check, train)
    print(tables.render(["model", "dtype", "check worst", "curve worst", "result"], rows))
    failed = sum(r[-1] == "FAIL" for r in rows)
    print(f"{len(rows)} variants: {len(rows) - failed} agree, {failed} do not")
    results = [r for m in check.saved.values() for r in m[1].values()] + \
              [r for m in train.saved.values() for r in m[1].values()]
    print(f"digest of every result: {digest(results)}")
    if args.json:
        write_json(args.json, {"check": check.to_json(), "train": train.to_json(),
                               "digest": digest(results),
                               "manifest": manifest.build(specs, args.executor, args.threads,
                                                          started, said)})
    return EXIT_OK if check.passed and train.passed else EXIT_DISAGREE


def sweep_rows(check, train):
    rows = []
    for c, t in zip(check.models, train.models):
        worst_grad = max((r["rel_err"] for r in c["comparisons"]), default=0.0)
        worst_curve = max((i.get("max_rel_diff") or 0.0 for i in t["frameworks"].values()),
                          default=0.0)
        ok = c["passed"] and t["passed"]
        rows.append([c["name"], c["dtype"], tables.fmt(worst_grad), tables.fmt(worst_curve),
                     "PASS" if ok else "FAIL"])
    return rows


def add_sweep_options(p):
    p.add_argument("--seeds", default="0", help="e.g. 0-9, or 0,3,5")
    p.add_argument("--optimizers", help=f"comma-separated subset of {','.join(OPTIMIZERS)}")
    p.add_argument("--dtypes", default="float64", help="comma-separated: float64,float32")
    p.add_argument("--steps", type=int, help="override every spec's train.steps")
    p.add_argument("--json", metavar="OUT", help="write every result and the digest as JSON")


def cmd_bench(args):
    """The same sweep with 1, 2, ... workers: wall time, speed-up, and whether the bits match."""
    import time
    from .sweep import digest
    specs = _sweep_specs(args)
    counts = [int(n) for n in args.workers_list.split(",")]
    rows, first = [], None
    for n in counts:
        args.workers = n
        start = time.monotonic()
        with make_executor(args) as executor:
            check, train = _run_sweep(specs, args, executor, True)
        wall = time.monotonic() - start
        results = [r for res in (check, train) for m in res.saved.values() for r in m[1].values()]
        busy = sum(r.get("seconds") or 0.0 for r in results)
        first = first or (wall, digest(results))
        rows.append([n, len(results), f"{wall:.1f}", f"{busy:.1f}", f"{first[0] / wall:.2f}x",
                     "yes" if digest(results) == first[1] else "NO"])
    print(f"sweep: {len(specs)} variants x {len(results) // max(1, len(specs))} jobs each, "
          f"executor {args.executor}, {args.threads} thread(s) per worker")
    print(tables.render(["workers", "jobs", "wall s", "busy s", "speed-up", "same bits"], rows))
    return EXIT_OK


def add_bench_options(p):
    add_sweep_options(p)
    p.add_argument("--workers-list", default="1,2", help="worker counts to time, e.g. 1,2")


# name -> (function, help, argument adders), in the order `crossgrad --help` lists them
COMMANDS = {
    "check": (cmd_check, "compare losses and gradients across frameworks and with finite "
                         "differences", [add_models, add_dtype, add_execution, add_check_outputs]),
    "train": (cmd_train, "train every model in every framework and compare the loss curves",
              [add_models, add_dtype, add_execution, add_check_outputs, add_train_options]),
    "run": (cmd_run, "the main job: check and train the zoo (or the given specs) in both "
                     "dtypes and write a report", [add_models, add_dtype, add_execution,
                                                   add_run_options]),
    "diff": (cmd_diff, "compare two report folders and say what changed beyond tolerance",
             [add_diff_args]),
    "sweep": (cmd_sweep, "models x seeds x optimizers x dtypes as independent jobs",
              [add_models, add_execution, add_sweep_options]),
    "bench": (cmd_bench, "time a sweep with 1, 2, ... workers (prints figures; not a test)",
              [add_models, add_execution, add_bench_options]),
    "zoo": (cmd_zoo, "list the built-in specs and the classic examples they reproduce", []),
}
