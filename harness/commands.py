"""What each `crossgrad` sub-command does; shared options live in options.py.

Each command checks everything it was given (options, specs, outputs) before any work
starts, prints its tables, then writes its outputs (ownership.py says what it may replace).
"""
import importlib
import threading
from functools import partial
from pathlib import Path

from . import api
from .errors import EXIT_DISAGREE, EXIT_OK, InputError
from .options import (MOST_WORKERS_TYPE, Progress, add_dtype, add_execution, add_models,
                      check_execution, choice_list, claim_outputs, collect_specs,
                      make_executor, positive_int_list, refuse_unused, step_count,
                      tables_stream)
from .porting import add_import_args, cmd_import
from .compare.pairwise import worst
from .report import tables
from .ablation import causes
from .ablation.command import add_pitfalls_args, cmd_pitfalls
from .schemas import add_schema_args, cmd_schema
from .teach.command import add_explain_args, cmd_explain
from .teach.measure import job_count as gallery_jobs, measure_gallery
from .report.write import write_report
from .run import manifest
from .run.cache import ResultCache
from .run.execute import frameworks_to_run, job_count
from .run.executor import side_by_side
from .run.outputs import save_arrays, write_json
from .spec import DTYPES, OPTIMIZERS, zoo_names, zoo_spec
from .sweep import VARIANTS


def cmd_check(args):
    check_execution(args)
    specs = collect_specs(args, [args.dtype])
    if args.matmul_precision and all(s.dtype == "float64" for s in specs):
        raise InputError("--matmul-precision", None, "has no effect on a float64 check (it "
                         "sets float32 matmuls); add --dtype float32")
    outputs = claim_outputs(args, files=["--json"], folders=["--save"])
    names, _ = frameworks_to_run(args.frameworks)
    started = manifest.now()
    with make_executor(args) as executor:
        executor.start(names)  # their imports while the inputs are drawn, as in run
        prepared = api.prepare(specs)
        references = sum(api.needs_reference(s, args.matmul_precision) for s in specs)
        result = api.check(specs, frameworks=args.frameworks, executor=executor,
                           prepared=prepared, order=args.order,
                           matmul_precision=args.matmul_precision,
                           on_result=Progress(job_count(specs, names) + references, args.quiet))
        said = executor.hellos
    out = tables_stream(outputs)
    print(tables.check_table(result.models), file=out)
    print(tables.check_footer(result.models), file=out)
    if any("precision" in m for m in result.models):
        print("\n" + tables.precision_table(result.models), file=out)
    outputs = claim_outputs(args, files=["--json"], folders=["--save"])  # again: as in train
    if args.json:
        info = manifest.build(specs, args.executor, args.threads, started, said)
        write_json(outputs["--json"], dict(result.to_json(), manifest=info))
    if args.save:
        save_arrays(outputs["--save"], result.saved, "check")
    return EXIT_OK if result.passed else EXIT_DISAGREE


def add_check_options(p):
    p.add_argument("--order", type=int, choices=(1, 2), default=1,
                   help="2: also Hessian-vector products along the finite-difference probes, "
                        "every pair and each against differences of its own gradient (float64)")
    p.add_argument("--matmul-precision", choices=("highest", "default"),
                   help="full-precision matmuls (crossgrad's pin) or each framework's default; "
                        "either way a float32 check is then also compared with float64")


def add_check_outputs(p):
    p.add_argument("--json", metavar="OUT",
                   help="write the results as JSON (schema in README); '-': to stdout, and the "
                        "tables to stderr")
    p.add_argument("--save", metavar="DIR", help="write params, batch and gradients as .npz")


def cmd_zoo(args):
    for name in zoo_names():
        spec = zoo_spec(name)
        print(f"{name:18s} {spec.reproduces or spec.description}")
    return EXIT_OK


