"""Every spec layer as an nn.Module: torch.nn's own wherever it computes the canonical math.

Autograd supplies every backward pass, so each class below is only a forward. The
custom ones say on their first line why torch.nn has no module for the job.
Images run NCHW here (the model permutes its NHWC input once); any other tensor
keeps the canonical layout, features on the last axis. Shapes include the batch B.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LAYERS", "build_layer"]


def explicit_options(section, native, **keys):
    """torch keyword -> spec key. Aligned: all of them; native: only those the user wrote."""
    return {kw: section[key] for kw, key in keys.items()
            if not native or key in section["explicit"]}


# ---- elementwise -----------------------------------------------------------------------------

def activation(layer, native):
    kind = layer["type"]
    if kind == "leaky_relu":
        return nn.LeakyReLU(**explicit_options(layer, native, negative_slope="alpha"))
    if kind == "gelu":
        return nn.GELU(approximate="none")  # exact: x * Phi(x), not the tanh approximation
    plain = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "identity": nn.Identity}
    return plain[kind]()


class Dropout(nn.Module):
    """Inverted dropout with the harness's keep-mask: nn.Dropout draws its own from torch's RNG."""

    def __init__(self, layer, native):
        super().__init__()
        self.name, self.rate = layer["name"], layer["rate"]
        self.image = len(layer["in_shape"]) == 3
        self.mask = None  # set by the model before each forward: (B, *in_shape), canonical

    def forward(self, x):
        mask = self.mask.permute(0, 3, 1, 2) if self.image else self.mask  # NHWC -> NCHW, like x
        return x * (mask / (1 - self.rate))


class Flatten(nn.Module):
    """(B, C, H, W) -> (B, H*W*C): nn.Flatten would give the C, H, W order of NCHW."""

    def __init__(self, layer, native):
        super().__init__()
        self.image = len(layer["in_shape"]) == 3

    def forward(self, x):
        if self.image:
            x = x.permute(0, 2, 3, 1)  # back to (B, H, W, C), the order of the next Dense's rows
        return x.flatten(1)


# ---- dense and convolution -----------------------------------------------------------------

class ChannelsLast:
    """Mixin for a last-axis layer (Linear, LayerNorm) on an NCHW image: its axis is C, axis 1."""

    def forward(self, x):
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)  # via (B, H, W, C)


class ImageLinear(ChannelsLast, nn.Linear):
    pass


def dense(layer, native):
    n_in, units = layer["in_shape"][-1], layer["units"]
    linear = ImageLinear if len(layer["in_shape"]) == 3 else nn.Linear  # acts on the last axis
    return linear(n_in, units, bias=layer["use_bias"])


def pad_arg(pads):
    """[[top, bottom], [left, right]] -> F.pad's order, last axis first."""
    (top, bottom), (left, right) = pads
    return (left, right, top, bottom)


class Conv2D(nn.Conv2d):
    """nn.Conv2d with TensorFlow's 'same': padding='same' refuses stride > 1, so pad explicitly."""

    def __init__(self, layer, native):
        kernel, c_in = layer["kernel_size"], layer["in_shape"][2]
        super().__init__(c_in, layer["filters"], kernel, stride=layer["strides"], padding=0,
                         bias=layer["use_bias"])
        self.pads = pad_arg(layer["pads"])

    def forward(self, x):
        return super().forward(F.pad(x, self.pads))  # (B, C_in, Hp, Wp) -> (B, C_out, Ho, Wo)


class MaxPool2D(nn.MaxPool2d):
    """nn.MaxPool2d pads symmetrically, at most half a window: pad with -inf ourselves."""

    def __init__(self, layer, native):
        super().__init__(layer["pool_size"], stride=layer["strides"])
        self.pads = pad_arg(layer["pads"])

    def forward(self, x):
        return super().forward(F.pad(x, self.pads, value=-math.inf))  # -inf never wins a max


class AvgPool2D(nn.AvgPool2d):
    """Mean over the real pixels only; count_include_pad=False covers symmetric padding only."""

    def __init__(self, layer, native):
        super().__init__(layer["pool_size"], stride=layer["strides"])
        self.pads = pad_arg(layer["pads"])

    def forward(self, x):
        ones = torch.ones_like(x[:1, :1])  # (1, 1, H, W)
        # mean of the zero-padded window / fraction of it that is real = mean of the real pixels
        return super().forward(F.pad(x, self.pads)) / super().forward(F.pad(ones, self.pads))


# ---- normalisation ---------------------------------------------------------------------------

class ChannelsFirst:
    """Mixin for nn.BatchNorm1d on (B, T, F): it normalises axis 1 of its (B, C, L) input."""

    def forward(self, x):
        return super().forward(x.transpose(1, 2)).transpose(1, 2)  # via (B, F, T)


class SequenceBatchNorm(ChannelsFirst, nn.BatchNorm1d):
    pass


