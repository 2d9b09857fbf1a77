"""The zoo's specs written as a PyTorch practitioner and a Keras practitioner would write them.

`torch_source(spec)` is the text of a Python file whose `build()` returns the network as
an nn.Module (images NCHW, a Linear after an NCHW flatten, `out, _ = lstm(x)` and
`out[:, -1]`, x + f(x) blocks, nn.MultiheadAttention with a causal mask, functional
activations beside nn modules); `keras_model(spec)` builds it with the Keras functional
API (Dense layers with their activation fused in, Add layers and `x + y`). The tests
import them back and check the original against the four.
"""
def torch_source(spec):
    classes = []
    body = _torch_class("Net", spec.layers, classes)
    return "\n".join(["import torch", "from torch import nn", "", "", *classes, body, "",
                      "def build():", "    torch.manual_seed(0)", "    return Net()", ""])


def _torch_class(name, layers, classes):
    init, forward = [], []
    for i, layer in enumerate(layers):
        attr = f"self.l{i}"
        kind, shape = layer["type"], layer["in_shape"]
        module, line = None, f"x = {attr}(x)"
        if kind == "dense":
            module = f"nn.Linear({shape[-1]}, {layer['units']}, bias={layer['use_bias']})"
        elif kind == "conv2d":
            padding = {"same": '"same"', "valid": "0"}.get(layer["padding"], layer["padding"])
            module = (f"nn.Conv2d({shape[2]}, {layer['filters']}, {tuple(layer['kernel_size'])}, "
                      f"stride={tuple(layer['strides'])}, padding={padding})")
        elif kind in ("maxpool2d", "avgpool2d"):
            cls = "MaxPool2d" if kind == "maxpool2d" else "AvgPool2d"
            module = f"nn.{cls}({tuple(layer['pool_size'])}, {tuple(layer['strides'])})"
        elif kind == "flatten":
            module, line = None, "x = x.view(x.size(0), -1)" if i % 2 else "x = torch.flatten(x, 1)"
        elif kind == "relu":
            module, line = None, "x = torch.relu(x)"
        elif kind == "tanh":
            module, line = None, "x = x.tanh()"
        elif kind in ("sigmoid", "gelu", "identity"):
            module = {"sigmoid": "nn.Sigmoid()", "gelu": "nn.GELU()",
                      "identity": "nn.Identity()"}[kind]
        elif kind == "leaky_relu":
            module = f"nn.LeakyReLU({layer['alpha']})"
        elif kind == "batchnorm":
            module = (f"nn.BatchNorm{'2d' if len(shape) == 3 else '1d'}({shape[-1]}, "
                      f"eps={layer['eps']}, momentum={layer['momentum']})")
        elif kind == "layernorm":
            module = f"nn.LayerNorm({shape[-1]}, eps={layer['eps']})"
        elif kind == "dropout":
            module = f"nn.Dropout({layer['rate']})"
        elif kind == "embedding":
            module = f"nn.Embedding({layer['vocab']}, {layer['dim']})"
        elif kind == "sequence_mean":
            line = "x = x.mean(1)"
        elif kind in ("rnn", "lstm", "gru"):
            cls = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[kind]
            module = f"nn.{cls}({shape[1]}, {layer['units']}, batch_first=True)"
            line = f"x, _ = {attr}(x)"
            if not layer["return_sequences"]:
                line += "\n        x = x[:, -1]"
        elif kind == "attention":
            d, heads = shape[1], layer["heads"]
            assert layer["key_dim"] * heads == d, "nn.MultiheadAttention has key_dim = D / heads"
            module = f"nn.MultiheadAttention({d}, {heads}, batch_first=True)"
            mask = "None"
            if layer["causal"]:
                init.append(f"self.register_buffer('m{i}', torch.triu(torch.ones({shape[0]}, "
                            f"{shape[0]}, dtype=torch.bool), 1))")
                mask = f"self.m{i}"
            line = f"x = {attr}(x, x, x, attn_mask={mask}, need_weights=False)[0]"
        elif kind == "residual":
            sub, slot = f"Block{len(classes)}", len(classes)
            classes.append(None)
            classes[slot] = _torch_class(sub, layer["layers"], classes) + "\n\n"
            module, line = f"{sub}()", f"x = x + {attr}(x)"
        else:
            raise NotImplementedError(kind)
        if module:
            init.append(f"{attr} = {module}")
        forward.append(line)
    return "\n".join([f"class {name}(nn.Module):", "    def __init__(self):",
                      "        super().__init__()", *[f"        {s}" for s in init], "",
                      "    def forward(self, x):", *[f"        {s}" for s in forward],
                      "        return x", ""])


