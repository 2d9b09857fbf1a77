"""Command-line options shared by the sub-commands, and the steps that turn them into work:
specs from files and zoo names, an executor, claimed outputs, progress lines.

Every option is checked when it is parsed (argparse `type=`), so a bad value is one line
naming the flag, exit 2, before any spec is read or any work starts.
"""
import argparse
import contextlib
import math
import os
import sys
import threading
import time

from . import registry
from .errors import InputError
from .run import ownership
from .run.cache import user_cache_folder
from .run.ownership import claim_file, claim_folder
from .spec import load_spec, sizes, zoo_names, zoo_spec
from .spec.limits import STEPS
from .spec.precision import ALL as ALL_DTYPES, REDUCED

REDUCED_NOT_TRAINED = ("reduced precision is checked, not trained: crossgrad check --dtype "
                       "bfloat16|float16 compares every framework with float64")


# ---- values --------------------------------------------------------------------------------

def _number(text, convert, what):
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def _refuse(condition, message):
    if condition:
        raise argparse.ArgumentTypeError(message)


def positive_int(text):
    value = _number(text, int, "a whole number")
    _refuse(value < 1, f"must be at least 1, got {value}")
    return value


def at_most(limit, why):
    """A type for a positive whole number of at most `limit` (`why`: what sets it)."""
    def parse(text):
        value = positive_int(text)
        _refuse(value > limit, f"must be at most {limit} ({why}), got {value}")
        return value
    return parse


# --workers: one slot and thread each is made before any job; --threads: OpenBLAS and the
# frameworks take a C int, and more threads than this are no machine's
MOST_WORKERS, MOST_THREADS = 4096, 1024
MOST_WORKERS_TYPE = at_most(MOST_WORKERS, "each is a slot made before any job")


def non_negative_int(text):
    value = _number(text, int, "a whole number")
    _refuse(value < 0, f"must be non-negative, got {value}")
    return value


def positive_seconds(text):
    value = _number(text, float, "a number of seconds")
    _refuse(not (math.isfinite(value) and value > 0),
            f"must be a positive number of seconds, got {text}")
    return value


def gigabytes(text):
    value = _number(text, float, "a number of GB")
    _refuse(not (math.isfinite(value) and value > 0), f"must be a positive number of GB, got {text}")
    return value


def step_count(text):
    """--steps: what train.steps takes (limits.STEPS), refused here, naming the flag."""
    value = positive_int(text)
    _refuse(value > STEPS, f"must be at most {STEPS:,}, got {value:,}")
    return value


def repeated(values):
    """The first value named a second time, or None."""
    return next((v for i, v in enumerate(values) if v in values[:i]), None)


def _once(values, what):
    """A list option names each value once: `sgd,sgd` is a typo for another optimizer more
    often than a wish to run one twice, so it is refused, never run twice nor dropped."""
    twice = repeated(values)
    _refuse(twice is not None, f"names {twice!r} twice; name each {what} once")
    return values


def _names(text, what, choices=None):
    names = [x.strip() for x in text.split(",") if x.strip()]
    _refuse(not names, f"names no {what}" + (f"; choose from {','.join(choices)}"
                                             if choices else ""))
    return _once(names, what)


def framework_list(text):
    return _names(text, "framework", registry.ORDER)


def choice_list(choices, what):
    """A type for a comma list of `choices` (--dtypes, --optimizers), each named once."""
    def parse(text):
        names = _names(text, what, choices)
        unknown = next((n for n in names if n not in choices), None)
        _refuse(unknown is not None, f"unknown {what} {unknown!r}; choose from "
                                     f"{','.join(choices)}")
        return names
    return parse


def ray_address(text):
    host, sep, port = text.rpartition(":")
    if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, e.g. 127.0.0.1:6379, got {text!r}")
    return text


def positive_int_list(what, item=positive_int):
    """A type for a comma list of positive whole numbers (--workers-list), each named once
    and each read by `item`."""
    def parse(text):  # an empty item is dropped, as in every list option (`1,`)
        return _once([item(x) for x in _names(text, what)], what)
    return parse


# the values of options that mean "not given" beyond None and False
UNSET = {"--executor": "local", "--threads": 1}


def refuse_unused(args, why, flags):
    """Refuse (exit 2) the first of `flags` given a value here, where it has no effect
    (`why`): a flag ignored silently is a typo passing."""
    for flag in flags:
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if value not in (None, False, UNSET.get(flag)):
            raise InputError(flag, None, f"has no effect {why}")


