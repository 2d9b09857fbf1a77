"""A user's loss function, evaluated and differentiated by its own framework, in-process.

One pair of functions per framework, in the same order and with the same signatures:
`<framework>_gradients(fn, params, inputs, dtype) -> (loss, {name: gradient})` from the
framework's own AD (torch.autograd.grad, tf.GradientTape, jax.vjp; NumPy's function
returns its hand-written gradients), and `<framework>_loss(fn, params, inputs, dtype)`
for the finite-difference probes. Everything crossing in or out is NumPy: params and
inputs arrive as private copies, results leave as new arrays.

Each framework computes in `dtype` under its own global switch, set for the call and put
back as it was found: torch's default dtype (a constant made with torch.tensor(1e-5)
follows it), Keras' floatx (Keras layers and losses compute in it), JAX's x64 mode
(without it JAX silently computes in float32).
"""
import contextlib
import inspect
import os
import traceback

import numpy as np

from .harness.errors import one_line
from .harness.switches import keras_floatx

__all__ = ["FunctionError", "numpy_gradients", "numpy_loss", "torch_gradients", "torch_loss",
           "tensorflow_gradients", "tensorflow_loss", "jax_gradients", "jax_loss"]


class FunctionError(ValueError):
    """The user's function did something compare cannot use; the message says what."""


def call(fn, p, inputs):
    """fn(p, *inputs), an exception from inside it re-raised with where it happened."""
    return guarded("the function", lambda: fn(p, *inputs))


def backward(thunk, fn):
    """thunk(), the framework's backward pass through fn's graph: a custom gradient of the
    user's (an autograd.Function, tf.custom_gradient, jax.custom_vjp) runs in it, and so
    does autograd's own complaint about a tensor modified in place after its use."""
    return guarded("the backward pass", thunk, fn)


def guarded(what, thunk, fn=None):
    """thunk(), an exception from inside it re-raised as FunctionError saying `what` raised
    it and where: the innermost frame of the user's code, neither a framework's (installed
    in site-packages) nor crossgrad's own; where none is on the stack (autograd's in-place
    complaint is raised from C++), the function `fn` whose backward pass it was."""
    try:
        return thunk()
    except FunctionError:
        raise
    except Exception as err:
        frames = traceback.extract_tb(err.__traceback__)
        own = [f for f in frames if "site-packages" not in f.filename
               and not f.filename.startswith(_OURS)]
        where = f" (at {own[-1].filename}:{own[-1].lineno})" if own else _defined_at(fn)
        raise FunctionError(f"{what} raised {one_line(err)}{where}") from err


def _defined_at(fn):
    """" (through the graph of f, defined at file:line)", or "" where fn has no code of its
    own to point at (a builtin)."""
    target = inspect.unwrap(getattr(fn, "func", fn))  # a functools.partial's function
    code = getattr(target, "__code__", None) or getattr(
        getattr(type(target), "__call__", None), "__code__", None)  # a callable object
    if code is None:
        return ""
    name = getattr(target, "__qualname__", type(target).__qualname__)
    return f" (through the graph of {name}, defined at {code.co_filename}:{code.co_firstlineno})"


_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_OURS = tuple(os.path.join(_ROOT, part) + os.sep for part in ("crossgrad", "harness", "impls"))


def scalar(loss, shape, dtype_name, dtype):
    """Refuse a loss that is not one number in `dtype`."""
    if tuple(shape) not in ((), (1,)):
        raise FunctionError(f"the loss must be a scalar, got shape {tuple(shape)}")
    if dtype_name != dtype:
        raise FunctionError(f"the loss is {dtype_name}, expected {dtype} (the function "
                            f"computes in another dtype)")
    return loss


def unused(name):
    return FunctionError(f"no gradient reached param {name!r}: the loss does not depend on it "
                         "through this framework (did the function leave it, e.g. via NumPy?)")


# ---- NumPy: the user's hand-written gradients ---------------------------------------------------

def numpy_gradients(fn, params, inputs, dtype):
    out = call(fn, params, inputs)
    if not isinstance(out, (tuple, list)) or len(out) != 2 or not isinstance(out[1], dict):
        raise FunctionError("must return (loss, {param: gradient})")
    loss, grads = np.asarray(out[0]), out[1]
    scalar(loss, loss.shape, loss.dtype.name if typed(out[0]) else dtype, dtype)
    return float(loss.reshape(())), {k: np.array(g) if typed(g) else np.array(g, dtype=dtype)
                                     for k, g in grads.items()}


def typed(value):
    """Whether a value says its dtype: a Python float or list of them does not, and is taken
    in the compared dtype, as a NumPy function's scalar loss or () gradient often is."""
    return isinstance(value, (np.ndarray, np.generic))


def numpy_loss(fn, params, inputs, dtype):
    return numpy_gradients(fn, params, inputs, dtype)[0]


