"""One node of a traced PyTorch model -> one spec layer (a Piece), or NotMapped naming it.

`piece(node, module, ctx)` maps a call of a torch.nn module, function or tensor method.
Every option is mapped where crossgrad has it (padding, strides, eps, momentum, bias,
slopes) and refused where it has not (dilation, groups, padding_mode, ceil_mode,
count_include_pad with padding, ...), with the module's path. `ctx` carries what the
walk knows: the layout of the node's input, and the per-example shapes of every value
(recorded on an example batch). PyTorch's BatchNorm momentum is the spec's; an LSTM's
two biases become the spec's one (b = bias_ih + bias_hh); a GRU keeps both.
"""
import math
import operator
from types import SimpleNamespace

import numpy as np
from torch.fx.node import map_arg as fx_map_arg

from .pieces import (CANONICAL, NCHW, Link, NotMapped, Piece, layout_note, per_feature,
                     rows_to_canonical, rows_to_native, same)

ACTIVATION_MODULES = {"Sigmoid": "sigmoid", "Tanh": "tanh", "ReLU": "relu",
                      "LeakyReLU": "leaky_relu", "GELU": "gelu", "Identity": "identity"}
ACTIVATION_NAMES = {"sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu", "relu_": "relu",
                    "gelu": "gelu", "leaky_relu": "leaky_relu"}


def piece(node, module, ctx):
    """The Piece for `node` (module: the called nn.Module, or None), or NotMapped."""
    if node.op == "call_module":
        return _module_piece(node, module, ctx)
    name = function_name(node)
    if name in ACTIVATION_NAMES:
        return _activation(node, ACTIVATION_NAMES[name], ctx, _functional_options(node, name))
    if name in ("flatten", "view", "reshape"):
        return _flatten(node, f"torch.{name}" if node.op == "call_function" else f".{name}()",
                        ctx, _flatten_dims(node) if name == "flatten" else None)
    if name == "mean":
        return _sequence_mean(node, ctx)
    if name in POOL_ARGUMENTS:
        return _functional_pool(node, name, ctx)
    if name in ("dropout", "dropout2d", "alpha_dropout"):
        raise NotMapped(where(node), f"F.{name}: use nn.Dropout, whose mask crossgrad "
                                     "supplies (a function draws its own)")
    if name == "getitem":
        raise NotMapped(where(node), f"{describe(node)} (x[{index_text(node.args[1])}]) has no "
                                     "crossgrad layer; indexing is read only after a recurrent "
                                     "layer, as out[:, -1] or h[-1]")
    raise NotMapped(where(node), f"{describe(node)} has no crossgrad layer")


def where(node):
    """The path the messages name: model.<module path>, or model.forward for a function."""
    return f"model.{node.target}" if node.op == "call_module" else "model.forward"


def describe(node):
    if node.op == "call_method":
        return f"the tensor method .{node.target}()"
    module = getattr(node.target, "__module__", None) or "torch"
    short = {"torch.nn.functional": "F", "_operator": "operator"}.get(module, "torch")
    return f"{short}.{getattr(node.target, '__name__', node.target)}"


def function_name(node):
    return node.target if node.op == "call_method" else getattr(node.target, "__name__", "")


def index_text(index):
    """An index as Python writes it: (slice(None), 0) -> ":, 0"."""
    def one(i):
        if isinstance(i, slice):
            text = ":".join("" if v is None else str(v) for v in (i.start, i.stop, i.step))
            return text.removesuffix(":")
        return "..." if i is Ellipsis else getattr(i, "name", str(i))  # an fx node: its name
    return ", ".join(map(one, index)) if isinstance(index, tuple) else one(index)


def class_name(module):
    cls = type(module)
    return f"nn.{cls.__name__}" if cls.__module__.startswith("torch.nn") else cls.__qualname__


def _module_piece(node, module, ctx):
    kind = type(module).__name__
    if not type(module).__module__.startswith("torch.nn"):
        raise NotMapped(where(node), f"{class_name(module)} has no crossgrad layer")
    if kind in ACTIVATION_MODULES:
        return _activation(node, ACTIVATION_MODULES[kind], ctx, _module_options(module, node))
    builder = MODULES.get(kind)
    if builder is None:
        raise NotMapped(where(node), f"{class_name(module)} has no crossgrad layer")
    return builder(node, module, ctx)


