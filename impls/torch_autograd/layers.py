"""Every spec layer as an nn.Module: torch.nn's own wherever it computes the canonical math.

One builder per layer type, `def <type>(layer, dtype, native)`, with the same name,
signature, order and first docstring line (the canonical equation) as in the other three
folders. Autograd supplies every backward pass, so the classes below are forwards only;
each custom one says on its first line why torch.nn has no module for the job.
Images run NCHW here (the model permutes its NHWC input once); any other tensor
keeps the canonical layout, features on the last axis. Shapes include the batch B.
`build_layer` moves every module to the model's dtype.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..canonical import check_output, plugin_error, plugin_method
from .layout import image_to_canonical, image_to_native

__all__ = ["sigmoid", "tanh", "relu", "leaky_relu", "gelu", "identity", "dropout", "flatten",
           "dense", "conv2d", "maxpool2d", "avgpool2d", "batchnorm", "layernorm", "residual",
           "sequence_mean", "embedding", "rnn", "lstm", "gru", "attention", "plugin",
           "LAYERS", "build_layer"]


def is_image(shape):
    """A per-example (H, W, C) shape: such tensors run NCHW in this model."""
    return len(shape) == 3


# ---- elementwise -----------------------------------------------------------------------------

def sigmoid(layer, dtype, native):
    """y = 1 / (1 + exp(-x)), elementwise: x, y (B, ...)

    nn.Sigmoid.
    """
    return nn.Sigmoid()


def tanh(layer, dtype, native):
    """y = tanh(x), elementwise: x, y (B, ...)

    nn.Tanh.
    """
    return nn.Tanh()


def relu(layer, dtype, native):
    """y = max(x, 0), elementwise, slope 0 at x = 0: x, y (B, ...)

    nn.ReLU; autograd's gradient at 0 is 0.
    """
    return nn.ReLU()


def leaky_relu(layer, dtype, native):
    """y = x if x > 0 else alpha * x, elementwise: x, y (B, ...)

    nn.LeakyReLU (torch's default slope, 0.01, is the spec's).
    """
    return nn.LeakyReLU(negative_slope=layer["alpha"])


def gelu(layer, dtype, native):
    """y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2))), elementwise (exact, not tanh): x, y (B, ...)

    nn.GELU(approximate="none"), torch's default: the exact form, not the tanh approximation.
    """
    return nn.GELU(approximate="none")


def identity(layer, dtype, native):
    """y = x: x, y (B, ...)

    nn.Identity.
    """
    return nn.Identity()


class Dropout(nn.Module):
    """Inverted dropout with the harness's keep-mask: nn.Dropout draws its own from torch's RNG."""

    def __init__(self, layer):
        super().__init__()
        self.name, self.rate = layer["name"], layer["rate"]
        self.image = is_image(layer["in_shape"])
        self.mask = None  # set by the model before each forward: (B, *in_shape), canonical

    def forward(self, x):
        mask = image_to_native(self.mask) if self.image else self.mask  # NHWC -> NCHW, like x
        return x * (mask / (1 - self.rate))


def dropout(layer, dtype, native):
    """y = x * mask / (1 - rate), mask (B, ...) of 0 and 1 drawn by the harness: x, y (B, ...)

    A module of its own (Dropout above): nn.Dropout draws its mask from torch's RNG.
    """
    return Dropout(layer)


class Flatten(nn.Module):
    """(B, C, H, W) -> (B, H*W*C): nn.Flatten would give the C, H, W order of NCHW."""

    def __init__(self, layer):
        super().__init__()
        self.image = is_image(layer["in_shape"])

    def forward(self, x):
        if self.image:
            x = image_to_canonical(x)  # (B, H, W, C), the order of the next Dense's rows
        return x.flatten(1)


def flatten(layer, dtype, native):
    """y = x reshaped to (B, H*W*C), row-major over (H, W, C): x (B, H, W, C)

    Flatten above: nn.Flatten on torch's NCHW would order the features (C, H, W).
    """
    return Flatten(layer)


# ---- dense and convolution -----------------------------------------------------------------

class ChannelsLast:
    """Mixin for a last-axis layer (Linear, LayerNorm) on an NCHW image: its axis is C, axis 1."""

    def forward(self, x):
        return image_to_native(super().forward(image_to_canonical(x)))  # via (B, H, W, C)


class ImageLinear(ChannelsLast, nn.Linear):
    pass


def dense(layer, dtype, native):
    """y = x W + b on the last axis: x (B, ..., in), W (in, out), b (out,), y (B, ..., out)

    nn.Linear (its weight is W^T, see layout.py), acting on the last axis; on an image,
    whose channels are torch's axis 1, through the ChannelsLast mixin.
    """
    n_in, units = layer["in_shape"][-1], layer["units"]
    linear = ImageLinear if is_image(layer["in_shape"]) else nn.Linear
    return linear(n_in, units, bias=layer["use_bias"])


def pad_arg(pads):
    """[[top, bottom], [left, right]] -> F.pad's order, last axis first."""
    (top, bottom), (left, right) = pads
    return (left, right, top, bottom)


