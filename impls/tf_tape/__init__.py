"""Keras layers under tf.GradientTape: the TensorFlow implementation."""
