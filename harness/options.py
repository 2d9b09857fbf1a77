"""Command-line options shared by the sub-commands, and the steps that turn them into work:
specs from files and zoo names, an executor, output checks, progress lines."""
import sys
import time
from pathlib import Path

from . import registry
from .errors import InputError
from .spec import DTYPES, load_spec, zoo_names, zoo_spec


def add_models(p):
    p.add_argument("specs", nargs="*", metavar="SPEC", help="spec files (.toml or .json)")
    p.add_argument("--zoo", nargs="+", action="extend", default=[], metavar="NAME",
                   help="built-in specs (`crossgrad zoo` lists them); no SPEC and no --zoo: all")
    p.add_argument("--seed", type=int, help="override every spec's seed")


def add_dtype(p):
    p.add_argument("--dtype", choices=DTYPES, help="override every spec's dtype")


def add_execution(p):
    p.add_argument("--frameworks", type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
                   help=f"comma-separated subset of {','.join(registry.ORDER)}")
    p.add_argument("--executor", choices=("local", "ray"), default="local")
    p.add_argument("--ray-address", help="join an existing Ray cluster (with --executor ray)")
    p.add_argument("--workers", type=int, help="worker processes at once (default: CPU cores)")
    p.add_argument("--threads", type=int, default=1,
                   help="threads per worker (results repeat bit for bit for a fixed value)")
    p.add_argument("--timeout", type=float, help="seconds one job may take before it is failed")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


# ---- from options to work ---------------------------------------------------------------------

def collect_specs(args, dtypes=(None,), **overrides):
    """Spec files and zoo names -> validated Specs, one per (spec, dtype)."""
    if args.seed is not None and args.seed < 0:
        raise InputError("--seed", None, f"must be non-negative, got {args.seed}")
    sources = [("file", s) for s in args.specs] + [("zoo", z) for z in args.zoo]
    if not sources:
        sources = [("zoo", z) for z in zoo_names()]
    specs, seen = [], {}
    for kind, source in sources:
        for dtype in dtypes:
            extra = dict(overrides, dtype=dtype, seed=args.seed)
            spec = load_spec(source, **extra) if kind == "file" else zoo_spec(source, **extra)
            key = (spec.name, spec.dtype, spec.seed)
            if key in seen:
                raise InputError(source, "name", f"{spec.name!r} is also the name of {seen[key]}")
            seen[key] = source
            specs.append(spec)
    return specs


def make_executor(args):
    if args.workers is not None and args.workers < 1:
        raise InputError("--workers", None, f"must be positive, got {args.workers}")
    if args.threads < 1:
        raise InputError("--threads", None, f"must be positive, got {args.threads}")
    if args.executor == "ray":
        import importlib.util
        if importlib.util.find_spec("ray") is None:
            raise InputError("--executor", "ray", "Ray is not installed "
                             "(pip install -c constraints.txt -e '.[ray]')")
        from .run.ray_executor import RayExecutor
        return RayExecutor(address=args.ray_address, workers=args.workers,
                           threads=args.threads, timeout=args.timeout)
    from .run.executor import LocalExecutor
    return LocalExecutor(workers=args.workers, threads=args.threads, timeout=args.timeout)


def check_output_path(path, what):
    """Refuse an output that cannot be written before any work starts."""
    if path is None:
        return
    p = Path(path)
    if what == "folder" and p.exists() and not p.is_dir():
        raise InputError(path, None, "exists and is not a folder")
    if what == "file" and p.is_dir():
        raise InputError(path, None, "is a folder, expected a file name")


class Progress:
    """One line per finished job on stderr: the run is long enough to want to see it move."""

    def __init__(self, total, quiet=False):
        self.total, self.done, self.quiet = total, 0, quiet
        self.start = time.monotonic()

    def __call__(self, job, result):
        self.done += 1
        if self.quiet:
            return
        status = "cached" if result.get("cached") else result.get("status")
        took = result.get("seconds")
        took = f"{took:6.1f} s" if took is not None and not result.get("cached") else ""
        width = len(str(self.total))
        print(f"[{self.done:{width}d}/{self.total}] {job['kind']:5s} {job['framework']:10s} "
              f"{job['model']:18s} {job['dtype']:7s} {status:7s} {took}", file=sys.stderr,
              flush=True)