def cmd_train(args):
    check_execution(args)
    specs = collect_specs(args, [args.dtype], **{"train.steps": args.steps})
    outputs = claim_outputs(args, files=["--json"], folders=["--save", "--out"])
    names, _ = frameworks_to_run(args.frameworks)
    started = manifest.now()
    with make_executor(args) as executor:
        executor.start(names)  # their imports while the inputs are drawn, as in run
        prepared = api.prepare(specs)
        result = api.train(specs, frameworks=args.frameworks, native=args.native_defaults,
                           executor=executor,
                           prepared=prepared,
                           on_result=Progress(job_count(specs, names), args.quiet))
        said = executor.hellos
    out = tables_stream(outputs)
    print(tables.train_table(result.models), file=out)
    print(tables.train_footer(result.models), file=out)
    info = manifest.build(specs, args.executor, args.threads, started, said)
    # again, before any is written: an output that became someone else's during the run
    # (a folder made there) is refused now, not after the others are written
    outputs = claim_outputs(args, files=["--json"], folders=["--save", "--out"])
    if args.json:
        write_json(outputs["--json"], dict(result.to_json(), manifest=info))
    if args.save:
        save_arrays(outputs["--save"], result.saved, "train")
    if args.out:
        write_report(outputs["--out"], specs, aligned=None if args.native_defaults else result,
                     native=result if args.native_defaults else None, manifest=info)
        print(f"report: {Path(args.out) / 'report.html'}", file=out)
    return EXIT_OK if result.passed else EXIT_DISAGREE


def add_train_options(p):
    p.add_argument("--steps", type=step_count, help="override every spec's train.steps")
    p.add_argument("--native-defaults", action="store_true",
                   help="each framework's own optimizer/loss defaults instead of the aligned math")
    p.add_argument("--out", metavar="DIR", help="write a report folder (manifest, CSV, plots)")


def cmd_run(args):
    """The main job: check and train every model in both dtypes, then write the report."""
    check_execution(args)
    dtypes = [args.dtype] if args.dtype else list(DTYPES)
    specs = collect_specs(args, dtypes, **{"train.steps": args.steps})
    outputs = claim_outputs(args, folders=["--out"])
    names, _ = frameworks_to_run(args.frameworks)
    native_specs = [] if args.skip_native else [s for s in specs if s.dtype == "float64"]
    started = manifest.now()
    with make_executor(args) as executor:
        executor.start(names)  # their imports while the inputs are drawn
        report = _importing(f"{__package__}.report.content")  # with matplotlib: 0.6 s
        native, aligned, check, gallery = _run_phases(args, specs, names, native_specs,
                                                      executor)
        said = executor.hellos
    causes.discount(native, aligned)  # a framework failing aligned: its defaults not blamed
    report.join()  # before the report forks its drawing processes
    print(tables.check_table(check.models))
    print(tables.check_footer(check.models))
    print()
    print(tables.train_table(aligned.models + (native.models if native else [])))
    print(tables.train_footer(aligned.models + (native.models if native else [])))
    info = manifest.build(specs, args.executor, args.threads, started, said)
    mistakes = gallery[2] if gallery else None
    missed = [m["name"] for m in mistakes or [] if not m["caught"]]
    if mistakes is not None:
        print(f"mistakes gallery: {len(mistakes) - len(missed)} of {len(mistakes)} caught"
              + (f"; not caught: {', '.join(missed)}" if missed else ""))
        for m in gallery[1]:  # as explain says it
            print(f"not measured: mistake {m.name} ({m.framework} is not among --frameworks)")
    write_report(outputs["--out"], specs, check, aligned, native, info, mistakes)
    print(f"\nreport: {Path(args.out) / 'report.html'} (and report.md, CSV tables, manifest.json)")
    return EXIT_OK if check.passed and aligned.passed and not missed else EXIT_DISAGREE


def _importing(module):
    """-> a thread importing `module` now, while the jobs run, rather than after them, when
    the report waits for it. A failure is left to the import where the module is used."""
    def load():
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 (said again, with its traceback, where it is used)
            pass
    thread = threading.Thread(target=load, name="importing " + module, daemon=True)
    thread.start()
    return thread


def _run_phases(args, specs, names, native_specs, executor):
    """The main job's phases side by side: -> (native, aligned, check, mistakes) results;
    mistakes as measure_gallery gives them (measured, left out, entries), or None."""
    prepared = api.prepare(specs)
    cache = ResultCache(reuse=args.resume)
    progress = Progress(2 * job_count(specs, names) + job_count(native_specs, names)
                        + (gallery_jobs([], [], True, None, args.frameworks)
                           if args.mistakes else 0), args.quiet)
    shared = dict(frameworks=args.frameworks, on_result=progress, cache=cache)
    native_prepared = [p for p in prepared if p[0] in native_specs]
    phases = [  # side by side, in this priority: the native runs first, because the
        # single-pitfall runs that explain their partings can start only after them
        lambda ex: api.train(native_specs, native=True, prepared=native_prepared,
                             executor=ex, aligned_known=True, **shared) if native_specs else None,
        lambda ex: api.train(specs, prepared=prepared, executor=ex, **shared),
        lambda ex: api.check(specs, prepared=prepared, executor=ex, **shared),
        lambda ex: measure_gallery(args.frameworks, ex, progress) if args.mistakes else None]
    return side_by_side(executor, phases)


