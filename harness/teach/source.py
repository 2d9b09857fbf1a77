"""Code read out of the source files at build time, so a page never holds a copy that drifts.

`builder(framework, layer_type)`: the layer type's builder in that framework's layers.py
and every class or function of that file it uses (through bases, calls and names, one
level after another), in file order. `layout(framework, layer_type)`: the lines of that
framework's layout.py that convert this layer type's parameters: the branches whose
condition holds for the type (read by evaluating the condition with the type filled in),
the entries of name tables keyed by it, and the helpers those lines call. `definitions`
does the same for any file, for the mistakes gallery.

Files are parsed, never imported: reading TensorFlow's builders does not load TensorFlow.
"""
import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from .. import registry

# Catalog plumbing every builder file shares; not part of any one layer's code.
PLUMBING = {"build_layer", "LAYERS", "plugin", "facts", "__all__"}
UNKNOWN = None   # a condition that does not depend on the layer type alone
GAP = "..."      # marks lines left out between two shown ones


@dataclass(frozen=True)
class Snippet:
    """Lines of one source file: `text` starts at line `line` (1-based) of `path`."""
    name: str
    path: str       # relative to the checkout (or the installed package), for display
    line: int
    text: str


# ---- files -----------------------------------------------------------------------------------

def impl_file(framework, module):
    """impls/<folder>/<module>.py of a framework, located without importing it."""
    package = registry.FRAMEWORKS[framework].package          # crossgrad.impls.torch_autograd
    root = Path(importlib.util.find_spec("crossgrad.impls").submodule_search_locations[0])
    return root / package.rsplit(".", 1)[1] / f"{module}.py"


def shown_path(path):
    """impls/torch_autograd/layers.py: the path from the folder above impls/ or harness/."""
    parts = Path(path).resolve().parts
    for top in ("impls", "harness", "crossgrad"):
        if top in parts:
            return "/".join(parts[len(parts) - 1 - parts[::-1].index(top):])
    return Path(path).name


def parse(path):
    text = Path(path).read_text()
    return text.splitlines(), ast.parse(text)


# ---- definitions and what they use ------------------------------------------------------------

def top_level(tree):
    """name -> the module-level def, class or assignment that binds it."""
    found = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            found[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        found[name.id] = node
    return found


def used_names(node):
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def definitions(path, roots, skip=PLUMBING):
    """Snippets of `roots` (names defined at the top of `path`) and of every top-level
    definition they use, transitively, in file order. KeyError if a root is not there."""
    lines, tree = parse(path)
    defs = top_level(tree)
    wanted, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        node = defs[name] if name in roots else defs.get(name)
        if node is None or node in wanted:
            continue
        wanted.add(node)
        todo += [n for n in used_names(node) if n in defs and n not in skip]
    return [snippet(lines, node, path) for node in sorted(wanted, key=lambda n: n.lineno)]


def snippet(lines, node, path):
    """A definition with its decorators and the comment lines right above it."""
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    while first > 1 and lines[first - 2].lstrip().startswith("#") and \
            not lines[first - 2].lstrip().startswith("# ----"):
        first -= 1
    last = _trailing_comments(lines, node)
    text = "\n".join(lines[first - 1:last])
    return Snippet(_name(node), shown_path(path), first, text)


def _trailing_comments(lines, node):
    """The definition's last line, extended over the comment lines that continue it (a
    comment wrapped onto the next line, indented inside the definition)."""
    last, indent = node.end_lineno, node.col_offset
    while last < len(lines) and lines[last].lstrip().startswith("#") and \
            len(lines[last]) - len(lines[last].lstrip()) > indent:
        last += 1
    return last


def _name(node):
    if isinstance(node, ast.ClassDef):
        return f"class {node.name}"
    if isinstance(node, ast.FunctionDef):
        return node.name
    return ", ".join(n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name))


def members(path, class_name, names=None):
    """A class: whole (names None), or its decorator and `class` lines and the named methods."""
    lines, tree = parse(path)
    node = top_level(tree)[class_name]
    if names is None:
        return snippet(lines, node, path)
    header = [d.lineno for d in node.decorator_list] + [node.lineno]
    body = [n for m in node.body if isinstance(m, ast.FunctionDef) and m.name in names
            for n in range(min([m.lineno] + [d.lineno for d in m.decorator_list]),
                           m.end_lineno + 1)]
    return _lines_snippet(lines, path, f"class {class_name}", header + body)


def builder(framework, layer_type):
    """The builder of `layer_type` in the framework's layers.py first, then what it uses."""
    found = definitions(impl_file(framework, "layers"), [layer_type])
    return sorted(found, key=lambda s: s.name != layer_type)