class Conv2D(nn.Conv2d):
    """nn.Conv2d with the spec's pads: its own `padding` where they are even on both sides
    (TensorFlow's 'same' at stride 1, and any 'valid'); an explicit F.pad first where 'same'
    pads one more at the bottom or right (padding='same' refuses stride > 1)."""

    def __init__(self, layer):
        kernel, c_in = layer["kernel_size"], layer["in_shape"][2]
        (top, bottom), (left, right) = layer["pads"]
        even = top == bottom and left == right
        super().__init__(c_in, layer["filters"], kernel, stride=layer["strides"],
                         padding=(top, left) if even else 0, bias=layer["use_bias"])
        self.pads = None if even else pad_arg(layer["pads"])

    def forward(self, x):
        if self.pads is not None:
            x = F.pad(x, self.pads)  # (B, C_in, H, W) -> (B, C_in, Hp, Wp)
        return super().forward(x)    # -> (B, C_out, Ho, Wo)


def conv2d(layer, dtype, native):
    """y[b,i,j] = sum_{u,v} xpad[b, i*sh+u, j*sw+v] W[u,v] + b: x (B, H, W, C_in), W (kh, kw, C_in, C_out)

    nn.Conv2d, a cross-correlation, on NCHW with a (C_out, C_in, kh, kw) weight (layout.py),
    padded by itself, or after an explicit F.pad where the canonical pads are uneven
    (Conv2D above).
    """
    return Conv2D(layer)


class MaxPool2D(nn.MaxPool2d):
    """nn.MaxPool2d pads symmetrically, at most half a window: pad with -inf ourselves."""

    def __init__(self, layer):
        super().__init__(layer["pool_size"], stride=layer["strides"])
        self.pads = pad_arg(layer["pads"])

    def forward(self, x):
        if any(self.pads):  # 'valid' pads nothing: no copy
            x = F.pad(x, self.pads, value=-math.inf)  # -inf never wins a max
        return super().forward(x)


def maxpool2d(layer, dtype, native):
    """y[b,i,j] = max_{u,v} xpad[b, i*sh+u, j*sw+v], padded with -inf: x (B, H, W, C), y (B, Ho, Wo, C)

    nn.MaxPool2d after an explicit -inf F.pad (MaxPool2D above).
    """
    return MaxPool2D(layer)


class AvgPool2D(nn.AvgPool2d):
    """Mean over the real pixels only; count_include_pad=False covers symmetric padding only."""

    def __init__(self, layer):
        super().__init__(layer["pool_size"], stride=layer["strides"])
        self.pads = pad_arg(layer["pads"])

    def forward(self, x):
        if not any(self.pads):  # 'valid': every window is real pixels (the division is by 1)
            return super().forward(x)
        ones = torch.ones_like(x[:1, :1])  # (1, 1, H, W)
        # mean of the zero-padded window / fraction of it that is real = mean of the real pixels
        return super().forward(F.pad(x, self.pads)) / super().forward(F.pad(ones, self.pads))


def avgpool2d(layer, dtype, native):
    """y[b,i,j] = mean_{u,v} x[b, i*sh+u, j*sw+v], real pixels only: x (B, H, W, C), y (B, Ho, Wo, C)

    nn.AvgPool2d of the zero-padded input divided by that of a padded map of ones
    (AvgPool2D above).
    """
    return AvgPool2D(layer)


# ---- normalisation ---------------------------------------------------------------------------

