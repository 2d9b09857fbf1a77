"""The participant "original" for a PyTorch import: the user's nn.Module itself.

Rebuilt in a torch worker from the same file and factory (refused if the file changed),
cast to the spec's dtype, and traced again into the same chain of pieces as at the
import: the pieces say where each canonical tensor lives in the module. The module runs
its own forward, in training mode, on inputs in its own layout (NCHW images); its
nn.Dropout modules apply the harness's masks (their forward is replaced: torch draws none);
an LSTM's or RNN's bias_hh is a frozen zero and its bias_ih the spec's b. Per-layer
values come from the torch.fx trace of that forward, run on the same modules.
Training uses the spec's loss and optimizer, built by the torch implementation
(aligned torch.optim), so that the original's curve is comparable with the four.
"""
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import torch
import torch.fx as fx

from .pieces import to_canonical, to_native, walk
from .torch_graph import chain, load_factory, native_tensor


def implementation(impl, original):
    """The implementation API (impls/README.md) over the original module."""
    def build_model(spec, native=False):
        return Original(spec, original, impl, native)
    model = SimpleNamespace(build_model=build_model, set_params=set_params,
                            get_params=get_params, loss_value=loss_value,
                            loss_and_gradients=loss_and_gradients, layer_values=layer_values,
                            hessian_vector_product=hessian_vector_product)
    return SimpleNamespace(name="original", model=model, train=SimpleNamespace(train=train))


class Original:
    def __init__(self, spec, original, impl, native):
        self.spec, self.native, self.impl = spec, native, impl
        self.dtype = getattr(torch, spec["dtype"])
        with default_dtype(self.dtype):
            self.module = load_factory(original["path"], original["factory"], original["sha256"],
                                       original.get("helpers", ()))
            self.module.to(self.dtype)
            native_shape = spec["input_shape"]
            if len(native_shape) == 3 and spec["input"] != "tokens":
                h, w, c = native_shape
                native_shape = [c, h, w]     # the module's own layout: NCHW
            self.pieces, self.layout, self.gm, _ = chain(self.module, native_shape)
        self.named = list(walk(self.pieces))
        self.masks = {}                      # dropout layer name -> its mask, native layout
        # a spec has no frozen parameters: the four differentiate and train every one, and
        # so does the original (a layer frozen for fine-tuning is compared as trainable)
        self.module.requires_grad_(True)
        for name, piece in self.named:
            module = self._module(piece)
            if piece.table["type"] in ("rnn", "lstm"):
                module.bias_hh_l0.requires_grad_(False)   # b lives in bias_ih_l0
            if piece.table["type"] == "dropout":
                # its computation replaced, not its output: an inplace=True dropout has
                # already masked its input (the value a hook on its output would read)
                module.forward = self._dropout(name, module.p)
        self.module.train()
        self.loss = impl.losses.build_loss(spec["loss"], native)

    def _module(self, piece):
        path = piece.where.removeprefix("model.")
        return self.module.get_submodule(path) if piece.where != "model.forward" else None

    def _dropout(self, name, rate):
        def forward(x):
            return x * (self.masks[name] / (1 - rate))  # the harness's mask, once; not torch's
        return forward

    def inputs(self, x, y, masks):
        """The batch in the module's layouts; the masks into place for the dropouts."""
        layouts = {name: piece.in_layout for name, piece in self.named}
        tensor = self.impl.model.tensor      # torch's reading, ml_dtypes' bfloat16 included
        self.masks = {k: tensor(to_native(m, layouts[k]).copy(order="C"))
                      for k, m in masks.items()}
        # a fresh C-order copy: the module gets a plain NCHW tensor, as in its own use
        return tensor(to_native(x, self.layout).copy(order="C")), tensor(y)

    def forward(self, x):
        with default_dtype(self.dtype):
            return self.module(x)


@contextmanager
def default_dtype(dtype):
    """Tensors the forward creates itself (torch.zeros(...)) in the model's dtype."""
    saved = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(saved)