def nchw(shape):
    """A canonical per-example shape in PyTorch's layout."""
    return [shape[2], shape[0], shape[1]] if len(shape) == 3 else list(shape)


def keras_model(spec):
    import keras
    inputs = keras.Input(tuple(spec.input_shape),
                         dtype="int32" if spec.data["input"] == "tokens" else "float32")
    keras.utils.set_random_seed(0)
    return keras.Model(inputs, _keras_layers(spec.layers, inputs, top=True))


ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu")


def _keras_layers(layers, x, top=False):
    import keras
    L = keras.layers
    skip = False
    for i, layer in enumerate(layers):
        if skip:
            skip = False
            continue
        kind = layer["type"]
        after = layers[i + 1]["type"] if i + 1 < len(layers) else None
        if kind == "dense":
            fused = top and after in ACTIVATIONS   # Dense(activation=...): two spec layers
            skip = fused
            x = L.Dense(layer["units"], use_bias=layer["use_bias"],
                        activation=after if fused else None)(x)
        elif kind == "conv2d":
            fused = after == "relu"
            skip = fused
            x = L.Conv2D(layer["filters"], tuple(layer["kernel_size"]),
                         strides=tuple(layer["strides"]), padding=layer["padding"],
                         activation="relu" if fused else None)(x)
        elif kind in ("maxpool2d", "avgpool2d"):
            cls = L.MaxPooling2D if kind == "maxpool2d" else L.AveragePooling2D
            x = cls(tuple(layer["pool_size"]), tuple(layer["strides"]), padding=layer["padding"])(x)
        elif kind == "flatten":
            x = L.Flatten()(x)
        elif kind == "relu":
            x = L.ReLU()(x)
        elif kind in ACTIVATIONS or kind == "identity":
            x = L.Activation("linear" if kind == "identity" else kind)(x)
        elif kind == "leaky_relu":
            x = L.LeakyReLU(layer["alpha"])(x)
        elif kind == "batchnorm":
            x = L.BatchNormalization(momentum=1 - layer["momentum"], epsilon=layer["eps"])(x)
        elif kind == "layernorm":
            x = L.LayerNormalization(epsilon=layer["eps"])(x)
        elif kind == "dropout":
            x = L.Dropout(layer["rate"])(x)
        elif kind == "embedding":
            x = L.Embedding(layer["vocab"], layer["dim"])(x)
        elif kind == "sequence_mean":
            x = L.GlobalAveragePooling1D()(x)
        elif kind in ("rnn", "lstm", "gru"):
            cls = {"rnn": L.SimpleRNN, "lstm": L.LSTM, "gru": L.GRU}[kind]
            x = cls(layer["units"], return_sequences=layer["return_sequences"])(x)
        elif kind == "attention":
            x = L.MultiHeadAttention(layer["heads"], layer["key_dim"],
                                     use_bias=layer["use_bias"])(x, x,
                                                                 use_causal_mask=layer["causal"])
        elif kind == "residual":
            f = _keras_layers(layer["layers"], x)
            x = L.Add()([x, f]) if i % 2 else x + f
        else:
            raise NotImplementedError(kind)
    return x


def data_source(spec):
    """--data for a zoo spec: its own source (mnist would need files: digits28 instead)."""
    return "digits28" if spec.data["source"] == "mnist" else spec.data["source"]