def add_run_options(p):
    p.add_argument("--steps", type=step_count, help="override every spec's train.steps")
    p.add_argument("--out", metavar="DIR", default="reports/latest",
                   help="the report folder (default: reports/latest)")
    p.add_argument("--resume", action="store_true",
                   help="reuse results of an earlier or interrupted run with the same key "
                        "(kept in $XDG_CACHE_HOME/crossgrad, default ~/.cache/crossgrad)")
    p.add_argument("--skip-native", action="store_true",
                   help="leave out the native-defaults training")
    p.add_argument("--mistakes", action="store_true",
                   help="also measure the mistakes gallery (crossgrad explain mistakes) and "
                        "add its section to the report")


def cmd_diff(args):
    from .report.diff import diff_reports, render
    changes = diff_reports(args.run_a, args.run_b)
    print(render(changes, args.run_a, args.run_b))
    return EXIT_DISAGREE if any(c["beyond_tolerance"] for c in changes) else EXIT_OK


def add_diff_args(p):
    p.add_argument("run_a", metavar="RUN_A", help="a report folder (crossgrad run --out)")
    p.add_argument("run_b", metavar="RUN_B", help="another report folder")


def _sweep_specs(args):
    from .sweep import check_count, parse_seeds, variants
    check_execution(args)
    # every variant takes its seed from --seeds: --seed would be overridden silently
    refuse_unused(args, "in a sweep, whose seeds are --seeds (e.g. --seeds 3)", ["--seed"])
    seeds = parse_seeds("0" if args.seeds is None else args.seeds)
    optimizers = args.optimizers or []
    base = collect_specs(args, args.dtypes or ["float64"], **{"train.steps": args.steps})
    check_count(base, seeds, optimizers)
    return variants(base, seeds, optimizers)


def _run_sweep(specs, args, executor, quiet):
    names, _ = frameworks_to_run(args.frameworks)
    progress = Progress(2 * job_count(specs, names), quiet)
    prepared = api.prepare(specs)
    shared = dict(frameworks=args.frameworks, executor=executor, on_result=progress,
                  prepared=prepared)
    check = api.check(specs, **shared)
    train = api.train(specs, **shared)
    return check, train


def cmd_sweep(args):
    specs = _sweep_specs(args)
    outputs = claim_outputs(args, files=["--json"])
    started = manifest.now()
    with make_executor(args) as executor:
        check, train = _run_sweep(specs, args, executor, args.quiet)
        said = executor.hellos
    from .sweep import digest
    out = tables_stream(outputs)
    rows = sweep_rows(check, train)
    print(tables.render(["model", "dtype", "check worst", "curve worst", "result"], rows),
          file=out)
    failed, idle = (sum(r[-1] == verdict for r in rows) for verdict in ("FAIL", "UNCHECKED"))
    print(f"{len(rows)} variants: {len(rows) - failed - idle} agree, {failed} do not"
          + (f", {idle} unchecked (nothing compared)" if idle else ""), file=out)
    results = [r for m in check.saved.values() for r in m[1].values()] + \
              [r for m in train.saved.values() for r in m[1].values()]
    print(f"digest of every result: {digest(results)}", file=out)
    if args.json:
        write_json(outputs["--json"], {"check": check.to_json(), "train": train.to_json(),
                                       "digest": digest(results),
                                       "manifest": manifest.build(specs, args.executor,
                                                                  args.threads, started, said)})
    return EXIT_OK if check.passed and train.passed else EXIT_DISAGREE


def sweep_rows(check, train):
    rows = []
    for c, t in zip(check.models, train.models):
        worst_grad = worst(r["rel_err"] for r in c["comparisons"])
        worst_curve = max((i.get("max_rel_diff") or 0.0 for i in t["frameworks"].values()),
                          default=0.0)
        ok = c["passed"] and t["passed"]
        verdict = "FAIL" if not ok else "UNCHECKED" if c.get("unchecked") or \
            t.get("unchecked") else "PASS"  # as check and train say it
        rows.append([c["name"], c["dtype"], tables.fmt(worst_grad), tables.fmt(worst_curve),
                     verdict])
    return rows


