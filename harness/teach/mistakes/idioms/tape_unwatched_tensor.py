"""A `GradientTape` that never watches the biases, kept as plain tensors: `None` gradients"""
FRAMEWORK = "tensorflow"
NETWORK = "mlp_3_4_2"
WHY = ("A tape watches trainable tf.Variables by itself and a plain tensor only after "
       "tape.watch(), so the biases' gradients come back None (and a Keras optimizer skips "
       "them with a warning: they never train).")


def loss(W1, b1, W2, b2, x, y):
    import tensorflow as tf
    out = tf.sigmoid(tf.sigmoid(x @ W1 + b1) @ W2 + b2)
    return tf.reduce_mean(0.5 * tf.reduce_sum((out - y) ** 2, 1))


def by_name(grads):
    """The gradients by the spec's names; None stays None."""
    names = ["0.W", "0.b", "2.W", "2.b"]
    return {k: None if g is None else g.numpy() for k, g in zip(names, grads)}


def wrong(params, x, y):
    import tensorflow as tf
    W1, W2 = tf.Variable(params["0.W"]), tf.Variable(params["2.W"])
    b1, b2 = tf.constant(params["0.b"]), tf.constant(params["2.b"])   # plain tensors
    with tf.GradientTape() as tape:
        value = loss(W1, b1, W2, b2, x, y)
    grads = tape.gradient(value, [W1, b1, W2, b2])                     # None for b1, b2
    return by_name(grads)


def right(params, x, y):
    import tensorflow as tf
    W1, W2 = tf.Variable(params["0.W"]), tf.Variable(params["2.W"])
    b1, b2 = tf.Variable(params["0.b"]), tf.Variable(params["2.b"])   # variables: watched
    with tf.GradientTape() as tape:
        value = loss(W1, b1, W2, b2, x, y)
    grads = tape.gradient(value, [W1, b1, W2, b2])
    return by_name(grads)