def batchnorm(layer, native):
    """Statistics over every axis but the canonical last one, i.e. the features or channels."""
    rank = len(layer["in_shape"])
    kind = {1: nn.BatchNorm1d, 2: SequenceBatchNorm, 3: nn.BatchNorm2d}.get(rank)
    if kind is None:
        raise NotImplementedError(f"batchnorm on per-example shape {layer['in_shape']}")
    # momentum is the weight of the new batch statistic, as in the spec; the running
    # variance takes the unbiased batch variance (torch/nn/modules/batchnorm.py).
    return kind(layer["in_shape"][-1], **explicit_options(layer, native, eps="eps",
                                                          momentum="momentum"))


class ImageLayerNorm(ChannelsLast, nn.LayerNorm):
    pass


def layernorm(layer, native):
    norm = ImageLayerNorm if len(layer["in_shape"]) == 3 else nn.LayerNorm
    return norm(layer["in_shape"][-1], **explicit_options(layer, native, eps="eps"))


# ---- composition -----------------------------------------------------------------------------

class Residual(nn.Sequential):
    """y = x + f(x), f the sub-layers in order; their names "0", "1", ... are the "j" of "i.j"."""

    def __init__(self, layer, native):
        super().__init__(*(LAYERS[sub["type"]](sub, native) for sub in layer["layers"]))

    def forward(self, x):
        return x + super().forward(x)


class SequenceMean(nn.Module):
    """(B, T, D) -> (B, D): a reduction, which torch.nn has no module for."""

    def __init__(self, layer, native):
        super().__init__()

    def forward(self, x):
        return x.mean(1)


def embedding(layer, native):
    return nn.Embedding(layer["vocab"], layer["dim"])  # token ids (B, T) -> (B, T, dim)


# ---- recurrent -------------------------------------------------------------------------------

class Recurrent:
    """Mixin for nn.RNN/LSTM/GRU: they return (outputs, final state), the spec one tensor."""

    def __init__(self, layer, native):
        super().__init__(layer["in_shape"][1], layer["units"], batch_first=True)
        self.return_sequences = layer["return_sequences"]
        if layer["type"] != "gru":
            # torch adds two biases where the spec has one: bias_hh stays layout.py's zero
            self.bias_hh_l0.requires_grad_(False)

    def forward(self, x):
        y, _ = super().forward(x)                        # (B, T, F) -> (B, T, H)
        return y if self.return_sequences else y[:, -1]  # (B, T, H) or (B, H)


class SimpleRNN(Recurrent, nn.RNN):
    """h = tanh(x W + h_prev U + b); nn.RNN's default nonlinearity is tanh."""


class LSTM(Recurrent, nn.LSTM):
    """Gates [i, f, g, o], torch's own order."""


class GRU(Recurrent, nn.GRU):
    """Gates [r, z, n] and the reset gate applied after U, torch's own form."""


# ---- attention -------------------------------------------------------------------------------

class Attention(nn.Module):
    """Self-attention; nn.MultiheadAttention fixes key_dim = D / heads, the spec does not."""

    def __init__(self, layer, native):
        super().__init__()
        self.heads, self.key_dim, self.causal = layer["heads"], layer["key_dim"], layer["causal"]
        d, inner, bias = layer["in_shape"][1], self.heads * self.key_dim, layer["use_bias"]
        self.query, self.key, self.value = (nn.Linear(d, inner, bias=bias) for _ in range(3))
        self.out = nn.Linear(inner, d, bias=bias)

    def split(self, t):
        """(B, T, heads*key_dim) -> (B, heads, T, key_dim)."""
        return t.unflatten(-1, (self.heads, self.key_dim)).transpose(1, 2)

    def forward(self, x):
        q, k, v = self.split(self.query(x)), self.split(self.key(x)), self.split(self.value(x))
        # softmax(q k^T / sqrt(key_dim)) v; is_causal lets query i see keys j <= i
        o = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)  # (B, heads, T, key_dim)
        return self.out(o.transpose(1, 2).flatten(2))  # (B, T, heads*key_dim) -> (B, T, D)


# ---- the catalog -----------------------------------------------------------------------------

LAYERS = {  # spec type -> (layer, native) -> nn.Module: torch.nn's own, or a class above
    **dict.fromkeys(("sigmoid", "tanh", "relu", "leaky_relu", "gelu", "identity"), activation),
    "dense": dense, "flatten": Flatten, "conv2d": Conv2D, "maxpool2d": MaxPool2D,
    "avgpool2d": AvgPool2D, "batchnorm": batchnorm, "layernorm": layernorm, "dropout": Dropout,
    "residual": Residual, "rnn": SimpleRNN, "lstm": LSTM, "gru": GRU, "attention": Attention,
    "sequence_mean": SequenceMean, "embedding": embedding,
}


def build_layer(layer, dtype, native):
    """The nn.Module for one spec entry, its parameters in `dtype` ("float64" or "float32")."""
    return LAYERS[layer["type"]](layer, native).to(getattr(torch, dtype))
