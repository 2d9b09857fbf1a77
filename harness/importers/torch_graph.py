"""A PyTorch model -> its chain of Pieces.

`load_factory("my_model.py:build")` runs the file from the very bytes it hashes and calls
the factory; `load_weights` loads a state_dict strictly; `chain(module, input_shape)`
traces the forward with torch.fx, runs the trace once on an example batch (to know every
value's shape, and the attention masks' values), and walks it: each node consumes the
value before it (a straight chain); `x + f(x)` closes a residual block over the nodes
since x. torch_modules.py maps each node. Imported by the importer and, in a torch
worker, by the original participant: both must see the same chain.
"""
import hashlib
import operator
import re
import sys
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.fx as fx

from .pieces import CANONICAL, NCHW, NotMapped, Piece
from .torch_modules import class_name, piece

EXAMPLES = 3      # the example batch the trace runs on: any size works, 3 is rarely hard-coded
ADDS = (operator.add, operator.iadd, torch.add)


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_factory(path, factory, digest=None):
    """Run `path` as a module and call `factory()` -> the nn.Module. ValueError, one line,
    for what goes wrong (the file changed since `digest`, it raises, ...)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    code = path.read_bytes()
    if digest is not None and hashlib.sha256(code).hexdigest() != digest:
        raise ValueError(f"{path.name} changed since the import (its sha256 differs from the "
                         "spec's original.sha256); import it again")
    name = f"crossgrad_original_{hashlib.sha256(code).hexdigest()[:16]}"
    module = sys.modules.get(name) or _run(path, code, name)
    build = getattr(module, factory, None)
    if not callable(build):
        raise ValueError(f"{path.name} has no function {factory!r}")
    try:
        model = build()
    except Exception as err:
        raise ValueError(f"{path.name}:{factory}() raised {type(err).__name__}: {err}") from None
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"{path.name}:{factory}() returned a {type(model).__name__}, not an "
                         "nn.Module")
    return model


def _run(path, code, name):
    """The file as its own module; its folder on sys.path while it runs (for its imports)."""
    module = type(sys)(name)
    module.__file__ = str(path)
    sys.modules[name] = module
    folder = str(path.parent.resolve())
    sys.path.insert(0, folder)
    try:
        exec(compile(code, str(path), "exec"), module.__dict__)
    except SyntaxError as err:
        del sys.modules[name]
        raise ValueError(f"{path.name} line {err.lineno}: syntax error: {err.msg}") from None
    except Exception as err:
        del sys.modules[name]
        raise ValueError(f"{path.name} raised {type(err).__name__}: {err} while loading") \
            from None
    finally:
        sys.path.remove(folder)
    return module


ANSI = re.compile(r"\x1b\[[0-9;]*m")  # a terminal's colour and bold codes


def load_weights(model, path):
    """A state_dict file into `model`, strictly: ValueError naming the first missing or
    unexpected key, or the first tensor of another shape."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        first = ANSI.sub("", str(err)).splitlines()[0][:200]  # torch bolds some words
        raise ValueError(f"not a state_dict file torch.load can read safely "
                         f"({type(err).__name__}: {first})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError("holds no state_dict (a dict of tensor names to tensors)")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    if missing:
        raise ValueError(f"missing key {missing[0]!r} (the model has it; {len(missing)} missing)")
    if extra:
        raise ValueError(f"unexpected key {extra[0]!r} (the model has no such tensor; "
                         f"{len(extra)} unexpected)")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ValueError(f"{k}: shape {tuple(v.shape)}, the model's is {tuple(own[k].shape)}")
    model.load_state_dict(state)


# ---- the trace ---------------------------------------------------------------------------------

class Recorder(fx.Interpreter):
    """Runs the trace, keeping every node's value."""

    def __init__(self, gm):
        super().__init__(gm)
        self.values = {}

    def run_node(self, n):
        self.values[n] = out = super().run_node(n)
        return out


class Walk:
    """What mapping a node needs to know: the layout of the chain's value, shapes, values."""

    def __init__(self, gm, values):
        self.gm, self.values, self.layout = gm, values, CANONICAL

    def module(self, node):
        return self.gm.get_submodule(node.target) if node.op == "call_module" else None

    def value(self, node):
        return self.values[node]

    def shape(self, node):
        return tuple(self.values[node].shape[1:])


def trace(model):
    try:
        gm = fx.symbolic_trace(model)
    except Exception as err:
        raise NotMapped("model", f"torch.fx cannot trace its forward ({type(err).__name__}: "
                                 f"{str(err).splitlines()[0][:200]}); crossgrad reads forwards "
                                 "that are a straight chain of layers") from None
    gm.graph.eliminate_dead_code()
    return gm


def example_input(gm, input_shape, dtype):
    """Zeros of (EXAMPLES, *input_shape); token ids if the first layer is an nn.Embedding."""
    first = next(iter(_placeholders(gm)[0].users), None)
    tokens = first is not None and first.op == "call_module" and \
        type(gm.get_submodule(first.target)).__name__ == "Embedding"
    return torch.zeros((EXAMPLES, *input_shape), dtype=torch.int64 if tokens else dtype), tokens


def _placeholders(gm):
    found = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(found) != 1:
        raise NotMapped("model", f"its forward takes {len(found)} inputs; crossgrad feeds one")
    return found


def chain(model, input_shape):
    """-> (pieces, input layout, the traced GraphModule, whether the input is token ids).
    `input_shape` is per example, in the model's own layout (NCHW for an image)."""
    gm = trace(model)
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    x, tokens = example_input(gm, input_shape, dtype)
    was_training = model.training
    model.eval()  # the example pass must not move BatchNorm's running statistics
    try:
        with torch.no_grad():
            recorder = Recorder(gm)
            recorder.run(x)
    except Exception as err:
        raise NotMapped("model", f"does not run on a batch of shape {tuple(x.shape)} "
                                 f"({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
                                 "check --input-shape (per example, in the model's layout)") \
            from None
    finally:
        model.train(was_training)
    ctx = Walk(gm, recorder.values)
    layout = NCHW if len(input_shape) == 3 and not tokens else CANONICAL
    pieces = _walk(gm, ctx, layout)
    if not pieces:
        raise NotMapped("model", "has no layer crossgrad could map")
    return pieces, layout, gm, tokens


def _walk(gm, ctx, layout):
    """The nodes, in order, as pieces; see the module's docstring."""
    (x,) = _placeholders(gm)
    ctx.layout, current, pieces = layout, x, []
    positions = {x: 0}          # chain value -> how many pieces came before it
    done, called = set(), {}
    depends = _depending_on(gm, x)
    for node in gm.graph.nodes:
        if node in done or node.op in ("placeholder", "get_attr") or node not in depends:
            continue
        if node.op == "output":
            if node.args[0] is not current:
                raise NotMapped("model.forward", "its output is not the end of the chain of "
                                                 "layers")
            break
        if node.op != "call_module" and not isinstance(ctx.values.get(node), torch.Tensor):
            continue  # x.size(0) and the like: read by a view, not a layer
        if node.op == "call_function" and node.target in ADDS and _residual(node, current,
                                                                            positions):
            current = _close_block(node, current, positions, pieces, ctx)
            continue
        with _blamed_on_own_module(node):
            _consumes(node, current)
            if node.op == "call_module":
                _once(node, called)
            p = piece(node, ctx.module(node), ctx)
        result = p.result or node
        done |= _between(node, result)
        p.shape = ctx.shape(result)
        pieces.append(p)
        ctx.layout, current = p.out_layout, result
        positions[current] = len(pieces)
    if ctx.layout != CANONICAL:
        raise NotMapped("model.forward", "its output is an image or a flattened NCHW image; "
                                         "crossgrad's last layer gives one vector per example "
                                         "in its own order")
    return pieces


@contextmanager
def _blamed_on_own_module(node):
    """A refusal of a function called inside a module of the user's own (which the trace
    goes through) names that module, path and type, not the model's forward."""
    try:
        yield
    except NotMapped as err:
        stack = node.meta.get("nn_module_stack") or {}
        if err.where != "model.forward" or not stack:
            raise
        path, cls = list(stack.values())[-1]
        raise NotMapped(f"model.{path}", f"{getattr(cls, '__qualname__', cls)} (a module of "
                                         f"your own): {err.message}") from None


def _depending_on(gm, x):
    """Nodes computed from the input (others are constants: masks, sizes)."""
    out = {x}
    for node in gm.graph.nodes:
        if any(a in out for a in node.all_input_nodes):
            out.add(node)
    return out


def _residual(node, current, positions):
    a, b = node.args[:2]
    other = b if a is current else a if b is current else None
    alpha = node.kwargs.get("alpha", 1)
    return other is not None and other is not current and other in positions and alpha == 1


def _close_block(node, current, positions, pieces, ctx):
    """x + f(x): the pieces since x become one residual block."""
    a, b = node.args[:2]
    start = positions[b if a is current else a]
    block = pieces[start:]
    layout = block[0].in_layout
    if ctx.layout != layout:
        raise NotMapped("model.forward", f"x + f(x) ({node.name}) where f changes the layout")
    del pieces[start:]
    pieces.append(Piece({"type": "residual"}, "model.forward", "x + f(x)", layout, layout,
                        layers=block, node=node, shape=ctx.shape(node)))
    for value, k in list(positions.items()):
        if k > start:
            del positions[value]   # inside the block: nothing after may return to them
    positions[node] = len(pieces)
    return node


def _consumes(node, current):
    """A layer must take the chain's current value as its (first) input, and nothing else
    that comes from the model's input."""
    first = node.args[0] if node.args else None
    if first is not current:
        before = f"model.{current.target}" if current.op == "call_module" else current.name
        raise NotMapped(_where(node), f"does not take the output of the layer before it "
                                      f"({before}): crossgrad reads forwards that are a "
                                      "straight chain (with x + f(x) blocks)")


def _once(node, called):
    if node.target in called:
        raise NotMapped(_where(node), f"{class_name_of(node)} is called twice in forward "
                                      "(shared weights); each crossgrad layer has its own")
    called[node.target] = node


def class_name_of(node):
    return class_name(node.graph.owning_module.get_submodule(node.target))


def _where(node):
    return f"model.{node.target}" if node.op == "call_module" else "model.forward"


def _between(node, result):
    """The nodes from a layer's call to its result (rnn(x) -> [0] -> [:, -1]), inclusive."""
    seen, n = {node}, result
    while n is not node:
        seen.add(n)
        n = n.args[0]
    return seen


def native_tensor(model, piece, name):
    """A piece's native tensor: "weight" of the module at the piece's path. One that is
    neither a parameter nor a buffer is computed at each call (weight_norm, pruning, a
    parametrization): NotMapped, since crossgrad takes the weights as they are stored."""
    path = piece.where.removeprefix("model.")
    try:
        return model.get_submodule(path).get_parameter(name) \
            if _is_parameter(model, path, name) else model.get_submodule(path).get_buffer(name)
    except AttributeError:
        raise NotMapped(piece.where, f"{piece.kind}: its {name!r} is computed at each call "
                                     "(weight_norm, pruning or a parametrization), not stored; "
                                     "remove that first (e.g. torch.nn.utils.remove_weight_norm, "
                                     "prune.remove)") from None


def _is_parameter(model, path, name):
    owner, _, leaf = f"{path}.{name}".rpartition(".")
    return leaf in dict(model.get_submodule(owner).named_parameters(recurse=False))


def read_native(model):
    """read(piece, native name) -> the array, for pieces.canonical_weights."""
    return lambda piece, name: native_tensor(model, piece, name).detach().cpu().numpy()

