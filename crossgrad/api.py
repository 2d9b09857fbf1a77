"""check, train, load, zoo: what the command line does, as Python calls.

A spec may be given as a `Spec` (from `load` or `zoo`), a path to a spec file, the name
of a zoo model, or a list of any of these. Each call starts its own pool of worker
processes (one per CPU core, as the command line does) and stops it before returning,
unless an executor is passed in (crossgrad.harness.run.executor.LocalExecutor, kept
alive across calls: TensorFlow's import then happens once).
"""
import contextlib
import os
from pathlib import Path

from .harness import api as _api
from .harness.errors import InputError
from .harness.run.execute import refuse_unknown
from .harness.run.executor import LocalExecutor
from .harness.spec import Spec, load_spec, zoo_names, zoo_spec

__all__ = ["check", "train", "load", "zoo"]


def load(path, **overrides):
    """A spec file (TOML or JSON) -> Spec, validated; overrides as in Spec.with_overrides."""
    return load_spec(path, **overrides)


def zoo(name=None, **overrides):
    """The built-in spec `name` -> Spec; without a name, the list of the zoo's names."""
    return zoo_names() if name is None else zoo_spec(name, **overrides)


ORDERS = (1, 2)                         # check --order
MATMUL_PRECISIONS = (None, "highest", "default")  # check --matmul-precision (None: not asked)


def check(specs, *, frameworks=None, dtype=None, seed=None, order=1, matmul_precision=None,
          workers=None, threads=1, timeout=None, executor=None):
    """Loss and gradients of every spec on its first batch in every framework (or those
    named), compared pair by pair and with finite differences -> CheckResult
    (.passed, .comparisons, .finite_difference, .summary, .frameworks, .to_json()).

    As `crossgrad check --order` and `--matmul-precision`: order=2 adds Hessian-vector
    products along the finite-difference probes; matmul_precision "highest" (crossgrad's
    pin) or "default" (each framework's own) also compares a float32 spec with float64."""
    if order not in ORDERS:
        raise ValueError(f"order must be 1 or 2, not {order!r}")
    if matmul_precision not in MATMUL_PRECISIONS:
        raise ValueError(f"matmul_precision must be None, 'highest' or 'default', "
                         f"not {matmul_precision!r}")
    specs = _specs(specs, dtype=dtype, seed=seed)
    with _executor(executor, workers, threads, timeout) as ex:
        return _api.check(specs, frameworks=framework_names(frameworks), executor=ex,
                          order=order, matmul_precision=matmul_precision)


def train(specs, *, frameworks=None, steps=None, native=False, dtype=None, seed=None,
          workers=None, threads=1, timeout=None, executor=None):
    """Train every spec for `steps` (default: the spec's) in every framework on the same
    batches -> TrainResult (.passed, .curves, .grad_norms, .summary, .to_json())."""
    specs = _specs(specs, dtype=dtype, seed=seed, **{"train.steps": steps})
    with _executor(executor, workers, threads, timeout) as ex:
        return _api.train(specs, frameworks=framework_names(frameworks), native=native,
                          executor=ex)


def framework_names(frameworks):
    """A list of names, or one string of them separated by commas as --frameworks takes them
    ("torch" is one name, not five letters); None: all. An unknown name is refused here,
    named by this argument: the harness would name the command line's --frameworks."""
    if frameworks is None:
        return None
    names = [n.strip() for n in frameworks.split(",")] if isinstance(frameworks, str) \
        else list(frameworks)
    refuse_unknown(names, "frameworks")
    return names


def _specs(specs, **overrides):
    """One spec or many, each a Spec, a path or a zoo name -> [Spec], overrides applied."""
    many = specs if isinstance(specs, (list, tuple)) else [specs]
    if not many:
        raise ValueError("no spec given")
    out = [_spec(s) for s in many]
    if any(v is not None for v in overrides.values()):
        out = [s.with_overrides(**overrides) for s in out]
    return out


def _spec(source):
    if isinstance(source, Spec):
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"a spec is a Spec, a path or a zoo name, not a {type(source).__name__}")
    path = Path(source)
    if path.suffix in (".toml", ".json") or path.exists():
        return load_spec(path)
    if str(source) in zoo_names():
        return zoo_spec(str(source))
    raise InputError(source, None, f"neither a spec file nor a zoo model "
                                   f"(known: {', '.join(zoo_names())})")


@contextlib.contextmanager
def _executor(given, workers, threads, timeout):
    """The caller's executor as it is, or a fresh local pool closed on the way out."""
    if given is not None:
        yield given
        return
    with LocalExecutor(workers=workers, threads=threads, timeout=timeout) as own:
        yield own
