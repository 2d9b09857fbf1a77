"""Floating-point formats: which a spec may name, their unit roundoff, and rounding once.

float64 and float32 run everywhere (check, train, run, sweep). bfloat16 and float16 are
*reduced* precision: `crossgrad check --dtype bfloat16` runs each framework's model in
that format, from the float64-drawn weights and data rounded once, here, and compares it
with a float64 reference (compare/precision.py). NumPy has float16; bfloat16 arrays come
from ml_dtypes (installed with JAX), imported only when asked for.
"""
import numpy as np

from ..errors import InputError

DTYPES = ("float64", "float32")           # every command
REDUCED = ("bfloat16", "float16")         # `check` only
ALL = DTYPES + REDUCED
# u = 2^-p for p significant bits: the largest relative error of one rounding to nearest
UNIT_ROUNDOFF = {"float64": 2.0 ** -53, "float32": 2.0 ** -24, "bfloat16": 2.0 ** -8,
                 "float16": 2.0 ** -11}
# how far two frameworks' float64 and float32 results may part, relative (compare/pairwise.py)
PAIRWISE = {"float64": 1e-12, "float32": 1e-5}
# the smallest normal number: below it a format keeps fewer digits (subnormals), then none
SMALLEST_NORMAL = {"float64": 2.0 ** -1022, "float32": 2.0 ** -126, "bfloat16": 2.0 ** -126,
                   "float16": 2.0 ** -14}


def available(name):
    """Whether this NumPy can hold `name` (bfloat16 needs ml_dtypes; importing it registers
    the name "bfloat16" with NumPy)."""
    try:
        numpy_dtype(name)
    except InputError:
        return False
    return True


def rounded_in_range(values, dtype, error):
    """rounded(values, dtype), or error(why) raised where a finite float64 entry of `values`
    lies beyond the format's range: every framework would start from inf, and the run
    would end NOT FINITE, blamed on the math."""
    with np.errstate(over="ignore"):
        out = rounded(values, dtype)
    if np.isfinite(out).all():
        return out
    reached, largest = _apart(float(np.max(np.abs(values))), _largest(dtype))
    raise error(f"reaches {reached}, beyond {dtype}'s largest finite value ({largest})")


def _apart(a, b):
    """a and b printed with 3 significant digits, or as many more as tell them apart
    (float16's 65520 rounds to inf, its largest value is 65504: both 6.55e+04)."""
    for digits in range(3, 18):
        shown = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if shown[0] != shown[1]:
            return shown
    return shown


def hyperparameter_problem(value, dtype):
    """Why a hyperparameter (a learning rate, an eps, a penalty's weight) of `value` cannot
    be written into a `dtype` computation as the spec means it, or None; the reason starts
    with the value, printed with the digits that tell it from the bound it crosses. Each
    framework multiplies by it in the model's dtype: a positive value that rounds to 0 is
    no longer the positive number the spec asks for, one beyond the largest finite value is
    inf, and a subnormal one parts the frameworks (TensorFlow and XLA flush subnormal
    operands to 0, NumPy and PyTorch compute with them). Reduced formats (`check` only) are
    not checked: float16's smallest normal number, 6.1e-5, is above the usual eps of 1e-5."""
    if dtype not in DTYPES or value == 0:
        return None
    with np.errstate(over="ignore"):
        held = rounded(np.float64(value), dtype)
    if np.isinf(held):
        shown, largest = _apart(value, _largest(dtype))
        return f"{shown} is beyond {dtype}'s largest finite value ({largest})"
    if abs(float(held)) >= SMALLEST_NORMAL[dtype]:  # as rounded: just below it may round up
        return None
    if held == 0:
        tiny = float(np.finfo(numpy_dtype(dtype)).smallest_subnormal)
        shown, tiny = _apart(value, tiny)
        return f"{shown} rounds to 0 in {dtype} (its smallest positive value is {tiny})"
    shown, normal = _apart(value, SMALLEST_NORMAL[dtype])
    return (f"{shown} is subnormal in {dtype} (below {normal}): TensorFlow and JAX flush it "
            f"to 0, NumPy and PyTorch compute with it")


def _largest(dtype):
    if dtype == "bfloat16":
        import ml_dtypes  # only where asked for, as numpy_dtype's
        return float(ml_dtypes.finfo(numpy_dtype(dtype)).max)
    return float(np.finfo(numpy_dtype(dtype)).max)


def numpy_dtype(name):
    """The NumPy dtype of a format name; bfloat16 through ml_dtypes."""
    if name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            raise InputError("--dtype", "bfloat16", "needs the ml_dtypes package, which JAX "
                             "installs (pip install ml_dtypes)") from None
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def rounded(values, dtype):
    """float64 values -> `dtype`, each rounded once to the nearest (ties to even).

    NumPy rounds float64 -> float32 and -> float16 directly. ml_dtypes converts float64 to
    bfloat16 through float32, rounding twice: 1 + 2^-8 + 2^-30 becomes 1 + 2^-8 in float32,
    a tie, then 1 in bfloat16, where the nearest bfloat16 is 1 + 2^-7. Rounding to float32
    *to odd* first (an inexact result gets its last bit set) keeps every such tie broken
    the right way, since float32 has more than two bits beyond bfloat16's eight.
    """
    values = np.asarray(values)
    if dtype != "bfloat16" or values.dtype != np.float64:
        return values.astype(numpy_dtype(dtype))
    with np.errstate(over="ignore"):  # beyond float32's range: inf, as bfloat16 would
        single = values.astype(np.float32)
    inexact = single.astype(np.float64) != values
    toward_zero = np.where(np.abs(single.astype(np.float64)) > np.abs(values),
                           np.nextafter(single, np.float32(0)), single)
    bits = toward_zero.view(np.uint32) | np.uint32(1)            # round to odd
    odd = np.where(inexact & np.isfinite(single), bits.view(np.float32), single)
    return odd.astype(numpy_dtype("bfloat16"))