def _new(node, module, table, ctx, out_layout=None, **kw):
    kind = class_name(module) if module is not None else describe(node)
    layout = ctx.layout
    return Piece(table, where(node), kind, layout, layout if out_layout is None else out_layout,
                 node=node, **kw)


def _refuse_if(node, module, condition, message):
    if condition:
        raise NotMapped(where(node), f"{_called(node, module)} {message}")


def _called(node, module):
    """What the node calls, as the messages and comments name it: nn.MaxPool2d, F.max_pool2d
    (`module` is a function's arguments for a function)."""
    if node.op == "call_module":
        return class_name(module)
    if getattr(node.target, "__module__", None) == "torch._C._nn":
        return f"F.{node.target.__name__}"
    return describe(node)


# ---- elementwise -------------------------------------------------------------------------------

def _module_options(module, node):
    if isinstance(getattr(module, "approximate", "none"), str) and \
            getattr(module, "approximate", "none") != "none":
        raise NotMapped(where(node), "nn.GELU(approximate='tanh'): crossgrad's gelu is the "
                                     "exact (erf) form")
    slope = getattr(module, "negative_slope", None)
    return {} if slope is None else {"alpha": float(slope)}


def _functional_options(node, name):
    if name == "leaky_relu":
        slope = node.kwargs.get("negative_slope", node.args[1] if len(node.args) > 1 else 0.01)
        return {"alpha": float(slope)}
    if name == "gelu" and node.kwargs.get("approximate", "none") != "none":
        raise NotMapped(where(node), "F.gelu(approximate='tanh'): crossgrad's gelu is the "
                                     "exact (erf) form")
    return {}


def _activation(node, kind, ctx, options):
    p = _new(node, ctx.module(node), {"type": kind, **options}, ctx)
    if node.op != "call_module":
        p.kind = describe(node)
    return p


def dropout(node, module, ctx):
    _refuse_if(node, module, type(module).__name__ != "Dropout",
               "drops whole channels; crossgrad's dropout drops single values")
    # refused here, naming the module, rather than by the spec's check of layers[i].rate
    _refuse_if(node, module, module.p >= 1, f"p={module.p}: drops every value; crossgrad's "
                                            "dropout rate must be below 1")
    return _new(node, module, {"type": "dropout", "rate": float(module.p)}, ctx)


# ---- shapes ------------------------------------------------------------------------------------

def _flatten_dims(node):
    """(start_dim, end_dim) of torch.flatten(x, ...) or x.flatten(...), by position or keyword,
    with torch's defaults (0, -1)."""
    given = list(node.args[1:3])
    start = given[0] if given else node.kwargs.get("start_dim", 0)
    end = given[1] if len(given) > 1 else node.kwargs.get("end_dim", -1)
    return start, end


def _flatten(node, kind, ctx, dims=None):
    """nn.Flatten(), torch.flatten(x, 1), x.view(x.size(0), -1): (B, ...) -> (B, features)."""
    shape_in, shape_out = ctx.shape(node.args[0]), ctx.shape(node)
    if dims is not None and (dims[0], dims[1] % (len(shape_in) + 1)) != (1, len(shape_in)):
        raise NotMapped(where(node), f"{kind} over dims {tuple(dims)}: crossgrad flattens "
                                     "everything but the batch axis")
    if shape_out != (math.prod(shape_in),):
        raise NotMapped(where(node), f"{kind} to {shape_out} per example: crossgrad flattens "
                                     f"everything but the batch axis ({shape_in} -> "
                                     f"{(math.prod(shape_in),)})")
    layout = ("chw", *shape_in) if ctx.layout == NCHW else CANONICAL
    if len(shape_in) == 1:  # already flat (a second flatten): its features keep their order
        layout = ctx.layout
    p = _new(node, ctx.module(node), {"type": "flatten"}, ctx, out_layout=layout)
    p.kind = kind if node.op != "call_module" else p.kind
    return p


def flatten(node, module, ctx):
    _refuse_if(node, module, (module.start_dim, module.end_dim) != (1, -1),
               f"(start_dim={module.start_dim}, end_dim={module.end_dim}): crossgrad flattens "
               "everything but the batch axis")
    return _flatten(node, "nn.Flatten", ctx)


def _sequence_mean(node, ctx):
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    keep = node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False)
    if dim not in (1, (1,), [1]) or keep or len(ctx.shape(node.args[0])) != 2:
        raise NotMapped(where(node), f"{describe(node)} over dim={dim}: crossgrad has the "
                                     "mean over time of (batch, time, features) only")
    return _new(node, None, {"type": "sequence_mean"}, ctx)


