"""The network as one nn.Module; autograd runs the chain rule backwards from the loss.

The harness speaks canonical NumPy arrays; the model speaks torch tensors in torch's
layouts. Every crossing goes through layout.py, one layer at a time.
"""
import torch
from torch import nn

from ..canonical import local_params
from .layers import Dropout, build_layer
from .layout import from_native, to_native
from .losses import build_loss

__all__ = ["build_model", "set_params", "get_params", "loss_value", "loss_and_gradients"]


class Model(nn.Module):
    """The spec's layers in an nn.Sequential: its children "0", "1", ... are the layer names."""

    def __init__(self, spec, native):
        super().__init__()
        self.spec, self.native = spec, native
        self.layers = nn.Sequential(*(build_layer(layer, spec["dtype"], native)
                                      for layer in spec["layers"]))
        self.loss = build_loss(spec["loss"], native)
        self.image_input = len(spec["input_shape"]) == 3
        self.dropouts = [m for m in self.layers.modules() if isinstance(m, Dropout)]

    def forward(self, x, masks):
        for dropout in self.dropouts:
            dropout.mask = masks[dropout.name]
        if self.image_input:
            x = x.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W): torch's conv and pool layout
        return self.layers(x)          # shapes: spec layer["out_shape"], images NCHW


def build_model(spec, native=False):
    return Model(spec, native)  # training mode, the default: BatchNorm uses batch statistics


def canonical(model, native_of):
    """{canonical name: tensor}, from native_of(module) -> {torch name: tensor} for each layer."""
    out = {}
    for layer, module in zip(model.spec["layers"], model.layers):
        local = from_native(layer, native_of(module))
        out.update({f"{layer['name']}.{k}": v for k, v in local.items()})
    return out


def names(model, kind):
    """Canonical names of "params" or "state", in spec order (residual blocks depth first)."""
    def walk(layers):
        for layer in layers:
            yield from (f"{layer['name']}.{k}" for k in layer[kind])
            yield from walk(layer.get("layers", []))
    return list(walk(model.spec["layers"]))


def to_numpy(tensors, keys):
    return {k: tensors[k].detach().numpy().copy() for k in keys}  # a copy: training moves tensors


def set_params(model, params, state):
    tensors = {k: torch.as_tensor(v) for k, v in {**params, **state}.items()}
    for layer, module in zip(model.spec["layers"], model.layers):
        # strict=False: BatchNorm's num_batches_tracked is torch's own counter, not in the spec
        module.load_state_dict(to_native(layer, local_params(tensors, layer)), strict=False)


def get_params(model):
    tensors = canonical(model, lambda module: module.state_dict())
    return to_numpy(tensors, names(model, "params")), to_numpy(tensors, names(model, "state"))


def as_tensors(x, y, masks):
    return torch.as_tensor(x), torch.as_tensor(y), {k: torch.as_tensor(m) for k, m in masks.items()}


def loss_value(model, x, y, masks):
    """The loss alone: no graph, and BatchNorm's running statistics put back as they were."""
    x, y, masks = as_tensors(x, y, masks)
    saved = [b.clone() for b in model.buffers()]
    with torch.no_grad():
        loss = model.loss(model(x, masks), y)
        for buffer, value in zip(model.buffers(), saved):
            buffer.copy_(value)
    return loss.item()


def loss_and_gradients(model, x, y, masks):
    x, y, masks = as_tensors(x, y, masks)
    model.zero_grad()
    loss = model.loss(model(x, masks), y)
    loss.backward()  # every parameter's .grad, by the chain rule through the recorded graph
    grads = canonical(model, lambda module: {k: p.grad for k, p in module.named_parameters()
                                             if p.grad is not None})
    state = canonical(model, lambda module: module.state_dict())
    params, state_names = names(model, "params"), names(model, "state")
    return loss.item(), to_numpy(grads, params), to_numpy(state, state_names)
