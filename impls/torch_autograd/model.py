"""The network as one nn.Module; autograd runs the chain rule backwards from the loss.

The harness speaks canonical NumPy arrays; the model speaks torch tensors in torch's
layouts. Every crossing goes through layout.py, one layer at a time.
"""
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..canonical import by_layer, layer_of, local_params, no_gradient
from .layers import Dropout, build_layer
from .layout import activation_from_native, from_native, to_native
from .losses import build_loss

__all__ = ["build_model", "set_params", "get_params", "loss_value", "probe_losses",
           "loss_and_gradients", "layer_values", "hessian_vector_product"]


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
    return from_layers((layer, native_of(module))
                       for layer, module in zip(model.spec["layers"], model.layers))


def from_layers(natives):
    """{canonical name: tensor} from (spec layer, {torch name: tensor}) pairs."""
    out = {}
    for layer, native in natives:
        local = from_native(layer, native)
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
    return {k: array(tensors[k]) for k in keys}


def array(t):
    """A tensor as a NumPy array (a copy: training moves tensors); bfloat16, which NumPy has
    not, as ml_dtypes' bfloat16, by way of float32 (exact both ways)."""
    t = t.detach()
    if t.dtype == torch.bfloat16:
        import ml_dtypes
        return t.float().numpy().astype(ml_dtypes.bfloat16)
    return t.numpy().copy()


def tensor(a):
    """The inverse of `array`: ml_dtypes' bfloat16 arrays, which torch cannot read, via float32.
    Its dtype's scalar type names them: dtype.name is worked out anew on every read, which
    took as long as the conversion itself."""
    if getattr(a, "dtype", None) is not None and a.dtype.type.__name__ == "bfloat16":
        return torch.from_numpy(a.astype("float32")).to(torch.bfloat16)
    return torch.as_tensor(a)


def held(model):
    """[(spec layer, {torch name: tensor})]: the parameters and buffers each layer's
    state_dict holds, the tensors themselves (keep_vars), which set_params copies into and
    get_params reads. A run that does both at every step (train.lockstep) lists them once:
    state_dict() and load_state_dict() walk every sub-module and run its hooks each call.
    The list holds while the modules keep these tensors, as they do through a run (its
    optimizer holds the same parameters)."""
    return [(layer, module.state_dict(keep_vars=True))
            for layer, module in zip(model.spec["layers"], model.layers)]


def set_params(model, params, state):
    load(held(model), params, state)


def load(layers, params, state):
    """set_params into held(model)'s tensors."""
    grouped = by_layer({k: tensor(v) for k, v in {**params, **state}.items()})
    with torch.no_grad():
        for layer, tensors in layers:
            copy_into(tensors, to_native(layer, grouped.get(layer["name"], {})))


def copy_into(tensors, native):
    """What load_state_dict(native, strict=False) does to a layer's own tensors (held):
    each is copied into in place, of the same shape. A name the layer does not hold is
    left out, as strict=False leaves it, and what `native` lacks keeps its value (BatchNorm's
    num_batches_tracked, torch's own counter, which the spec has not). Under no_grad."""
    for name, value in native.items():
        target = tensors.get(name)
        if target is None:
            continue
        if target.shape != value.shape:
            raise RuntimeError(f"size mismatch for {name}: copying a tensor of shape "
                               f"{tuple(value.shape)} into one of shape {tuple(target.shape)}")
        target.copy_(value)


def get_params(model):
    return read(held(model), names(model, "params"), names(model, "state"))


def read(layers, params, state):
    """get_params from held(model)'s tensors, and the names(model, ...) of params and state."""
    with torch.no_grad():  # the canonical views of parameters, without autograd's records
        tensors = from_layers(layers)
    return to_numpy(tensors, params), to_numpy(tensors, state)


def as_tensors(x, y, masks):
    return tensor(x), tensor(y), {k: tensor(m) for k, m in masks.items()}