class ZooNames(argparse.Action):
    """--zoo a b, or --zoo a,b. A value that looks like a path (a '/', or .toml/.json at the
    end) is no zoo name: it and what follows are spec files (`--zoo xor_2_2_1 my.toml`)."""

    def __call__(self, parser, namespace, values, option_string=None):
        names, files = list(getattr(namespace, self.dest) or []), []
        for i, value in enumerate(values):
            if "/" in value or value.endswith((".toml", ".json")):
                files = values[i:]
                break
            split = [n.strip() for n in value.split(",") if n.strip()]
            if not split:
                parser.error(f"argument {option_string}: {value!r} names no zoo model")
            names += split
        setattr(namespace, self.dest, names)
        setattr(namespace, "zoo_files", list(getattr(namespace, "zoo_files", None) or []) + files)


# ---- the shared options --------------------------------------------------------------------

def add_models(p, seed_help="override every spec's seed"):
    p.add_argument("specs", nargs="*", metavar="SPEC", help="spec files (.toml or .json)")
    p.add_argument("--zoo", nargs="+", action=ZooNames, default=[], metavar="NAME",
                   help="built-in specs, by space or comma (`crossgrad zoo` lists them); a path "
                        "ends the list; no SPEC and no --zoo: all")
    p.add_argument("--seed", type=non_negative_int, help=seed_help)


def add_dtype(p):
    p.add_argument("--dtype", choices=ALL_DTYPES,
                   help="override every spec's dtype (bfloat16, float16: check only)")


def add_execution(p, workers_help="worker processes at once (default: CPU cores)"):
    p.add_argument("--frameworks", type=framework_list,
                   help=f"comma-separated subset of {','.join(registry.PARTICIPANTS)} "
                        "(original: an imported spec's own model)")
    p.add_argument("--executor", choices=("local", "ray"), default="local")
    p.add_argument("--ray-address", metavar="HOST:PORT", type=ray_address,
                   help="join the Ray cluster there (with --executor ray; see the README)")
    p.add_argument("--workers", type=MOST_WORKERS_TYPE, help=workers_help)
    p.add_argument("--threads", type=at_most(MOST_THREADS, "threads per worker"), default=1,
                   help="threads per worker (results repeat bit for bit for a fixed value)")
    p.add_argument("--timeout", type=positive_seconds,
                   help="seconds a worker may take to start, and then each job")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--max-memory", type=gigabytes, metavar="GB",
                   help="refuse specs estimated to need more (default: half of this machine's "
                        "memory; see README, Limits)")


# ---- from options to work ---------------------------------------------------------------------

def collect_specs(args, dtypes=(None,), **overrides):
    """Spec files and zoo names -> validated Specs, one per (spec, dtype)."""
    sources = _sources(args)
    training = "train.steps" in overrides  # the commands that train
    if training and getattr(args, "dtype", None) in REDUCED:
        raise InputError("--dtype", args.dtype, REDUCED_NOT_TRAINED)
    specs, seen = [], {}
    for kind, source in sources:
        for dtype in dtypes:
            extra = dict(overrides, dtype=dtype, seed=args.seed)
            with _options_blamed(args):
                spec = load_spec(source, **extra) if kind == "file" else zoo_spec(source, **extra)
            if training and spec.dtype in REDUCED:
                raise InputError(spec.file, "dtype", f"{spec.dtype}: {REDUCED_NOT_TRAINED}")
            key = (spec.name, spec.dtype, spec.seed)
            if key in seen:
                raise InputError(source, "name", f"{spec.name!r} is also the name of {seen[key]}")
            seen[key] = source
            specs.append(spec)
    with _options_blamed(args):
        check_memory(specs, args, training)
    return specs


def _sources(args):
    """[("file" | "zoo", spec)]; a spec given twice is refused as a mistake on the command
    line, before its name would be blamed on it ("also the name of" itself)."""
    files = list(args.specs) + list(getattr(args, "zoo_files", []))
    seen = set()
    for file in files:
        where = os.path.realpath(file)
        if where in seen:
            raise InputError(file, None, "is given twice on the command line; give each "
                                         "spec once")
        seen.add(where)
    if repeated(args.zoo) is not None:
        raise InputError("--zoo", None, f"names {repeated(args.zoo)!r} twice; name each "
                                        f"model once")
    sources = [("file", s) for s in files] + [("zoo", z) for z in args.zoo]
    return sources or [("zoo", z) for z in zoo_names()]


# spec field -> the options that may override it
OVERRIDDEN = {"train.steps": ("--steps",), "seed": ("--seed",), "dtype": ("--dtype", "--dtypes")}