def docstring_line(framework, layer_type):
    """The first line of the builder's docstring: the canonical equation, with shapes."""
    _, tree = parse(impl_file(framework, "layers"))
    node = top_level(tree)[layer_type]
    return (ast.get_docstring(node) or "").splitlines()[0]


def docstring_rest(framework, layer_type):
    """The builder's docstring after its first line: what this framework does."""
    _, tree = parse(impl_file(framework, "layers"))
    node = top_level(tree)[layer_type]
    return "\n".join((ast.get_docstring(node) or "").splitlines()[1:]).strip()


# ---- layout.py: the lines that hold for one layer type --------------------------------------

def layout(framework, layer_type):
    """Snippets of layout.py that convert `layer_type`'s parameters: for each function, its
    `def` line and the lines that apply to this type (a function with no branch for it:
    the line it falls through to), the name-table entries keyed by the type, and the
    helpers called from those lines."""
    path = impl_file(framework, "layout")
    lines, tree = parse(path)
    defs = top_level(tree)
    consts = _constants(tree)
    out, called = [], set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            keep = _dict_entries(node.value, layer_type, consts, lines)
            if keep:
                out.append(_lines_snippet(lines, path, _name(node),
                                          [node.lineno, node.end_lineno] + keep))
        if isinstance(node, ast.FunctionDef) and node.name in ("to_native", "from_native"):
            kind_names = _kind_names(node)
            keep = _select(node.body, layer_type, consts, kind_names, lines)
            if not keep:  # no branch for this type: show where it falls through
                last = node.body[-1]
                keep = _with_comments(lines, last.lineno, last.end_lineno)
            called |= _names_on(node, keep)
            out.append(_lines_snippet(lines, path, node.name, [node.lineno] + keep))
    helpers = [defs[n] for n in called if n in defs and isinstance(defs[n], ast.FunctionDef)
               and defs[n].name not in ("to_native", "from_native")]
    out += [snippet(lines, h, path) for h in sorted(set(helpers), key=lambda n: n.lineno)]
    return sorted(out, key=lambda s: s.line)


def _constants(tree):
    """Module-level names bound to literals (tuples of type names, tables): name -> value."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return out


def _kind_names(func):
    """The local names bound to layer["type"] (`kind = layer["type"]`, `kind, p = ...`)."""
    names = set()
    for node in ast.walk(func):
        if not isinstance(node, ast.Assign):
            continue
        targets = node.targets[0].elts if isinstance(node.targets[0], ast.Tuple) else \
            [node.targets[0]]
        values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
        for t, v in zip(targets, values):
            if isinstance(t, ast.Name) and _is_layer_type(v):
                names.add(t.id)
    return names


def _is_layer_type(node):
    return (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)
            and node.value.id == "layer" and isinstance(node.slice, ast.Constant)
            and node.slice.value == "type")


class _Layer:
    """The `layer` dict of a built-in layer: it has no "plugin" key."""


def _value(node, layer_type, consts, kinds):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in kinds:
            return layer_type
        if node.id == "layer":
            return _Layer
        return consts.get(node.id, UNKNOWN)
    if _is_layer_type(node):
        return layer_type
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        items = [_value(e, layer_type, consts, kinds) for e in node.elts]
        return UNKNOWN if UNKNOWN in items else tuple(items)
    return UNKNOWN


def truth(test, layer_type, consts, kinds=()):
    """True, False, or UNKNOWN (None): does the condition hold for a layer of this type?"""
    if isinstance(test, ast.BoolOp):
        values = [truth(v, layer_type, consts, kinds) for v in test.values]
        if isinstance(test.op, ast.And):
            return False if False in values else (True if all(values) else UNKNOWN)
        return True if True in values else (False if all(v is False for v in values) else UNKNOWN)
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        value = truth(test.operand, layer_type, consts, kinds)
        return UNKNOWN if value is UNKNOWN else not value
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        left = _value(test.left, layer_type, consts, kinds)
        right = _value(test.comparators[0], layer_type, consts, kinds)
        op = test.ops[0]
        if right is _Layer and isinstance(op, (ast.In, ast.NotIn)) and left == "plugin":
            return isinstance(op, ast.NotIn)
        if UNKNOWN in (left, right) or _Layer in (left, right):
            return UNKNOWN
        if isinstance(op, (ast.Eq, ast.NotEq)):
            return (left == right) == isinstance(op, ast.Eq)
        if isinstance(op, (ast.In, ast.NotIn)) and isinstance(right, (tuple, dict, str)):
            return (left in right) == isinstance(op, ast.In)
    return UNKNOWN


def _select(body, layer_type, consts, kinds, lines):
    """Line numbers of the branches in `body` whose condition holds for this type (with
    their `if`/`elif` line); statements outside any such branch apply to every type."""
    keep = []
    for node in body:
        if not isinstance(node, ast.If):
            continue
        value = truth(node.test, layer_type, consts, kinds)
        if value is True or (value is UNKNOWN and _mentions(node.test, layer_type, consts,
                                                            kinds)):
            keep += _with_comments(lines, node.lineno, node.body[0].lineno - 1)
            keep += _applicable(node.body, layer_type, consts, kinds, lines)
        if value is not True:  # `kind == "dense" and "weight" in n` may be false: go on
            keep += _select(node.orelse, layer_type, consts, kinds, lines)
    return keep


def _mentions(test, layer_type, consts, kinds):
    """Whether part of the condition is a comparison that holds for this type."""
    return any(truth(n, layer_type, consts, kinds) is True for n in ast.walk(test)
               if isinstance(n, ast.Compare))


def _applicable(body, layer_type, consts, kinds, lines):
    """Every line of `body`, but of an `if` decided by the type only the branch taken."""
    keep = []
    for node in body:
        value = truth(node.test, layer_type, consts, kinds) if isinstance(node, ast.If) \
            else UNKNOWN
        if value is True:
            keep += range(node.lineno, node.body[0].lineno)
            keep += _applicable(node.body, layer_type, consts, kinds, lines)
        elif value is False and node.orelse:
            start = node.orelse[0].lineno
            if not isinstance(node.orelse[0], ast.If) or len(node.orelse) > 1 or \
                    lines[start - 1].lstrip().startswith("else"):
                # a plain `else:`: show the `if` it belongs to, its body left out
                keep += [node.lineno, _else_line(lines, node)]
            keep += _applicable(node.orelse, layer_type, consts, kinds, lines)
        elif value is UNKNOWN:
            keep += range(node.lineno, node.end_lineno + 1)
    return keep


def _else_line(lines, node):
    """The line of the `else:` between an if's body and its orelse."""
    for n in range(node.body[-1].end_lineno + 1, node.orelse[0].lineno):
        if lines[n - 1].strip().startswith("else"):
            return n
    return node.orelse[0].lineno


