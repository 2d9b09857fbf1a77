"""The four implementations of every network: numpy_manual, torch_autograd, tf_tape, jax_grad."""