# ---- dense and convolution ---------------------------------------------------------------------

def linear(node, module, ctx):
    layout = ctx.layout
    _refuse_if(node, module, layout == NCHW, "on an NCHW image acts on its width; crossgrad's "
                                             "dense acts on the channels (the last axis)")
    links = {"W": Link(("weight",),
                       lambda n: rows_to_canonical(n["weight"].T, layout),  # (out, in) -> (in, out)
                       lambda a: {"weight": rows_to_native(a, layout).T})}
    if module.bias is not None:
        links["b"] = same("bias")
    notes = [layout_note(layout)] if layout[0] == "chw" else []
    return _new(node, module, {"type": "dense", "units": module.out_features,
                               "use_bias": module.bias is not None}, ctx, out_layout=CANONICAL,
                links=links, notes=notes)


def _pair(value):
    return list(value) if isinstance(value, (tuple, list)) else [value, value]


def conv2d(node, module, ctx):
    _refuse_if(node, module, ctx.layout != NCHW, "needs an NCHW image input")
    _refuse_if(node, module, _pair(module.dilation) != [1, 1],
               f"dilation={module.dilation}: crossgrad's conv2d has no dilation")
    _refuse_if(node, module, module.groups != 1,
               f"groups={module.groups}: crossgrad's conv2d has no groups")
    _refuse_if(node, module, module.padding_mode != "zeros",
               f"padding_mode={module.padding_mode!r}: crossgrad pads with zeros")
    padding = module.padding if isinstance(module.padding, str) else _pair(module.padding)
    if padding == [0, 0]:
        padding = "valid"
    # weight (C_out, C_in, kh, kw) <-> W (kh, kw, C_in, C_out)
    links = {"W": Link(("weight",), lambda n: n["weight"].transpose(2, 3, 1, 0),
                       lambda a: {"weight": a.transpose(3, 2, 0, 1)})}
    if module.bias is not None:
        links["b"] = same("bias")
    return _new(node, module, {"type": "conv2d", "filters": module.out_channels,
                               "kernel_size": _pair(module.kernel_size),
                               "strides": _pair(module.stride), "padding": padding,
                               "use_bias": module.bias is not None}, ctx, links=links)


def _pool(node, module, ctx, kind):
    _refuse_if(node, module, ctx.layout != NCHW, "needs an NCHW image input")
    _refuse_if(node, module, module.ceil_mode, "ceil_mode=True: crossgrad's windows floor")
    padding = _pair(module.padding)
    table = {"type": kind, "pool_size": _pair(module.kernel_size),
             "strides": _pair(module.stride or module.kernel_size),
             "padding": "valid" if padding == [0, 0] else padding}
    p = _new(node, ctx.module(node), table, ctx)
    p.kind = _called(node, module)
    return p


def maxpool2d(node, module, ctx):
    _refuse_if(node, module, _pair(module.dilation) != [1, 1],
               f"dilation={module.dilation}: crossgrad's maxpool2d has no dilation")
    _refuse_if(node, module, module.return_indices, "return_indices=True returns a pair")
    return _pool(node, module, ctx, "maxpool2d")  # both pad with -inf


def avgpool2d(node, module, ctx):
    _refuse_if(node, module, module.count_include_pad and _pair(module.padding) != [0, 0],
               "count_include_pad=True with padding: crossgrad averages the real pixels only "
               "(count_include_pad=False)")
    _refuse_if(node, module, module.divisor_override is not None,
               "divisor_override: crossgrad divides by the real pixels")
    return _pool(node, module, ctx, "avgpool2d")


# F.<name>(input, ...): the arguments after the input, in order, with torch's defaults (a
# stride of None, or torch.max_pool2d's [], is the kernel size)
POOL_ARGUMENTS = {
    "max_pool2d": (("kernel_size", None), ("stride", None), ("padding", 0), ("dilation", 1),
                   ("ceil_mode", False), ("return_indices", False)),
    "avg_pool2d": (("kernel_size", None), ("stride", None), ("padding", 0), ("ceil_mode", False),
                   ("count_include_pad", True), ("divisor_override", None)),
}


