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
import traceback

import numpy as np

__all__ = ["FunctionError", "numpy_gradients", "numpy_loss", "torch_gradients", "torch_loss",
           "tensorflow_gradients", "tensorflow_loss", "jax_gradients", "jax_loss"]


class FunctionError(ValueError):
    """The user's function did something compare cannot use; the message says what."""


def call(fn, p, inputs):
    """fn(p, *inputs), an exception from inside it re-raised with where it happened."""
    try:
        return fn(p, *inputs)
    except Exception as err:
        frames = traceback.extract_tb(err.__traceback__)[1:]
        own = [f for f in frames if "site-packages" not in f.filename] or frames
        where = f" (at {own[-1].filename}:{own[-1].lineno})" if own else ""
        raise FunctionError(f"the function raised {type(err).__name__}: {err}{where}") from err


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
    typed = isinstance(out[0], (np.ndarray, np.generic))  # a Python float says no dtype
    scalar(loss, loss.shape, loss.dtype.name if typed else dtype, dtype)
    return float(loss.reshape(())), {k: np.array(g) for k, g in grads.items()}


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
    with torch_dtype(dtype) as torch:
        p = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
        loss = call(fn, p, [torch.tensor(a) if isinstance(a, np.ndarray) else a for a in inputs])
        if not isinstance(loss, torch.Tensor):
            raise FunctionError(f"the loss must be a torch tensor, got {type(loss).__name__}")
        scalar(loss, loss.shape, str(loss.dtype).removeprefix("torch."), dtype)
        if not loss.requires_grad:
            raise unused(next(iter(p)))
        grads = torch.autograd.grad(loss.reshape(()), list(p.values()), allow_unused=True)
        for name, g in zip(p, grads):
            if g is None:
                raise unused(name)
        return loss.item(), {k: g.detach().numpy().copy() for k, g in zip(p, grads)}


def torch_loss(fn, params, inputs, dtype):
    with torch_dtype(dtype) as torch, torch.no_grad():
        p = {k: torch.tensor(v) for k, v in params.items()}
        return float(call(fn, p, [torch.tensor(a) if isinstance(a, np.ndarray) else a
                                  for a in inputs]))


# ---- TensorFlow: tf.GradientTape ----------------------------------------------------------------

@contextlib.contextmanager
def keras_floatx(dtype):
    import keras
    import tensorflow as tf
    found = keras.backend.floatx()
    keras.backend.set_floatx(dtype)
    try:
        yield tf
    finally:
        keras.backend.set_floatx(found)


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
        grads = tape.gradient(loss, list(p.values()))
        for name, g in zip(p, grads):
            if g is None:
                raise unused(name)
        return float(loss.numpy().reshape(())), {k: tf.convert_to_tensor(g).numpy()
                                                 for k, g in zip(p, grads)}


def tensorflow_loss(fn, params, inputs, dtype):
    with keras_floatx(dtype) as tf:
        p = {k: tf.constant(v) for k, v in params.items()}
        args = [tf.constant(a) if isinstance(a, np.ndarray) else a for a in inputs]
        return float(call(fn, p, args).numpy().reshape(()))


# ---- JAX: jax.vjp, the primitive under jax.grad -----------------------------------------------

def jax_x64(dtype):
    import jax
    return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()


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
        (grads,) = pullback(jnp.ones_like(loss))  # d loss / d p, as jax.grad computes it
        return float(loss.reshape(())), {k: np.asarray(grads[k]).copy() for k in p}


def jax_loss(fn, params, inputs, dtype):
    import jax.numpy as jnp
    with jax_x64(dtype):
        p = {k: jnp.asarray(v) for k, v in params.items()}
        args = [jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in inputs]
        return float(jnp.reshape(call(fn, p, args), ()))