class ChannelsFirst:
    """Mixin for nn.BatchNorm1d on (B, T, F): it normalises axis 1 of its (B, C, L) input."""

    def forward(self, x):
        return super().forward(x.transpose(1, 2)).transpose(1, 2)  # via (B, F, T)


class SequenceBatchNorm(ChannelsFirst, nn.BatchNorm1d):
    pass


class FlatBatchNorm(SequenceBatchNorm):
    """nn.BatchNorm1d on (B, ..., C) with more axes than an image: the middle ones as one."""

    def forward(self, x):
        return super().forward(x.reshape(len(x), -1, x.shape[-1])).reshape(x.shape)  # (B, L, C)


def batchnorm(layer, dtype, native):
    """y = gamma (x - mean) / sqrt(var + eps) + beta, statistics over all axes but the last: x (B, ..., C)

    nn.BatchNorm1d/2d in training mode (statistics over every axis but the channels');
    its momentum is the weight of the new batch statistic, as in the spec, and its running
    variance takes the unbiased batch variance (torch/nn/modules/batchnorm.py); torch's
    default eps and momentum are the spec's.
    """
    rank = len(layer["in_shape"])
    kind = {1: nn.BatchNorm1d, 2: SequenceBatchNorm, 3: nn.BatchNorm2d}.get(rank, FlatBatchNorm)
    return kind(layer["in_shape"][-1], eps=layer["eps"], momentum=layer["momentum"])


class ImageLayerNorm(ChannelsLast, nn.LayerNorm):
    pass


def layernorm(layer, dtype, native):
    """y = gamma (x - mean) / sqrt(var + eps) + beta, statistics over the last axis: x (B, ..., D)

    nn.LayerNorm over the last axis (on an image, the channels, via ChannelsLast); torch's
    default eps is the spec's.
    """
    norm = ImageLayerNorm if is_image(layer["in_shape"]) else nn.LayerNorm
    return norm(layer["in_shape"][-1], eps=layer["eps"])


# ---- composition -----------------------------------------------------------------------------

class Residual(nn.Sequential):
    """x plus the output of the sub-layers; their names "0", "1", ... are the "j" of "i.j"."""

    def forward(self, x):
        return x + super().forward(x)


def residual(layer, dtype, native):
    """y = x + f(x), f the block's layers in order: x, y (B, ...)

    An nn.Sequential of the sub-layers with the skip added (Residual above); autograd
    follows both paths and adds.
    """
    return Residual(*(build_layer(sub, dtype, native) for sub in layer["layers"]))


class SequenceMean(nn.Module):
    """(B, T, D) -> (B, D): a reduction, which torch.nn has no module for."""

    def forward(self, x):
        return x.mean(1)


def sequence_mean(layer, dtype, native):
    """y = mean over t of x[:, t]: x (B, T, D), y (B, D)

    x.mean(1) in a module (SequenceMean above).
    """
    return SequenceMean()


def embedding(layer, dtype, native):
    """y = E[x], the row of E for each token id: x (B, T) integers, E (vocab, dim), y (B, T, dim)

    nn.Embedding; its weight is E.
    """
    return nn.Embedding(layer["vocab"], layer["dim"])


# ---- recurrent -------------------------------------------------------------------------------

class Recurrent:
    """Mixin for nn.RNN/LSTM/GRU: they return (outputs, final state), the spec one tensor."""

    def __init__(self, layer):
        super().__init__(layer["in_shape"][1], layer["units"], batch_first=True)
        self.return_sequences = layer["return_sequences"]
        if layer["type"] != "gru":
            # torch adds two biases where the spec has one: bias_hh stays layout.py's zero
            self.bias_hh_l0.requires_grad_(False)

    def forward(self, x):
        y, _ = super().forward(x)                        # (B, T, F) -> (B, T, H)
        return y if self.return_sequences else y[:, -1]  # (B, T, H) or (B, H)


class RNN(Recurrent, nn.RNN):
    pass


class LSTM(Recurrent, nn.LSTM):
    pass


class GRU(Recurrent, nn.GRU):
    pass


def rnn(layer, dtype, native):
    """h' = tanh(x W + h U + b): x (B, T, F), W (F, H), U (H, H), b (H,), y (B, T, H) or (B, H)

    nn.RNN (tanh is its default nonlinearity), batch_first; see the Recurrent mixin.
    """
    return RNN(layer)


