"""JAX: pure functions over a params pytree, gradients from jax.value_and_grad, Optax."""
from . import runtime  # noqa: F401  first: float64 must be on before any array exists