def _functional_pool(node, name, ctx):
    """F.max_pool2d(x, 2) (PyTorch's MNIST example), F.avg_pool2d: the call's arguments
    stand for the module's attributes, so the same options are mapped and refused."""
    names = [n for n, _ in POOL_ARGUMENTS[name]]
    given = dict(zip(names, node.args[1:]))
    arguments = SimpleNamespace(**{n: node.kwargs.get(n, given.get(n, default))
                                   for n, default in POOL_ARGUMENTS[name]})
    return (maxpool2d if name == "max_pool2d" else avgpool2d)(node, arguments, ctx)


# ---- normalisation -----------------------------------------------------------------------------

def batchnorm(node, module, ctx):
    rank = len(ctx.shape(node.args[0]))
    two_d = type(module).__name__ == "BatchNorm2d"
    _refuse_if(node, module, two_d != (ctx.layout == NCHW) or (not two_d and rank != 1),
               f"on a per-example input of shape {ctx.shape(node.args[0])}: crossgrad "
               "normalises the channels of NCHW images (BatchNorm2d) and features (BatchNorm1d "
               "on (batch, features))")
    _refuse_if(node, module, not module.affine, "affine=False: crossgrad's batchnorm learns "
                                                "gamma and beta")
    _refuse_if(node, module, not module.track_running_stats or module.momentum is None,
               "without running statistics of momentum (track_running_stats=False or "
               "momentum=None): crossgrad keeps an exponential running average")
    layout = ctx.layout
    links = {local: per_feature(native, layout) for local, native in (
        ("gamma", "weight"), ("beta", "bias"), ("running_mean", "running_mean"),
        ("running_var", "running_var"))}
    # PyTorch's momentum weighs the new batch statistic, as the spec's does
    return _new(node, module, {"type": "batchnorm", "eps": float(module.eps),
                               "momentum": float(module.momentum)}, ctx, links=links,
                state=("running_mean", "running_var"),
                notes=[layout_note(layout)] if layout[0] == "chw" else [])


# what nn.LayerNorm over the last k axes of an NCHW image normalises together
NCHW_NORMALISED = {1: "along each row (W)", 2: "over each channel's (H, W) plane",
                   3: "over each example's (C, H, W) together"}


def layernorm(node, module, ctx):
    shape = tuple(module.normalized_shape)
    _refuse_if(node, module, ctx.layout == NCHW,
               f"over {shape} on an NCHW image normalises "
               f"{NCHW_NORMALISED.get(len(shape), f'its last {len(shape)} axes')}; crossgrad's "
               "layernorm normalises the channels alone")
    _refuse_if(node, module, len(module.normalized_shape) != 1,
               f"over {tuple(module.normalized_shape)}: crossgrad normalises the last axis only")
    _refuse_if(node, module, not module.elementwise_affine or module.bias is None,
               "without its weight or bias: crossgrad's layernorm learns gamma and beta")
    layout = ctx.layout
    links = {"gamma": per_feature("weight", layout), "beta": per_feature("bias", layout)}
    return _new(node, module, {"type": "layernorm", "eps": float(module.eps)}, ctx, links=links)


# ---- embedding, recurrent, attention -----------------------------------------------------------

def embedding(node, module, ctx):
    for option, bad in (("padding_idx", module.padding_idx is not None),
                        ("max_norm", module.max_norm is not None),
                        ("scale_grad_by_freq", module.scale_grad_by_freq),
                        ("sparse", module.sparse)):
        _refuse_if(node, module, bad, f"with {option}: crossgrad's embedding has none")
    return _new(node, module, {"type": "embedding", "vocab": module.num_embeddings,
                               "dim": module.embedding_dim}, ctx, links={"E": same("weight")})


