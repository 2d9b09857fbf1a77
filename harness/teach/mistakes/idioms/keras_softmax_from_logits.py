"""Softmax probabilities fed to a loss built with `from_logits=True`: the softmax taken twice"""
FRAMEWORK = "tensorflow"
# the 3-4-2 network of mlp_3_4_2 as a classifier: two logits, softmax cross-entropy
NETWORK = {"name": "mlp_3_4_2_softmax", "seed": 0, "input_shape": [3],
           "data": {"source": "random_classification", "classes": 2, "examples": 16},
           "layers": [{"type": "dense", "units": 4}, {"type": "sigmoid"},
                      {"type": "dense", "units": 2}],
           "loss": {"type": "softmax_cross_entropy"}}
WHY = ("from_logits=True makes the loss apply its own softmax, so given probabilities it "
       "takes the cross-entropy of softmax(softmax(z)), whose gradient is not the model's "
       "(Keras 3 rescues Dense(activation='softmax') and a softmax inside a tf.function, "
       "with a warning, but not a tf.nn.softmax run eagerly, as here).")


def model(params):
    """Dense(4, sigmoid), Dense(2): the network, returning logits, with the given weights."""
    import keras
    net = keras.Sequential([keras.layers.Dense(4, activation="sigmoid"), keras.layers.Dense(2)])
    net.build((None, 3))
    net.set_weights([params["0.W"], params["0.b"], params["2.W"], params["2.b"]])
    return net


def gradients(tape, loss, net):
    """The gradient of every weight, by the spec's names (kernel, bias per Dense layer)."""
    grads = tape.gradient(loss, net.trainable_variables)
    return dict(zip(["0.W", "0.b", "2.W", "2.b"], (g.numpy() for g in grads)))


def wrong(params, x, y):
    import keras
    import tensorflow as tf
    net, loss_fn = model(params), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        probs = tf.nn.softmax(net(x))     # probabilities (wanted for the accuracy, say)
        loss = loss_fn(y, probs)          # ... and a loss that takes logits
    return gradients(tape, loss, net)


def right(params, x, y):
    import keras
    import tensorflow as tf
    net, loss_fn = model(params), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        logits = net(x)
        loss = loss_fn(y, logits)
    return gradients(tape, loss, net)