# ---- PyTorch: torch.autograd.grad ---------------------------------------------------------------

@contextlib.contextmanager
def torch_dtype(dtype):
    import torch
    found = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        yield torch
    finally:
        torch.set_default_dtype(found)


def torch_gradients(fn, params, inputs, dtype):
    # autograd on, whatever the caller's mode: compare called under torch.no_grad() or
    # torch.inference_mode() would otherwise see no gradient reach any param
    with torch_dtype(dtype) as torch, torch.inference_mode(False), torch.enable_grad():
        p = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
        loss = call(fn, p, [torch.tensor(a) if isinstance(a, np.ndarray) else a for a in inputs])
        if not isinstance(loss, torch.Tensor):
            raise FunctionError(f"the loss must be a torch tensor, got {type(loss).__name__}")
        scalar(loss, loss.shape, str(loss.dtype).removeprefix("torch."), dtype)
        if not loss.requires_grad:
            raise unused(next(iter(p)))
        grads = backward(lambda: torch.autograd.grad(loss.reshape(()), list(p.values()),
                                                     allow_unused=True), fn)
        for name, g in zip(p, grads):
            if g is None:
                raise unused(name)
        return loss.item(), {k: dense(torch, g).detach().numpy().copy()
                             for k, g in zip(p, grads)}


def dense(torch, g):
    """A gradient as a strided tensor: an embedding with sparse=True gives a sparse one."""
    return g if g.layout == torch.strided else g.to_dense()


def torch_loss(fn, params, inputs, dtype):
    """The params as torch_gradients gives them (requiring grad, autograd on): a loss that
    differentiates inside itself (torch.autograd.grad of an inner loss, a gradient penalty)
    needs them so."""
    with torch_dtype(dtype) as torch, torch.inference_mode(False), torch.enable_grad():
        p = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
        return float(call(fn, p, [torch.tensor(a) if isinstance(a, np.ndarray) else a
                                  for a in inputs]).detach())


# ---- TensorFlow: tf.GradientTape ----------------------------------------------------------------

def tensorflow_gradients(fn, params, inputs, dtype):
    with keras_floatx(dtype) as tf:
        p = {k: tf.Variable(v) for k, v in params.items()}
        args = [tf.constant(a) if isinstance(a, np.ndarray) else a for a in inputs]
        with tf.GradientTape() as tape:
            loss = call(fn, p, args)
        if not tf.is_tensor(loss):
            raise FunctionError(f"the loss must be a TensorFlow tensor, got "
                                f"{type(loss).__name__}")
        scalar(loss, loss.shape, loss.dtype.name, dtype)
        grads = backward(lambda: tape.gradient(loss, list(p.values())), fn)
        for name, g in zip(p, grads):
            if g is None:
                raise unused(name)
        return float(loss.numpy().reshape(())), {k: tf.convert_to_tensor(g).numpy()
                                                 for k, g in zip(p, grads)}


def tensorflow_loss(fn, params, inputs, dtype):
    """The params as tensorflow_gradients gives them, tf.Variables: a tape inside the loss
    watches them unasked."""
    with keras_floatx(dtype) as tf:
        p = {k: tf.Variable(v) for k, v in params.items()}
        args = [tf.constant(a) if isinstance(a, np.ndarray) else a for a in inputs]
        return float(call(fn, p, args).numpy().reshape(()))


# ---- JAX: jax.vjp, the primitive under jax.grad -----------------------------------------------

def jax_x64(dtype):
    """x64 on for float64 and off for float32, whatever the caller's global setting: with it
    on, jnp.ones(2) inside a float32 function would be float64."""
    import jax
    return jax.enable_x64(dtype == "float64")


def jax_gradients(fn, params, inputs, dtype):
    import jax
    import jax.numpy as jnp
    with jax_x64(dtype):
        p = {k: jnp.asarray(v) for k, v in params.items()}
        args = [jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in inputs]
        try:
            loss, pullback = jax.vjp(lambda q: call(fn, q, args), p)
        except TypeError as err:  # the function returned something that is not an array
            raise FunctionError(f"the loss must be a JAX array: {err}") from None
        if not isinstance(loss, jax.Array):
            raise FunctionError(f"the loss must be a JAX array, got {type(loss).__name__}")
        scalar(loss, loss.shape, loss.dtype.name, dtype)
        (grads,) = backward(lambda: pullback(jnp.ones_like(loss)), fn)  # as jax.grad takes it
        return float(loss.reshape(())), {k: np.asarray(grads[k]).copy() for k in p}


def jax_loss(fn, params, inputs, dtype):
    import jax.numpy as jnp
    with jax_x64(dtype):
        p = {k: jnp.asarray(v) for k, v in params.items()}
        args = [jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in inputs]
        return float(jnp.reshape(call(fn, p, args), ()))
