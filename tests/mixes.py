"""Every layer type in four small models: the default test run's cross-framework cases for
second order and reduced precision, where each model costs every framework a compile.

Together they hold every layer type of tests/cases.py's LAYERS (checked in test_hvp.py),
in the variants where it matters (strides, explicit padding, causal attention, nested
residuals); the exhaustive one-model-per-layer runs are marked slow.
"""
from crossgrad.harness.spec.examples import DIGITS_IMG, NORMAL_BIAS, TOKENS, dense, spec

MIXES = {
    # only layers NumPy has a hand R-operator for: its H v is exact here
    "mix_r_operator": spec("mix_r_operator", [
        dense(7, init="he_uniform", bias_init=NORMAL_BIAS), {"type": "sigmoid"},
        dense(6, bias_init=NORMAL_BIAS), {"type": "relu"},
        dense(6), {"type": "leaky_relu", "alpha": 0.2},
        dense(6, bias_init=NORMAL_BIAS), {"type": "gelu"}, {"type": "dropout", "rate": 0.3},
        dense(5, use_bias=False), {"type": "identity"}, {"type": "tanh"}, dense(10)],
        [64], DIGITS_IMG),
    "mix_image": spec("mix_image", [
        {"type": "conv2d", "filters": 3, "kernel_size": [3, 2], "strides": [2, 2],
         "padding": "same", "bias_init": NORMAL_BIAS},
        {"type": "maxpool2d", "pool_size": [3, 2], "strides": [2, 1], "padding": "same"},
        {"type": "conv2d", "filters": 2, "kernel_size": 2, "padding": [1, 2], "use_bias": False},
        {"type": "sigmoid"}, {"type": "avgpool2d", "pool_size": 2, "padding": [1, 0]},
        {"type": "flatten"}, dense(6), {"type": "residual", "layers": [
            dense(5), {"type": "tanh"},
            {"type": "residual", "layers": [dense(5), {"type": "sigmoid"}]}, dense(6)]},
        dense(10)], [8, 8, 1], DIGITS_IMG),
    "mix_sequence": spec("mix_sequence", [
        {"type": "embedding", "vocab": 11, "dim": 6, "init": {"type": "normal", "std": 1.0}},
        {"type": "attention", "heads": 2, "key_dim": 3, "causal": True, "bias_init": NORMAL_BIAS},
        {"type": "rnn", "units": 5, "return_sequences": True, "bias_init": NORMAL_BIAS},
        {"type": "gru", "units": 4, "return_sequences": True},
        {"type": "lstm", "units": 4, "return_sequences": True},
        # no second attention: fed LSTM states, its scores are all near 0, and its dL/dWq,
        # a cancellation, is beyond float16 pair by pair (one model per type, slow, has one)
        {"type": "sequence_mean"}, dense(3)], [5], TOKENS),
    # TensorFlow's H v is wrong through both norms (tf.nn.moments): kept apart
    "mix_norms": spec("mix_norms", [
        {"type": "conv2d", "filters": 3, "kernel_size": 3, "use_bias": False},
        {"type": "batchnorm", "gamma_init": {"type": "normal", "mean": 1, "std": 0.2}},
        {"type": "relu"}, {"type": "flatten"}, dense(7, use_bias=False),
        {"type": "batchnorm", "momentum": 0.3, "eps": 1e-3},
        {"type": "layernorm", "eps": 1e-3, "beta_init": NORMAL_BIAS,
         "gamma_init": {"type": "normal", "mean": 1, "std": 0.2}},
        {"type": "tanh"}, dense(10)], [8, 8, 1], {"source": "digits", "batch_size": 9}),
}
