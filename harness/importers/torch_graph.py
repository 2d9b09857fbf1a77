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
import sysconfig
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.fx as fx

from ..errors import one_line
from .pieces import (ANSI, CANONICAL, NCHW, NotMapped, Piece, first_sentence,
                     in_canonical_order, walk)
from .torch_modules import class_name, describe, function_name, piece

EXAMPLES = 3      # the example batch the trace runs on: any size works, 3 is rarely hard-coded
ADDS = (operator.add, operator.iadd, torch.add)


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_factory(path, factory, digest=None, helpers=()):
    """Run `path` as a module and call `factory()` -> the nn.Module. ValueError, one line,
    for what goes wrong (the file or one of its `helpers`, {"path", "sha256"}, changed
    since the import, it raises, ...)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    code = path.read_bytes()
    if digest is not None and hashlib.sha256(code).hexdigest() != digest:
        raise ValueError(f"{path.name} changed since the import (its sha256 differs from the "
                         "spec's original.sha256); import it again")
    for helper in helpers:
        if not Path(helper["path"]).is_file() or sha256(helper["path"]) != helper["sha256"]:
            raise ValueError(f"{Path(helper['path']).name}, which {path.name} imports, changed "
                             "since the import (its sha256 differs from the spec's "
                             "original.helpers); import it again")
    name = f"crossgrad_original_{hashlib.sha256(code).hexdigest()[:16]}"
    module = sys.modules.get(name) or _run(path, code, name)
    build = getattr(module, factory, None)
    if isinstance(build, torch.nn.Module):  # callable too: calling it would run its forward
        raise ValueError(f"{factory} is an nn.Module, not a function returning one: crossgrad "
                         f"calls {factory}() to build the model (def {factory}(): return ...)")
    if not callable(build):
        raise ValueError(f"{path.name} has no function {factory!r}")
    try:
        model = build()
    except Exception as err:
        # one line: the CLI prints this as its one line of bad input
        raise ValueError(f"{path.name}:{factory}() raised {one_line(err)}") from None
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"{path.name}:{factory}() returned a {type(model).__name__}, not an "
                         "nn.Module")
    return model


def helper_files(path):
    """{absolute path: sha256} of the modules of the user's own that `path` imported when
    load_factory ran it: a change to one changes the model as much as a change to `path`."""
    code = Path(path).read_bytes()
    module = sys.modules[f"crossgrad_original_{hashlib.sha256(code).hexdigest()[:16]}"]
    return dict(module.__crossgrad_helpers__)


def _run(path, code, name):
    """The file as its own module; its folder on sys.path while it runs (for its imports).
    The modules it imports from under that folder are its helpers (helper_files)."""
    module = type(sys)(name)
    module.__file__ = str(path)
    sys.modules[name] = module
    folder = str(path.parent.resolve())
    before = set(sys.modules)
    sys.path.insert(0, folder)
    try:
        exec(compile(code, str(path), "exec"), module.__dict__)
    except SyntaxError as err:
        del sys.modules[name]
        raise ValueError(f"{path.name} line {err.lineno}: syntax error: {err.msg}") from None
    except Exception as err:
        del sys.modules[name]
        raise ValueError(f"{path.name} raised {one_line(err)} while loading") \
            from None
    finally:
        sys.path.remove(folder)
    imported = [sys.modules[k] for k in set(sys.modules) - before if k in sys.modules]
    module.__crossgrad_helpers__ = {f: sha256(f) for f in
                                    _own_files(imported + _named_in(module), Path(folder))}
    return module


def _named_in(module):
    """The modules the file's names come from (`import blocks`, `from blocks import block`):
    those it found already imported are not new in sys.modules, and are its helpers too."""
    found = []
    for value in vars(module).values():
        if isinstance(value, type(sys)):
            found.append(value)
        elif isinstance(getattr(value, "__module__", None), str):
            found.append(sys.modules.get(value.__module__))
    return [m for m in found if m is not None and m is not module]


def _own_files(modules, folder):
    """The source files of `modules` that lie under `folder`, not in an installed package
    (a virtual environment inside the folder holds libraries, not the user's code)."""
    installed = {Path(p).resolve() for k in ("stdlib", "platstdlib", "purelib", "platlib")
                 if (p := sysconfig.get_paths().get(k))}
    files = set()
    for m in modules:
        file = getattr(m, "__file__", None)
        if not file or not file.endswith(".py"):
            continue
        file = Path(file).resolve()
        if file.is_relative_to(folder) and not any(file.is_relative_to(p) for p in installed):
            files.add(str(file))
    return sorted(files)


def load_weights(model, path):
    """A state_dict file into `model`, strictly: ValueError naming the first missing or
    unexpected key, or the first tensor of another shape."""
    if not Path(path).exists():
        raise ValueError("no such file")
    if Path(path).is_dir():
        raise ValueError("is a folder, not a state_dict file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(_unreadable(err)) from None
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


def _unreadable(err):
    """Why torch.load refused a file, in one line. Its message for a file it will not
    unpickle is a paragraph of advice on weights_only (whose first line cut short reads as
    advice to run the file's code); what it found is the unpickler's error inside it."""
    found = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", ANSI.sub("", str(err)))
    if found is None:
        return f"not a state_dict file (torch.load cannot read it: {first_sentence(err)})"
    pickled = re.match(r"Unsupported global: GLOBAL ([\w.]+)", found.group(1))
    if pickled:
        return (f"not a state_dict file: it holds a pickled {pickled.group(1)}, which crossgrad "
                "does not unpickle (no code from the file runs); save model.state_dict() instead")
    return ("not a state_dict file: torch.load (weights only: no code from the file runs) "
            f"cannot read it ({found.group(1).strip()[:200]})")


def first_non_finite(model, pieces):
    """The state_dict key of the first tensor crossgrad reads (a piece's link) holding a NaN
    or an infinity, or None: a weights file's bad value, named as the file names it."""
    for _, p in walk(pieces):
        for link in p.links.values():
            for name in link.natives:
                if not torch.isfinite(native_tensor(model, p, name)).all():
                    return f"{p.where.removeprefix('model.')}.{name}"
    return None


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
    _no_unused_in_place(gm)
    gm.graph.eliminate_dead_code()
    return gm


def _no_unused_in_place(gm):
    """`out.add_(identity)` or `self.relu(out)` (inplace=True) whose result is not used
    changes `out` for what comes after, which the trace does not show (it would drop the
    call as dead code): refused, naming the call."""
    computed = set()
    for node in gm.graph.nodes:
        if node.op == "placeholder" or any(a in computed for a in node.all_input_nodes):
            computed.add(node)
        if node in computed and not node.users and node.op != "output" and \
                _names_in_place(node, gm):
            raise NotMapped(_where(node), f"{_op_name(node, gm)} changes its input in place "
                                          "and its result is not used: crossgrad follows the "
                                          "values a forward passes on; write `out = ...` with "
                                          "its result")


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
    was_training = model.training
    model.eval()  # the example pass must not move BatchNorm's running statistics
    try:
        x, tokens = example_input(gm, input_shape, dtype)  # its allocation can fail too
        with torch.no_grad():
            recorder = Recorder(gm)
            recorder.run(x)
    except NotMapped:
        raise
    except Exception as err:
        raise NotMapped("model", f"does not run on a batch of shape "
                                 f"{(EXAMPLES, *input_shape)} "
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
    _no_shared_tensors(model, pieces)
    return pieces, layout, gm, tokens


def _no_shared_tensors(model, pieces):
    """Two layers reading one tensor (`b.weight = a.weight`, an embedding tied to the output
    layer) train it once, from both uses; the spec would make two of it, each trained alone.
    Found by identity: the same Parameter reached from two modules of the chain."""
    owner = {}
    for _, p in walk(pieces):
        for name in dict.fromkeys(n for link in p.links.values() for n in link.natives):
            tensor = native_tensor(model, p, name)
            first = owner.setdefault(id(tensor), (p, name))
            if first[0] is not p:
                raise NotMapped(p.where, f"{p.kind} shares its weight with {first[0].where} "
                                         f"({_path(p, name)} is {_path(*first)}); each "
                                         "crossgrad layer has its own")


def _path(piece, name):
    return f"{piece.where.removeprefix('model.')}.{name}"


def _walk(gm, ctx, layout):
    """The nodes, in order, as pieces; see the module's docstring."""
    (x,) = _placeholders(gm)
    ctx.layout, current, pieces = layout, x, []
    positions = {x: 0}          # chain value -> how many pieces came before it
    done, called = set(), {}
    depends = _depending_on(gm, x, ctx.values)
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
            _not_overwriting(node, ctx)
            if node.op == "call_module":
                _once(node, called)
            p = piece(node, ctx.module(node), ctx)
        result = p.result or node
        done |= _between(node, result)
        p.shape = ctx.shape(result)
        pieces.append(p)
        ctx.layout, current = p.out_layout, result
        positions[current] = len(pieces)
    if not in_canonical_order(ctx.layout):
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


def _depending_on(gm, x, values):
    """Nodes computed from the input's values (others are constants: masks, sizes). A size
    (or dtype) read from the input (x.size(1)) carries no values: what is built from it
    (nn.Transformer.generate_square_subsequent_mask(x.size(1)), torch.zeros(1, x.size(0), H),
    x.new_zeros(...)) is a constant of that shape, mapped like a buffer (the causal flag, a
    zero state)."""
    out = {x}
    for node in gm.graph.nodes:
        if function_name(node) in SHAPE_ONLY:
            continue
        if any(a in out and not _carries_no_values(values.get(a))
               for a in node.all_input_nodes):
            out.add(node)
    return out


# calls whose result depends on their input's shape (and dtype) only: x.new_zeros(1, B, H)
SHAPE_ONLY = {"new_zeros", "new_ones", "new_full", "new_empty", "zeros_like", "ones_like",
              "full_like", "empty_like"}


def _carries_no_values(value):
    """x.size(), x.size(1), x.shape[1:], x.dtype, x.device: what the input is, not what it
    holds."""
    return isinstance(value, (int, torch.Size, torch.dtype, torch.device)) or \
        (isinstance(value, (tuple, list)) and all(isinstance(v, int) for v in value))


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
        raise NotMapped(_where(node), f"does not take the output of the layer before it "
                                      f"({_name(current)}): crossgrad reads forwards that are "
                                      "a straight chain (with x + f(x) blocks)")


def _name(node):
    return f"model.{node.target}" if node.op == "call_module" else node.name


def _not_overwriting(node, ctx):
    """An in-place op (an inplace=True module, .relu_(), .add_()) over a value that another
    node reads after it changes what that node sees: the spec, whose layers each make a new
    value, would compute something else. Refused; with no later reader
    (Conv-BN-ReLU(inplace=True)) it is the same as out of place. (torch.fx traces `y += x`
    as `y + x`: that one it cannot see.)"""
    if not _names_in_place(node, ctx.gm) or not node.args or \
            not isinstance(node.args[0], fx.Node):
        return
    order = {n: i for i, n in enumerate(node.graph.nodes)}
    others = [u for u in node.args[0].users if order[u] > order[node]
              and isinstance(ctx.values.get(u), torch.Tensor)]   # x.size() reads no values
    if others:
        other = f"model.{others[0].target}" if others[0].op == "call_module" else \
            f"`{others[0].name}` in forward"
        raise NotMapped(_where(node), f"{_op_name(node, ctx.gm)} overwrites its input, which "
                                      f"{other} reads after it: the model gives that the "
                                      "overwritten value, crossgrad's layers (each makes a new "
                                      "value) would not; set inplace=False (or write it out "
                                      "of place)")


def _names_in_place(node, gm):
    """The call says it works in place: inplace=True, or torch's trailing underscore."""
    if node.kwargs.get("inplace") is True:
        return True
    if node.op == "call_module":
        return getattr(gm.get_submodule(node.target), "inplace", False) is True
    name = function_name(node)
    return isinstance(name, str) and name.endswith("_") and not name.startswith("_")


def _op_name(node, gm):
    if node.op == "call_module":
        return f"{class_name(gm.get_submodule(node.target))} (inplace=True)"
    return describe(node)


def _once(node, called):
    """A module called twice is one layer of the spec per call only if the calls share
    nothing: no parameters or buffers (shared weights), and no randomness (a Dropout
    draws one mask per call, crossgrad's dropout layers one each). nn.ReLU used twice
    (torchvision's BasicBlock) is two relu layers."""
    if node.target in called:
        module = node.graph.owning_module.get_submodule(node.target)
        if _random(module):
            raise NotMapped(_where(node), f"{class_name_of(node)} is called twice in forward: "
                                          "it draws a mask per call, and each crossgrad "
                                          "dropout layer has its own; give each call its own "
                                          f"{type(module).__name__}")
        if _holds_tensors(module):
            raise NotMapped(_where(node), f"{class_name_of(node)} is called twice in forward "
                                          "(shared weights); each crossgrad layer has its own")
    called[node.target] = node


RANDOM = ("Dropout", "RReLU")     # modules whose calls draw random numbers (by class name)


def _random(module):
    return any(r in type(m).__name__ for m in module.modules() for r in RANDOM)


def _holds_tensors(module):
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


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