@contextmanager
def buffers_kept(buffers):
    """These buffers, model.buffers() (BatchNorm's running statistics and counter), put back
    as they were on the way out."""
    saved = [b.clone() for b in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(buffers, saved):
                buffer.copy_(value)


def loss_value(model, x, y, masks):
    """The loss alone: no graph, and the running statistics left alone."""
    return loss_of(model, *as_tensors(x, y, masks), list(model.buffers()))


def loss_of(model, x, y, masks, buffers):
    """loss_value of tensors, with the model's buffers listed: model.buffers() walks every
    module, and probe_losses lists them once for all its values."""
    with torch.no_grad(), buffers_kept(buffers):
        loss = model.loss(model(x, masks), y)
    return loss.item()


def probe_losses(model, params, x, y, masks, name, values):
    """The loss with the parameter `name` at each of `values` in turn, the others at `params`
    (as set): only its layer's module is loaded again each time. Then the layer is set back."""
    at = [layer["name"] for layer in model.spec["layers"]].index(layer_of(name))
    layer, module = model.spec["layers"][at], model.layers[at]
    key = name[len(layer["name"]) + 1:]
    local = {k: tensor(v) for k, v in local_params(params, layer).items()}
    x, y, masks = as_tensors(x, y, masks)
    tensors, buffers = module.state_dict(keep_vars=True), list(model.buffers())
    losses = []
    with torch.no_grad():
        for value in values:
            copy_into(tensors, to_native(layer, dict(local, **{key: tensor(value)})))
            losses.append(loss_of(model, x, y, masks, buffers))
        copy_into(tensors, to_native(layer, local))
    return losses


def loss_and_gradients(model, x, y, masks):
    x, y, masks = as_tensors(x, y, masks)
    model.zero_grad()
    loss = model.loss(model(x, masks), y)
    loss.backward()  # every parameter's .grad, by the chain rule through the recorded graph
    grads = canonical(model, lambda module: {k: p.grad for k, p in module.named_parameters()
                                             if p.grad is not None})
    state = canonical(model, lambda module: module.state_dict())
    params, state_names = names(model, "params"), names(model, "state")
    cut = next((name for name in params if name not in grads), None)
    if cut is not None:
        raise no_gradient(model.spec, cut, "torch")
    return loss.item(), to_numpy(grads, params), to_numpy(state, state_names)


def layer_values(model, x, y, masks):
    """Each top-level layer's output and dloss/d(its input), in a pass of their own: forward
    hooks catch the tensors as they go by, and autograd.grad differentiates the loss for
    them alone (no parameter's .grad moves). {layer name: array}, spec order, canonical
    layouts. A layer fed token ids has no input gradient and no entry in the second dict."""
    x, y, masks = as_tensors(x, y, masks)
    x.requires_grad_(model.spec["input"] != "tokens")  # the first layer's dL/dx too
    seen = {}  # layer name -> (its input, its output), native layouts

    def catch(name):
        return lambda module, args, output: seen.__setitem__(name, (args[0], output))

    hooks = [module.register_forward_hook(catch(layer["name"]))
             for layer, module in zip(model.spec["layers"], model.layers)]
    try:
        with buffers_kept(list(model.buffers())):  # put back after the backward, which reads them
            loss = model.loss(model(x, masks), y)
            wanted = [layer for layer in model.spec["layers"]
                      if seen[layer["name"]][0].requires_grad]
            grads = torch.autograd.grad(loss, [seen[layer["name"]][0] for layer in wanted])
    finally:
        for hook in hooks:
            hook.remove()
    outputs = {layer["name"]: activation_from_native(layer["out_shape"], seen[layer["name"]][1])
               for layer in model.spec["layers"]}
    input_grads = {layer["name"]: activation_from_native(layer["in_shape"], g)
                   for layer, g in zip(wanted, grads)}
    return to_numpy(outputs, list(outputs)), to_numpy(input_grads, list(input_grads))


def hessian_vector_product(model, x, y, masks, vector):
    """H v, the Hessian of the loss times a direction v of the parameters ({canonical name:
    array}), by double backward: autograd.grad with create_graph=True records the gradient's
    own graph, and differentiating <gradient, v> through it gives H v (no .grad moves).
    F.scaled_dot_product_attention runs its math backend here: the fused CPU kernel it picks
    otherwise has no derivative of its backward ("derivative for
    aten::_scaled_dot_product_flash_attention_for_cpu_backward is not implemented").
    -> ({canonical name: (H v) entry}, "double backward")."""
    x, y, masks = as_tensors(x, y, masks)
    entries = [(layer, module, dict(module.named_parameters())) for layer, module
               in zip(model.spec["layers"], model.layers)]
    params, directions = [], []
    for layer, module, named in entries:
        local = {k: torch.as_tensor(v) for k, v in local_params(vector, layer).items()}
        native = to_native(layer, local)
        for name, p in named.items():  # LSTM's frozen bias_hh takes no gradient: left out
            if p.requires_grad:
                params.append(p)
                directions.append(native[name].to(p.dtype))
    with buffers_kept(list(model.buffers())), sdpa_kernel(SDPBackend.MATH):
        loss = model.loss(model(x, masks), y)
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        dot = sum((g * v).sum() for g, v in zip(grads, directions) if g is not None)
        hv = (torch.autograd.grad(dot, params, allow_unused=True)
              if torch.is_tensor(dot) and dot.requires_grad else [None] * len(params))
    found = dict(zip(map(id, params), hv))  # None: no second derivative reaches it, H v = 0
    out = {}
    for layer, module, named in entries:
        native = {k: torch.zeros_like(p) if found[id(p)] is None else found[id(p)]
                  for k, p in named.items() if id(p) in found}
        out.update({f"{layer['name']}.{k}": v for k, v in from_native(layer, native).items()})
    return to_numpy(out, names(model, "params")), "double backward"