def add_sweep_options(p, json_help="write every result and the digest as JSON ('-': "
                                     "stdout, and the tables to stderr)"):
    p.add_argument("--seeds", help=f"e.g. 0-9, or 0,3,5 (default 0); each seed once, at most "
                                   f"{VARIANTS:,} variants in all")
    p.add_argument("--optimizers", type=choice_list(list(OPTIMIZERS), "optimizer"),
                   help=f"comma-separated subset of {','.join(OPTIMIZERS)}, each once "
                        f"(default: each spec's own)")
    p.add_argument("--dtypes", type=choice_list(DTYPES, "dtype"),
                   help="comma-separated: float64,float32, each once (default float64)")
    p.add_argument("--steps", type=step_count, help="override every spec's train.steps")
    p.add_argument("--json", metavar="OUT", help=json_help)


def cmd_bench(args):
    """The same sweep with 1, 2, ... workers: wall time, speed-up, and whether the bits match."""
    if args.step_time:
        return cmd_step_time(args)
    refuse_unused(args, "without --step-time", ["--batch-sizes", "--dtype"])
    refuse_unused(args, "in bench, which runs each count of --workers-list", ["--workers"])
    specs = _sweep_specs(args)
    outputs = claim_outputs(args, files=["--json"])
    started = manifest.now()
    timings, first = _time_counts(specs, args)
    out = tables_stream(outputs)
    jobs = timings[0]["jobs"] // max(1, len(specs))
    print(f"sweep: {len(specs)} variants x {jobs} jobs each, executor {args.executor}, "
          f"{args.threads} thread(s) per worker", file=out)
    print(tables.render(["workers", "jobs", "wall s", "busy s", "speed-up", "same bits"],
                        [[t["workers"], t["jobs"], f"{t['wall_seconds']:.1f}",
                          f"{t['busy_seconds']:.1f}", f"{t['speedup']:.2f}x",
                          "yes" if t["same_bits"] else "NO"] for t in timings]), file=out)
    if args.json:
        check, train, said = first
        write_json(outputs["--json"], {
            "timings": timings, "check": check.to_json(), "train": train.to_json(),
            "digest": timings[0]["digest"],
            "manifest": manifest.build(specs, args.executor, args.threads, started, said)})
    return EXIT_OK


def _time_counts(specs, args):
    """The sweep once per count of --workers-list, each from cold workers without the
    compilation cache: -> ([{workers, jobs, wall_seconds, busy_seconds, speedup, same_bits,
    digest}], (check, train, hellos) of the first count: the results --json writes)."""
    import time
    from .sweep import digest
    timings, first = [], None
    for n in args.workers_list or [1, 2]:
        args.workers = n
        start = time.monotonic()
        with make_executor(args, compile_cache=False) as executor:
            check, train = _run_sweep(specs, args, executor, True)
            said = executor.hellos
        wall = time.monotonic() - start
        results = [r for res in (check, train) for m in res.saved.values() for r in m[1].values()]
        first = first or (check, train, said)
        timings.append({"workers": n, "jobs": len(results), "wall_seconds": wall,
                        "busy_seconds": sum(r.get("seconds") or 0.0 for r in results),
                        "speedup": (timings[0]["wall_seconds"] if timings else wall) / wall,
                        "digest": digest(results)})
        timings[-1]["same_bits"] = timings[-1]["digest"] == timings[0]["digest"]
    return timings, first