def recurrent(node, module, ctx):
    kind = type(module).__name__.lower()
    _refuse_if(node, module, module.num_layers != 1,
               f"num_layers={module.num_layers}: stack single-layer ones (crossgrad's {kind} "
               "is one layer)")
    _refuse_if(node, module, not module.batch_first,
               "batch_first=False: crossgrad's sequences are (batch, time, features)")
    _refuse_if(node, module, module.bidirectional, "bidirectional: crossgrad's runs forward only")
    _refuse_if(node, module, not module.bias, "bias=False: crossgrad's recurrent layers have one")
    _refuse_if(node, module, getattr(module, "proj_size", 0),
               "proj_size: crossgrad's LSTM has no projection")
    _refuse_if(node, module, getattr(module, "nonlinearity", "tanh") != "tanh",
               f"nonlinearity={getattr(module, 'nonlinearity', '')!r}: crossgrad's rnn is tanh")
    _zero_state(node, module, ctx)
    # weight_ih (gates*H, F) <-> W (F, gates*H), same gate order; weight_hh likewise
    links = {"W": Link(("weight_ih_l0",), lambda n: n["weight_ih_l0"].T,
                       lambda a: {"weight_ih_l0": a.T}),
             "U": Link(("weight_hh_l0",), lambda n: n["weight_hh_l0"].T,
                       lambda a: {"weight_hh_l0": a.T})}
    biases = ("bias_ih_l0", "bias_hh_l0")
    if kind == "gru":  # the reset gate multiplies the recurrent side: both kept, as b (2, 3H)
        links["b"] = Link(biases, lambda n: np.stack([n["bias_ih_l0"], n["bias_hh_l0"]]),
                          lambda a: {"bias_ih_l0": a[0], "bias_hh_l0": a[1]})
        notes = []
    else:  # only their sum matters: one b; the original gets b and a zero (frozen)
        links["b"] = Link(biases, lambda n: n["bias_ih_l0"] + n["bias_hh_l0"],
                          lambda a: {"bias_ih_l0": a, "bias_hh_l0": np.zeros_like(a)})
        notes = ["b = bias_ih_l0 + bias_hh_l0 (the spec has one bias; the original runs with "
                 "bias_ih_l0 = b and bias_hh_l0 = 0, frozen)"]
    sequences, result = _recurrent_output(node, module, kind)
    p = _new(node, module, {"type": kind, "units": module.hidden_size,
                            "return_sequences": sequences}, ctx, links=links, notes=notes)
    p.result = result
    return p


def _zero_state(node, module, ctx):
    """An initial state given in forward, rnn(x, h0) or lstm(x, (h0, c0)), is crossgrad's
    only if it is zeros (the tutorials' torch.zeros(1, x.size(0), H)) and no tensor of the
    model's: a learned one would train in the original and not in the four."""
    state = node.args[1] if len(node.args) > 1 else node.kwargs.get("hx")
    if state is None:
        return
    parts = []
    fx_map_arg(state, parts.append)
    for part in parts:
        value = ctx.value(part)
        if not hasattr(value, "any") or value.any():
            raise NotMapped(where(node), f"{class_name(module)} is given an initial state "
                                         f"({part.name}) that is not zeros: crossgrad's "
                                         "recurrent layers start from zeros")
        if any(a.op == "get_attr" for a in _ancestors(part)):
            raise NotMapped(where(node), f"{class_name(module)} is given an initial state "
                                         f"({part.name}) made from a tensor of the model's: "
                                         "crossgrad's recurrent layers start from zeros, "
                                         "learned by nothing")


def _ancestors(node):
    seen, todo = set(), [node]
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo += n.all_input_nodes
    return seen


def _recurrent_output(node, module, kind):
    """(return_sequences, the node holding the layer's output): `out, _ = rnn(x)` then `out`
    or `out[:, -1]`; or the final state, `h[-1]` (`h, c` for an LSTM). Other indexing of
    `out` (out[:, 0]) is refused here, naming the layer and the index."""
    users = list(node.users)
    picked = users[0] if len(users) == 1 else None
    if picked is None or not _is_item(picked, None):
        raise NotMapped(where(node), "use its output as `out, _ = rnn(x)` (and `out[:, -1]`) "
                                     "or its final state `h[-1]`; crossgrad follows those")
    index = picked.args[1]
    if index == 0:
        last = _only_user(picked)
        if last is not None and _is_item(last, None):
            if not _last_step(last.args[1]):
                raise NotMapped(where(node), f"{class_name(module)} output read as "
                                             f"out[{index_text(last.args[1])}]: crossgrad "
                                             "follows out (every step), out[:, -1] (the last) "
                                             "or the final state h[-1]")
            return False, last
        return True, picked
    state = picked
    if kind == "lstm":
        state = _only_user(picked)
        if state is None or not _is_item(state, 0):
            raise NotMapped(where(node), "of the LSTM's final (h, c), crossgrad follows h")
    last = _only_user(state)
    if last is not None and (_is_item(last, -1) or _is_item(last, 0) or (
            last.op == "call_method" and last.target == "squeeze" and tuple(last.args[1:]) in
            ((0,), ()))):
        return False, last
    raise NotMapped(where(node), "use its final state as `h[-1]`")