def _with_comments(lines, first, last):
    """Lines first..last and the comment lines right above them."""
    while first > 1 and lines[first - 2].lstrip().startswith("#"):
        first -= 1
    return list(range(first, last + 1))


def _names_on(func, line_numbers):
    """The names used on the given lines of `func` (of an `if` or a loop: its header only)."""
    wanted, names = set(line_numbers), set()
    for node in ast.walk(func):
        if not isinstance(node, ast.stmt) or node.lineno not in wanted:
            continue
        if isinstance(node, (ast.If, ast.While)):
            names |= used_names(node.test)
        elif isinstance(node, ast.For):
            names |= used_names(node.iter)
        elif not isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names |= used_names(node)
    return names


def _dict_entries(node, layer_type, consts, lines):
    """Lines of the entries of a literal dict keyed by this type, or by a comprehension
    over a table that holds it (`**{kind: ... for kind, cell in _CELL.items()}`)."""
    keep = []
    for key, value in zip(node.keys, node.values):
        if isinstance(key, ast.Constant) and key.value == layer_type:
            keep += _with_comments(lines, key.lineno, value.end_lineno)
        elif key is None and isinstance(value, ast.DictComp):
            source = value.generators[0].iter
            if isinstance(source, ast.Call) and isinstance(source.func, ast.Attribute):
                source = source.func.value  # _CELL.items() -> _CELL
            table = _value(source, layer_type, consts, ())
            if isinstance(table, (dict, tuple)) and layer_type in table:
                keep += _with_comments(lines, value.lineno, value.end_lineno)
    return keep


def _lines_snippet(lines, path, name, numbers):
    """The given lines in order, with GAP where lines are left out (indented like the next)."""
    numbers = sorted(set(numbers))
    out = []
    for prev, n in zip([None] + numbers, numbers):
        if prev is not None and n > prev + 1:
            before, after = lines[prev - 1], lines[n - 1]
            indent = len(after) - len(after.lstrip())
            if before.rstrip().endswith(":"):  # the left-out lines are a block's body
                indent = len(before) - len(before.lstrip()) + 4
            out.append(" " * indent + GAP)
        out.append(lines[n - 1])
    return Snippet(name, shown_path(path), numbers[0], "\n".join(out))