def lstm(layer, dtype, native):
    """gates [i, f, g, o] = x W + h U + b; c' = f*c + i*g; h' = o*tanh(c'): W (F, 4H), U (H, 4H), b (4H,)

    nn.LSTM, batch_first, gates in torch's own order [i, f, g, o]; of its two biases,
    bias_hh is frozen at zero (the Recurrent mixin and layout.py).
    """
    return LSTM(layer)


def gru(layer, dtype, native):
    """r, z = sigmoid(x W + b[0] + h U + b[1]); n = tanh(x W_n + b[0]_n + r*(h U_n + b[1]_n)); h' = (1-z)*n + z*h

    nn.GRU, batch_first: gates [r, z, n] with the reset gate applied after U, torch's own
    form; bias_ih and bias_hh are b[0] and b[1].
    """
    return GRU(layer)


# ---- attention -------------------------------------------------------------------------------

class Attention(nn.Module):
    """Self-attention; nn.MultiheadAttention fixes key_dim = D / heads, the spec does not."""

    def __init__(self, layer):
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


def attention(layer, dtype, native):
    """y = concat_heads(softmax(q k^T / sqrt(key_dim)) v) Wo + bo, q = x Wq + bq (k, v alike): x, y (B, T, D)

    Four nn.Linear projections around F.scaled_dot_product_attention (Attention above).
    """
    return Attention(layer)


# ---- a user's layer --------------------------------------------------------------------------

class Plugin(nn.Module):
    """A user's layer: one nn.Parameter per local name (so its state_dict keys are the local
    names), and the user's `torch(p, x)` as the forward, on canonical NHWC images."""

    def __init__(self, layer, dtype):
        super().__init__()
        self.entry, self.user_forward = layer, plugin_method(layer, "torch", "torch")
        self.dtype_name = dtype  # the model's: what the plugin must return
        for name, shape in layer["params"].items():  # values come from layout.py's to_native
            if hasattr(self, name):  # register_parameter's own KeyError would name no plugin
                raise plugin_error(layer, layer["plugin"].params,
                                   f"names a parameter {name!r}, an attribute of torch's "
                                   f"nn.Module, which holds each parameter under its name")
            zeros = torch.zeros(shape, dtype=getattr(torch, dtype))
            self.register_parameter(name, nn.Parameter(zeros))

    def forward(self, x):
        # this model runs images NCHW; the plugin sees and returns the canonical NHWC
        if is_image(self.entry["in_shape"]):
            x = image_to_canonical(x)
        p = {name: getattr(self, name) for name in self.entry["params"]}
        y = check_output(self.entry, self.user_forward, self.user_forward(p, x),
                         (len(x), *self.entry["out_shape"]), self.dtype_name, facts)
        return image_to_native(y) if is_image(self.entry["out_shape"]) else y


def plugin(layer, dtype, native):
    """y = the plugin's own forward(p, x), p by local name: x (B, *in_shape), y (B, *out_shape)

    torch: the user's torch(p, x), p name -> nn.Parameter, inside an nn.Module (Plugin
    above); autograd differentiates it.
    """
    return Plugin(layer, dtype)


def facts(y):
    """(shape, dtype name) of a tensor; (None, its type's name) for anything else."""
    if isinstance(y, torch.Tensor):
        return tuple(y.shape), str(y.dtype).removeprefix("torch.")
    return None, type(y).__name__


# ---- the catalog -----------------------------------------------------------------------------

LAYERS = {builder.__name__: builder for builder in (  # spec type -> builder of the same name
    sigmoid, tanh, relu, leaky_relu, gelu, identity, dropout, flatten, dense, conv2d, maxpool2d,
    avgpool2d, batchnorm, layernorm, residual, sequence_mean, embedding, rnn, lstm, gru,
    attention)}


def build_layer(layer, dtype, native):
    """The nn.Module for one spec entry, its parameters in `dtype` ("float64" or "float32");
    a plugin's entry carries "plugin"."""
    builder = plugin if "plugin" in layer else LAYERS[layer["type"]]
    return builder(layer, dtype, native).to(getattr(torch, dtype))