def _is_item(node, index):
    return (node.op == "call_function" and node.target is operator.getitem
            and (index is None or node.args[1] == index))


def _only_user(node):
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def _last_step(index):
    """[:, -1] or [:, -1, :]."""
    if not isinstance(index, tuple) or len(index) not in (2, 3):
        return False
    full = slice(None, None, None)
    return index[0] == full and index[1] == -1 and index[2:] in ((), (full,))


def attention(node, module, ctx):
    _refuse_if(node, module, not module.batch_first,
               "batch_first=False: crossgrad's sequences are (batch, time, features)")
    _refuse_if(node, module, not module._qkv_same_embed_dim or module.bias_k is not None
               or module.add_zero_attn,
               "with kdim/vdim, add_bias_kv or add_zero_attn: crossgrad's attention has none")
    _refuse_if(node, module, module.dropout, f"dropout={module.dropout}: crossgrad's attention "
                                             "has no dropout of its weights")
    args = list(node.args) + [None] * 3
    if not (args[0] is args[1] is args[2]):
        raise NotMapped(where(node), "crossgrad's attention is self-attention: call it as "
                                     "attn(x, x, x)")
    options = dict(zip(("key_padding_mask", "need_weights", "attn_mask"), node.args[3:6]))
    options.update(node.kwargs)
    if options.get("key_padding_mask") is not None:
        raise NotMapped(where(node), "key_padding_mask: crossgrad's attention masks nothing "
                                     "but the future (causal)")
    causal = _causal(node, options.get("attn_mask"), ctx)
    result = _only_user(node)
    if result is None or not _is_item(result, 0):
        raise NotMapped(where(node), "crossgrad follows its output, attn(x, x, x)[0], not the "
                                     "attention weights")
    d, heads = module.embed_dim, module.num_heads
    links = {}
    for i, w in enumerate("qkv"):  # in_proj_weight stacks q, k, v: (3D, D) rows
        rows = (i * d, (i + 1) * d)
        links["W" + w] = Link(("in_proj_weight",),
                              lambda n, r=rows: n["in_proj_weight"][r[0]:r[1]].T,  # -> (D, D)
                              lambda a, r=rows: {("in_proj_weight", *r): a.T})
        if module.in_proj_bias is not None:
            links["b" + w] = Link(("in_proj_bias",),
                                  lambda n, r=rows: n["in_proj_bias"][r[0]:r[1]],
                                  lambda a, r=rows: {("in_proj_bias", *r): a})
    links["Wo"] = Link(("out_proj.weight",), lambda n: n["out_proj.weight"].T,
                       lambda a: {"out_proj.weight": a.T})
    if module.out_proj.bias is not None:
        links["bo"] = same("out_proj.bias")
    p = _new(node, module, {"type": "attention", "heads": heads, "key_dim": d // heads,
                            "causal": causal, "use_bias": module.in_proj_bias is not None},
             ctx, links=links)
    p.result = result
    return p


def _causal(node, mask_node, ctx):
    """No mask, or the causal one (True or -inf above the diagonal, as generated by
    nn.Transformer.generate_square_subsequent_mask or torch.triu)."""
    if mask_node is None:
        return False
    mask = ctx.value(mask_node)
    mask = mask.detach().cpu().numpy() if hasattr(mask, "detach") else np.asarray(mask)
    n = mask.shape[-1]
    above = np.triu(np.ones((n, n), bool), 1)
    if mask.shape == (n, n) and (
            (mask.dtype == bool and np.array_equal(mask, above)) or
            (mask.dtype != bool and np.all(np.isneginf(mask[above])) and
             np.all(mask[~above] == 0))):
        return True
    raise NotMapped(where(node), "attn_mask that is not the causal mask: crossgrad's attention "
                                 "masks the future only (causal = true)")


MODULES = {"Linear": linear, "Conv2d": conv2d, "MaxPool2d": maxpool2d, "AvgPool2d": avgpool2d,
           "BatchNorm1d": batchnorm, "BatchNorm2d": batchnorm, "LayerNorm": layernorm,
           "Dropout": dropout, "Dropout2d": dropout, "Embedding": embedding, "RNN": recurrent,
           "LSTM": recurrent, "GRU": recurrent, "MultiheadAttention": attention,
           "Flatten": flatten}