@contextmanager
def buffers_kept(module):
    saved = [b.clone() for b in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(module.buffers(), saved):
                buffer.copy_(value)


# ---- weights -------------------------------------------------------------------------------------

def set_params(model, params, state):
    values = {**params, **state}
    with torch.no_grad():
        for name, piece in model.named:
            for local, link in piece.links.items():
                for key, value in link.native(values[f"{name}.{local}"]).items():
                    # ("in_proj_weight", start, stop): rows of a tensor several links share
                    native, *rows = key if isinstance(key, tuple) else (key,)
                    tensor = native_tensor(model.module, piece, native)
                    tensor[slice(*rows) if rows else slice(None)] = model.impl.model.tensor(
                        np.asarray(value)).to(tensor.dtype)


def canonical(model, read, kinds=("params", "state")):
    """{canonical name: array} from read(piece, native name) -> array, for params or state."""
    out = {}
    for name, piece in model.named:
        for local, link in piece.links.items():
            kind = "state" if local in piece.state else "params"
            if kind in kinds:
                out[f"{name}.{local}"] = np.array(link.canonical(
                    {n: read(piece, n) for n in link.natives}))
    return out


def _value(model):
    return lambda piece, n: model.impl.model.array(native_tensor(model.module, piece, n))


def _grad(model):
    """A native tensor's gradient; zeros for the frozen (bias_hh of an LSTM)."""
    def read(piece, n):
        t = native_tensor(model.module, piece, n)
        return model.impl.model.array(t.grad) if t.grad is not None \
            else np.zeros(t.shape, _np(model, t))
    return read


def get_params(model):
    return canonical(model, _value(model), ("params",)), canonical(model, _value(model), ("state",))


# ---- loss, gradients, layer values ---------------------------------------------------------------

def loss_value(model, x, y, masks):
    x, y = model.inputs(x, y, masks)
    with torch.no_grad(), buffers_kept(model.module):
        return model.loss(model.forward(x), y).item()


def loss_and_gradients(model, x, y, masks):
    x, y = model.inputs(x, y, masks)
    model.module.zero_grad(set_to_none=True)
    loss = model.loss(model.forward(x), y)
    loss.backward()
    grads = canonical(model, _grad(model), ("params",))
    return loss.item(), grads, canonical(model, _value(model), ("state",))


class Tapped(fx.Interpreter):
    """Runs the trace; each top-level layer's output is kept, and the next layer gets a
    copy of it that autograd can differentiate the loss for (an in-place ReLU after it
    then changes the copy, not the output kept)."""

    def __init__(self, gm, ends, differentiable):
        super().__init__(gm)
        self.ends, self.differentiable = ends, differentiable
        self.outputs, self.inputs = {}, {}

    def run_node(self, n):
        out = super().run_node(n)
        if n in self.ends:
            name = self.ends[n]          # None: the model's input
            if name is None:
                out = out.detach().clone().requires_grad_(self.differentiable)
            else:
                self.outputs[name] = out
                out = out.clone()
            self.inputs[name] = out      # what the next layer gets
        return out


def layer_values(model, x, y, masks):
    """Each top-level layer's output and d loss / d(its input), canonical layouts."""
    x, y = model.inputs(x, y, masks)
    top = [(name, piece) for name, piece in model.named if "." not in name]
    placeholder = next(n for n in model.gm.graph.nodes if n.op == "placeholder")
    ends = {placeholder: None, **{p.result or p.node: name for name, p in top}}
    tokens = model.spec["input"] == "tokens"
    tap = Tapped(model.gm, ends, not tokens)
    with buffers_kept(model.module), default_dtype(model.dtype):
        loss = model.loss(tap.run(x), y)
        feeding = {None: top[0][0], **{a[0]: b[0] for a, b in zip(top, top[1:])}}
        fed = {feeding[k]: t for k, t in tap.inputs.items() if k in feeding
               and t.requires_grad}
        grads = torch.autograd.grad(loss, list(fed.values())) if fed else []
    array = model.impl.model.array  # bfloat16 as ml_dtypes' (NumPy has none)
    outputs = {name: to_canonical(array(tap.outputs[name]), piece.out_layout)
               for name, piece in top}
    by_name = dict(top)
    input_grads = {name: to_canonical(array(g), by_name[name].in_layout)
                   for name, g in zip(fed, grads)}
    return outputs, input_grads


def hessian_vector_product(model, x, y, masks, vector):
    """H v by double backward, as the torch implementation does it (its math attention
    kernel: the fused one has no second derivative). -> ({canonical name: H v}, method)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    x, y = model.inputs(x, y, masks)
    directions = {}  # native tensor -> the direction in its layout (zeros where no link says)
    for name, piece in model.named:
        for local, link in piece.links.items():
            if local in piece.state:
                continue
            for key, value in link.native(np.asarray(vector[f"{name}.{local}"])).items():
                native, *rows = key if isinstance(key, tuple) else (key,)
                t = native_tensor(model.module, piece, native)
                d = directions.setdefault(t, torch.zeros_like(t))
                d[slice(*rows) if rows else slice(None)] = torch.as_tensor(value, dtype=t.dtype)
    params = [t for t in directions if t.requires_grad]   # the frozen bias_hh is left out
    with buffers_kept(model.module), sdpa_kernel(SDPBackend.MATH):
        loss = model.loss(model.forward(x), y)
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        dot = sum((g * directions[p]).sum() for g, p in zip(grads, params) if g is not None)
        hv = (torch.autograd.grad(dot, params, allow_unused=True)
              if torch.is_tensor(dot) and dot.requires_grad else [None] * len(params))
    found = {id(p): h for p, h in zip(params, hv) if h is not None}

    def read(piece, n):  # no second derivative reaching a tensor: H v = 0 there
        t = native_tensor(model.module, piece, n)
        return found[id(t)].numpy() if id(t) in found else np.zeros(t.shape, _np(model, t))
    return canonical(model, read, ("params",)), "double backward"


def _np(model, tensor):
    """The NumPy dtype of a tensor's values (ml_dtypes' bfloat16 for torch's)."""
    return model.impl.model.array(tensor.detach().reshape(-1)[:0]).dtype


# ---- training ------------------------------------------------------------------------------------

def train(model, x, y, batches, masks):
    """The spec's training loop (see impls/README.md) on the original module: aligned
    torch.optim from the torch implementation, the spec's loss, L1/L2 on the tensors that
    are canonical W, clipping, and the curves as the implementations record them."""
    cfg, impl = model.spec["train"], model.impl
    trainable = [p for p in model.module.parameters() if p.requires_grad]
    optimizer = impl.optimizers.build_optimizer(model.spec["optimizer"], model.native)(trainable)
    weights, layer_of = _penalised_and_layers(model)
    curves = {"loss": [], "grad_norm": [], "layer_norms": {}, "diverged_at": None}
    for step, idx in enumerate(batches):
        xb, yb = model.inputs(x[idx], y[idx], {k: m[step] for k, m in masks.items()})
        optimizer.zero_grad()
        loss = model.loss(model.forward(xb), yb) + impl.losses.penalty(
            weights, cfg["l1"], cfg["l2"])
        loss.backward()
        squares = {}
        for p in trainable:
            if p.grad is not None:
                layer = layer_of[id(p)]
                squares[layer] = squares.get(layer, 0.0) + (p.grad * p.grad).sum()
        norm = sum(squares.values()).sqrt()
        for layer, sq in squares.items():
            curves["layer_norms"].setdefault(layer, []).append(sq.sqrt().item())
        curves["loss"].append(loss.item())
        curves["grad_norm"].append(norm.item())
        if not torch.isfinite(loss) or not torch.isfinite(norm):
            curves["diverged_at"] = step
            break
        if cfg["clip_norm"] is not None:
            _clip(trainable, norm, cfg["clip_norm"], model.native)
        optimizer.step()
    return curves


def _penalised_and_layers(model):
    """{canonical W name: its native tensor} (sum |W| and sum W^2 do not care about its
    layout), and {id(parameter): its top-level layer}."""
    weights, layer_of = {}, {}
    for name, piece in model.named:
        for local, link in piece.links.items():
            tensors = [native_tensor(model.module, piece, n) for n in link.natives]
            if local == "W":
                weights[f"{name}.{local}"] = tensors[0]
            for t in tensors:
                layer_of.setdefault(id(t), name.split(".")[0])
    return weights, layer_of


def _clip(parameters, norm, clip_norm, native):
    """g *= min(1, clip_norm / norm); native mode: clip_grad_norm_ (norm + 1e-6)."""
    if native:
        torch.nn.utils.clip_grad_norm_(parameters, clip_norm)
        return
    scale = (clip_norm / norm).clamp(max=1.0)
    for p in parameters:
        p.grad.mul_(scale)