def cmd_step_time(args):
    """bench --step-time: one training step of each implementation against a plain loop of
    the same network in the same framework, and GFLOP/s against a GEMM probe (bench/)."""
    from .bench.command import measure, ratios
    check_execution(args)
    # it times one local worker, one step per call: the sweep's options would change nothing
    refuse_unused(args, "with --step-time", ["--seeds", "--optimizers", "--dtypes", "--steps",
                                             "--workers-list", "--workers", "--executor"])
    specs = collect_specs(args, [args.dtype or "float32"])
    outputs = claim_outputs(args, files=["--json"])
    names, _ = frameworks_to_run(args.frameworks)
    document, failed = measure(specs, names, args.batch_sizes or [1, 100, 1000], args.threads,
                               args.timeout, max_memory=args.max_memory,
                               requested=args.frameworks)
    out = tables_stream(outputs)
    ms = lambda s: "-" if s is None else f"{1e3 * s:.3f}"  # noqa: E731
    rows = [[m, b, f, ms(impl), ms(plain), "-" if r is None else f"{r:.2f}x", f"{g:.2f}",
             "-" if p is None else f"{p:.0f}%", f"{c:.2f}"]
            for m, b, f, impl, plain, r, g, p, c in ratios(document)]
    print(tables.render(["model", "batch", "framework", "impl ms", "plain ms", "impl/plain",
                         "GFLOP/s", "of GEMM peak", "compile s"], rows), file=out)
    machine = document["machine"]
    peaks = ", ".join(f"{f} {g:.1f}" for f, g in machine["gemm_gflops"].items())
    print(f"{machine['dtype']}, {machine['threads']} thread(s) per worker, {machine['processor']}; "
          f"GEMM {machine['gemm_n']}^3 peak GFLOP/s: {peaks}; load "
          f"{machine['load_before'][0]:.1f} -> {machine['load_after'][0]:.1f}", file=out)
    for model, framework, error in failed:
        print(f"{model} {framework}: failed: {error}", file=out)
    if args.json:
        write_json(outputs["--json"], document)
    return EXIT_DISAGREE if failed else EXIT_OK


def add_bench_options(p):
    add_sweep_options(p, json_help="write each worker count's timings and digest, and every "
                                   "result of the first count, as JSON ('-': stdout, and the "
                                   "tables to stderr); with --step-time: the step times")
    p.add_argument("--workers-list", type=positive_int_list("worker count", MOST_WORKERS_TYPE),
                   help="worker counts to time, each once (default 1,2)")
    p.add_argument("--step-time", action="store_true",
                   help="time one training step per model, framework and batch size against "
                        "a plain loop of the same network (with --batch-sizes, --dtype, --seed, "
                        "--json; the sweep's --seeds, --optimizers, --dtypes, --steps, "
                        "--workers-list and --executor ray are refused)")
    p.add_argument("--batch-sizes", type=positive_int_list("batch size"),
                   help="--step-time: batch sizes to time, each once (default 1,100,1000)")
    p.add_argument("--dtype", choices=("float32", "float64"),
                   help="--step-time: the dtype of every spec (default float32)")


SWEEP_SEED = "refused in a sweep, whose seeds are --seeds"

# name -> (function, help, argument adders), in the order `crossgrad --help` lists them
COMMANDS = {
    "check": (cmd_check, "compare losses and gradients across frameworks and with finite "
                         "differences", [add_models, add_dtype, add_execution, add_check_options,
                                         add_check_outputs]),
    "train": (cmd_train, "train every model in every framework and compare the loss curves",
              [add_models, add_dtype, add_execution, add_check_outputs, add_train_options]),
    "run": (cmd_run, "the main job: check and train the zoo (or the given specs) in both "
                     "dtypes and write a report", [add_models, add_dtype, add_execution,
                                                   add_run_options]),
    "diff": (cmd_diff, "compare two report folders and say what changed beyond tolerance",
             [add_diff_args]),
    "sweep": (cmd_sweep, "models x seeds x optimizers x dtypes as independent jobs",
              [partial(add_models, seed_help=SWEEP_SEED), add_execution, add_sweep_options]),
    "bench": (cmd_bench, "time a sweep with 1, 2, ... workers (prints figures; not a test)",
              [partial(add_models, seed_help="--step-time: override every spec's seed "
                                             "(" + SWEEP_SEED + ")"),
               partial(add_execution, workers_help="refused: bench runs each count of "
                                                   "--workers-list, --step-time one worker"),
               add_bench_options]),
    "import": (cmd_import, "a PyTorch or Keras model of yours -> a spec and its weights; "
                           "check then runs the original too", [add_import_args]),
    "explain": (cmd_explain, "HTML pages: a layer type's math and four implementations side "
                             "by side, a zoo model's numbers, the mistakes gallery",
                [add_explain_args, add_execution]),
    "pitfalls": (cmd_pitfalls, "prove each framework pitfall: its minimal spec with that one "
                               "default on, and aligned", [add_pitfalls_args, add_execution]),
    "zoo": (cmd_zoo, "list the built-in specs and the classic examples they reproduce", []),
    "schema": (cmd_schema, "print the JSON Schema of a spec, or of check's or train's --json",
               [add_schema_args]),
}