@contextlib.contextmanager
def _options_blamed(args):
    """A value an option put in place of the spec's own that the spec's checks, or the
    memory estimate, refuse is the option's doing: the error names the flag, not the file."""
    try:
        yield
    except InputError as err:
        given = [flag for flag in OVERRIDDEN.get(err.field, ())
                 if getattr(args, flag[2:], None) is not None]
        if not given:
            raise
        raise InputError(given[0], None, err.message) from None


def check_memory(specs, args, training):
    """Refuse, before any data is loaded, a spec whose estimated memory exceeds the limit."""
    given = getattr(args, "max_memory", None)
    frameworks = len(getattr(args, "frameworks", None) or registry.ORDER)
    if given:
        sizes.check(specs, given * 1e9, training, frameworks, "set by --max-memory")
    else:
        sizes.check(specs, sizes.default_limit(), training, frameworks)


def check_execution(args):
    if args.ray_address and args.executor != "ray":
        raise InputError("--ray-address", None, "joins a Ray cluster; add --executor ray")
    if args.executor == "ray":
        import importlib.util
        if importlib.util.find_spec("ray") is None:
            raise InputError("--executor", "ray", "Ray is not installed "
                             "(pip install -c constraints.txt -e '.[ray]')")


def make_executor(args, compile_cache=True):
    """The executor the options ask for; `compile_cache`: whether its JAX workers may load
    compiled programs (run/compile_cache.py; `crossgrad bench` compares cold runs)."""
    check_execution(args)
    if args.executor == "ray":
        from .run.ray_executor import RayExecutor
        return RayExecutor(address=args.ray_address, workers=args.workers,
                           threads=args.threads, timeout=args.timeout,
                           compile_cache=compile_cache)
    from .run.executor import LocalExecutor
    return LocalExecutor(workers=args.workers, threads=args.threads, timeout=args.timeout,
                         compile_cache=compile_cache)


def claim_outputs(args, files=(), folders=()):
    """Check every output before any work: -> {flag: where to write it} (see ownership).
    Two outputs that are the same path, or one inside the other, are refused."""
    claimed, claimed_as = {}, {}
    for flag in folders:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            claimed[flag], claimed_as[flag] = claim_folder(value, flag), value
    for flag in files:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            claimed[flag], claimed_as[flag] = claim_file(value, flag), value
    paths = [(f, os.path.realpath(p)) for f, p in claimed.items() if p not in (None, "-")]
    cache = user_cache_folder()
    for flag, path in paths:
        if ownership.overlap(path, cache):
            where = ("is" if os.path.realpath(cache) == path else
                     "holds" if os.path.realpath(cache).startswith(path + os.sep) else
                     "is inside")
            raise InputError(claimed_as[flag], None, f"{where} crossgrad's cache folder "
                                                     f"({cache}); choose another {flag}")
    for i, (a, pa) in enumerate(paths):
        for b, pb in paths[i + 1:]:
            if ownership.overlap(pa, pb):
                raise InputError(b, None, f"overlaps {a} (the same path, or one inside the "
                                          f"other); choose paths apart")
    return claimed


def tables_stream(outputs):
    """Tables go to stdout, unless the JSON document claimed it (`--json -`, /dev/stdout)."""
    return sys.stderr if outputs.get("--json") == "-" else sys.stdout


class Progress:
    """One line per finished job on stderr: the run is long enough to want to see it move."""

    def __init__(self, total, quiet=False):
        self.total, self.done, self.quiet = total, 0, quiet
        self.start = time.monotonic()
        self.lock = threading.Lock()  # the slots' threads report, and phases run side by side

    def expect(self, more):
        """Jobs decided during the run (the causes of native partings): counted in the total."""
        with self.lock:
            self.total += more

    def __call__(self, job, result):
        with self.lock:
            self.done += 1
            self._line(job, result)

    def _line(self, job, result):
        if self.quiet:
            return
        # "shared": another phase's job of the same key (executor.JobQueue), timed there; one
        # that failed says so, as the table will
        again = result.get("cached") or result.get("shared")
        status = result.get("status")
        if result.get("cached"):
            status = "cached"
        elif again and status == "ok":
            status = "shared"
        took = result.get("seconds")
        if took is not None:  # a train job's lockstep pass is timed apart: the line says both
            took += (result.get("lockstep") or {}).get("seconds") or 0.0
        took = f"{took:6.1f} s" if took is not None and not again else ""
        width = len(str(self.total))
        who = job.get("participant", job["framework"])
        print(f"[{self.done:{width}d}/{self.total}] {job['kind']:5s} {who:10s} "
              f"{job['model']:18s} {job['dtype']:7s} {status:7s} {took}", file=sys.stderr,
              flush=True)
