"""Plugin layers: a user's class, written once per framework outside the checkout.

A spec names the files or modules that declare its plugin layers,
`plugins = ["my_layers.py", "some.module"]` (paths relative to the spec file; anything
else is an importable module name), and uses their types like built-in ones:

    @crossgrad.layer("scaled_swish")     # `layer` below; the spec's layer type
    class ScaledSwish:
        keys = {"gamma": 1.0}            # spec keys and defaults -> self.gamma
        def params(self, in_shape): ...  # local name -> (canonical shape, default initializer)
        def out_shape(self, in_shape): ...
        def numpy_forward(self, p, x): ...  and numpy_backward, torch, tensorflow, jax

The harness side (`load_plugins`, `plugin_parser`) checks all of it while the spec is
read, so a bad plugin is exit 2 naming `plugins[i]` or `layers[i].type`; the
parameters get canonical names and are drawn like any other. The worker side
(`attach`, `unsupported`, `without_backward`) loads the same sources in each worker, once,
and puts an instance with the spec keys set as attributes on every plugin layer as
`layer["plugin"]`, which is what the implementations' `plugin` builders call.
"""
import ast
import hashlib
import importlib
import importlib.util
import inspect
import math
import operator
import re
import sys
import sysconfig
import traceback
from pathlib import Path

from ..errors import InputError
from .catalog import PARSERS, walk
from .initializers import parse_initializer
from .table import Table, check_int

TYPE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")   # a spec type; param names likewise
MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
RESERVED = {"type", "name", "in_shape", "out_shape", "params", "state", "explicit", "plugin",
            "layers", "zeros"}                         # what every layer entry already holds
METHODS = {"numpy": "numpy_forward", "torch": "torch", "tensorflow": "tensorflow",
           "jax": "jax"}

REGISTERED = []   # (type, class) for every @layer this process has run, in order
_LOADED = {}      # (path, sha256) -> {type: class}; module name -> ({type: class}, sha256)
_FILES = set()    # every plugin file loaded here: their frames locate errors
_IMPORTED = {}    # module plugin name -> the files of the user's code its import loaded


def layer(name):
    """Class decorator: `@crossgrad.layer("scaled_swish")` makes the class a spec layer type."""
    if not isinstance(name, str) or not TYPE_NAME.match(name):
        raise ValueError(f"crossgrad.layer: a layer type is letters, digits and '_', "
                         f"not starting with a digit; got {name!r}")

    def register(cls):
        if not inspect.isclass(cls):
            raise TypeError(f"@crossgrad.layer({name!r}) decorates a class, "
                            f"not a {type(cls).__name__}")
        REGISTERED.append((name, cls))
        return cls
    return register


# ---- loading: the same in the harness and in every worker ------------------------------------

def source_of(entry, spec_file):
    """A `plugins` entry -> {"entry", "path" | "module"}: a path ends in .py or has a slash."""
    if entry.endswith(".py") or "/" in entry or "\\" in entry:
        path = Path(entry) if Path(entry).is_absolute() else Path(spec_file).parent / entry
        try:
            return {"entry": entry, "path": str(path.resolve())}
        except (OSError, RuntimeError):  # a loop of links: Path.resolve raises RuntimeError
            raise ValueError(f"symlink loop: {path} never reaches a file") from None
    if not MODULE_NAME.match(entry):
        raise ValueError("is neither a .py file nor a module name")
    return {"entry": entry, "module": entry}


def load(source):
    """Import one source (once per process) -> ({type: class}, sha256 of its code).

    Raises ValueError with a one-line reason; a file is run from the very bytes hashed."""
    if "path" in source:
        path = Path(source["path"])
        if not path.is_file():
            raise ValueError(f"no such plugin file: {path}" if not path.exists() else
                             f"{path} is not a regular file (a plugin is a .py file)")
        code = path.read_bytes()
        digest = hashlib.sha256(code).hexdigest()
        if source.get("sha256", digest) != digest:
            raise ValueError(f"{path.name} changed after the spec was read; run again")
        key = (str(path), digest)
        if key not in _LOADED:
            _LOADED[key] = _run_file(path, code, f"crossgrad_plugin_{digest[:16]}")
        return _LOADED[key], digest
    name = source["module"]
    if name not in _LOADED:
        root = source.get("root")  # where the harness found it: a worker may not have it
        if root and root not in sys.path:
            sys.path.append(root)
        types = _import_module(name)
        _LOADED[name] = types, _module_digest(sys.modules[name])  # the code as imported
    types, digest = _LOADED[name]
    if source.get("sha256", digest) != digest:
        raise ValueError(f"module {name} differs from the one the spec was read with "
                         "(edited since, or another module of that name); run again")
    return types, digest


def _run_file(path, code, module_name):
    """Execute a plugin file as its own module (registered in sys.modules, so that pickling
    and dataclasses inside it work) -> the layer types it registered."""
    module = type(sys)(module_name)
    module.__file__ = str(path)
    sys.modules[module_name] = module
    _FILES.add(str(path))
    try:
        exec(compile(code, str(path), "exec"), module.__dict__)
    except SyntaxError as err:
        del sys.modules[module_name]
        raise ValueError(f"{path.name} line {err.lineno}: syntax error: {err.msg}") from None
    except (Exception, SystemExit) as err:  # sys.exit() in a plugin ends no crossgrad run
        del sys.modules[module_name]
        beside = _imported_beside(err, path, code)
        if beside:
            raise ValueError(f"{path.name} imports {beside}{_where(err)}: a file plugin is one "
                             "self-contained file (loaded alone, only its bytes hashed); code "
                             "split across files is a module plugin, plugins = "
                             "[\"package.module\"], found on sys.path") from None
        raise ValueError(f"{path.name} raised {describe(err)} while loading") from None
    return _registered_by(module_name, path.name)


def _imported_beside(err, path, code):
    """What a plugin file failed to import from its own folder ("helpers, a module beside it",
    "a module relative to it"), or None. The file runs alone, as no package and without its
    folder on sys.path: the module beside it would be neither found nor hashed with it."""
    if isinstance(err, ModuleNotFoundError) and err.name:
        top = err.name.partition(".")[0]
        if (path.parent / f"{top}.py").is_file() or (path.parent / top).is_dir():
            return f"{err.name}, a module beside it"
    elif type(err) is ImportError and err.name is None and any(
            isinstance(node, ast.ImportFrom) and node.level for node in ast.walk(ast.parse(code))):
        return "a module relative to it"  # `from . import x`: no package to be relative to
    return None


def _import_module(name):
    try:
        found = importlib.util.find_spec(name)
    except Exception:  # a parent package that fails to import fails again just below
        found = None
    if found is not None and found.origin:
        _FILES.add(found.origin)           # so that an error while importing is located
    before = set(sys.modules)
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name == name or name.startswith(f"{err.name}."):
            raise ValueError(f"no module named {name!r} (not a .py path either)") from None
        raise ValueError(f"importing {name} raised {describe(err)}") from None
    except (Exception, SystemExit) as err:  # sys.exit() in a plugin ends no crossgrad run
        raise ValueError(f"importing {name} raised {describe(err)}") from None
    # every module of the user's code the import loaded, whichever sys.path entry it came
    # from (`import hb`, hb.py in another folder of PYTHONPATH): the plugin runs it too
    _IMPORTED[name] = sorted({path for new in set(sys.modules) - before
                              for path in _files_of_loaded(new)})
    _FILES.update(str(file) for file in _module_files(module))
    return _registered_by(name)


def _registered_by(module_name, label=None):
    """The types registered by classes of `module_name` (or of its submodules), or imported
    into it (`from blocks import Swish`), whoever imported it first: a module imported
    before the spec named it registered already.
    Two classes of different names registering one type is an error (which one the spec
    meant cannot be told); a class registered again under its own name is the module
    reloaded (importlib.reload in a notebook), and the newest stands."""
    module = sys.modules.get(module_name)
    exposed = {id(value) for value in vars(module).values()} if module is not None else set()
    types = {}
    for t, cls in REGISTERED:
        if cls.__module__ != module_name and not cls.__module__.startswith(module_name + ".") \
                and id(cls) not in exposed:  # nor imported into it from a module beside it
            continue
        if t in types and types[t].__qualname__ != cls.__qualname__:
            raise ValueError(f"{label or module_name} registers {t!r} twice, with "
                             f"{types[t].__qualname__} and {cls.__qualname__}")
        types[t] = cls
    return types


def _root(name):
    """The sys.path entry module `name` was imported from (None for a module without a file)."""
    file = getattr(sys.modules[name], "__file__", None)
    if not file:
        return None
    path = Path(file).resolve()
    path = path.parent if path.name == "__init__.py" else path
    return str(path.parents[name.count(".")])


def _module_files(module):
    """The files of the user's code a module plugin runs, sorted: its top-level package
    whole (a change to `pkg/common.py` changes `pkg.layers` as much as one to its own file);
    every module of the user's code that importing it loaded, whichever sys.path entry it
    came from (`import hb` with hb.py in another folder of PYTHONPATH); and, followed
    through their `import` statements, the modules they name: beside it on the same
    sys.path entry (`import blocks` next to a top-level `my_layers.py`, imported or not), or
    wherever an imported one was loaded from. The user's code is every file outside
    Python's own library and outside site-packages (_users_code). A package installed in
    site-packages is hashed whole, and the other installed packages it imports not at all
    (their versions are in the manifest)."""
    file = getattr(module, "__file__", None)
    if not file:
        return []
    root, top = Path(_root(module.__name__)), module.__name__.partition(".")[0]
    own = Path(file).resolve()
    pending = [own] + (sorted((root / top).rglob("*.py")) if own.parent != root else [])
    pending += [Path(f) for f in _IMPORTED.get(module.__name__, ())]
    found = set()
    while pending:
        path = Path(pending.pop()).resolve()
        if path in found or not path.is_file():
            continue
        found.add(path)
        if not _installed(root):
            pending += [f for name in _imported_names(path)
                        for f in _files_of(root, name) + _files_of_loaded(name)]
    return sorted(found)


def _files_of(root, name):
    """The .py files of top-level module `name` under `root`: a package's every file.
    crossgrad itself is not the plugin's code (its version keys every result)."""
    package, single = root / name, root / f"{name}.py"
    if name == "crossgrad":
        return []
    if (package / "__init__.py").is_file():
        return sorted(package.rglob("*.py"))
    return [single] if single.is_file() else []


def _files_of_loaded(name):
    """The files of module `name` as imported in this process (sys.modules), if it is the
    user's code: its file, or a package's every file; [] otherwise."""
    if name == "crossgrad" or name.startswith("crossgrad."):
        return []
    file = getattr(sys.modules.get(name), "__file__", None)
    if not isinstance(file, str) or not file:
        return []
    try:
        path = Path(file).resolve()
        if not path.is_file() or not _users_code(path):
            return []
        if path.name == "__init__.py":
            return sorted(path.parent.rglob("*.py"))
    except (OSError, RuntimeError):
        return []
    return [path]


def _library_folders():
    """Python's own library and the installed distributions' folders, of this environment
    and of the Python it was made from."""
    folders = set()
    for scheme in (sysconfig.get_paths(), sysconfig.get_paths(vars={
            "base": sys.base_prefix, "platbase": sys.base_exec_prefix,
            "installed_base": sys.base_prefix, "installed_platbase": sys.base_exec_prefix})):
        for key in ("stdlib", "platstdlib", "purelib", "platlib"):
            if scheme.get(key):
                folders.add(Path(scheme[key]).resolve())
    return folders


def _users_code(path):
    """Whether a module's file is the user's code: not in Python's library, not in an
    installed distribution (site-packages, dist-packages)."""
    if any(part in ("site-packages", "dist-packages") for part in path.parts):
        return False
    global _LIBRARY
    if _LIBRARY is None:
        _LIBRARY = _library_folders()
    return not any(path.is_relative_to(folder) for folder in _LIBRARY)


_LIBRARY = None


def _installed(root):
    return Path(root).name in ("site-packages", "dist-packages")


def _imported_names(path):
    """The top-level names a file's absolute imports name (`import a.b`, `from a import b`)."""
    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError, OSError):
        return []  # a helper that does not parse: Python would not import it either
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.partition(".")[0])
    return sorted(names)


def _module_digest(module):
    """sha256 over the code a module plugin runs (_module_files): each file's path and bytes."""
    h = hashlib.sha256(module.__name__.encode())
    for file in _module_files(module):
        h.update(str(file).encode() + b"\0" + file.read_bytes())
    return h.hexdigest()


def describe(err):
    """"ValueError: boom (at my_layers.py:12)": the innermost frame in a plugin's own code."""
    return f"{type(err).__name__}: {err}{_where(err)}"


def _where(err):
    """" (at my_layers.py:12)", the innermost frame of `err` in a plugin's own code, or ""."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename in _FILES]
    return f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""


def is_plugin_file(filename):
    return filename in _FILES


# ---- the harness side: reading a spec ------------------------------------------------------------

def load_plugins(top):
    """The spec's `plugins` list -> (sources for the jobs, {type: parser for the catalog}).

    Every problem is an InputError naming `plugins[i]`."""
    entries = top.raw("plugins", [])
    if not isinstance(entries, list):
        raise top.error("plugins", "must be a list of plugin files or module names")
    sources, parsers, owner = [], {}, {}
    for i, entry in enumerate(entries):
        field = f"plugins[{i}]"
        if not isinstance(entry, str) or not entry.strip():
            raise InputError(top.file, field, "must be a .py file or a module name")
        try:
            source = source_of(entry, top.file)
            types, digest = load(source)
        except ValueError as err:
            raise InputError(top.file, field, str(err)) from None
        if not types:
            raise InputError(top.file, field, f"{entry} registers no layer (decorate a class "
                                              "with @crossgrad.layer(\"name\"))")
        for kind, cls in types.items():
            if kind in PARSERS:
                raise InputError(top.file, field, f"{entry} registers {kind!r}, the name of a "
                                                  "built-in layer type")
            if kind in owner and parsers[kind].plugin is not cls:
                raise InputError(top.file, field, f"{entry} registers {kind!r}, which "
                                                  f"{owner[kind]} registers too")
            owner[kind], parsers[kind] = entry, plugin_parser(kind, cls, entry)
        if "module" in source:
            source["root"] = _root(source["module"])
        sources.append(dict(source, sha256=digest))
    return sources, parsers


def plugin_parser(kind, cls, entry):
    """The catalog parser of one plugin type: keys, parameters and output shape."""
    def parse(t, layer, ctx):
        keys = _read_keys(t, kind, cls)
        obj = instantiate(cls, keys, lambda msg: t.error("type", f"plugin {kind}: {msg}"))
        in_shape = tuple(layer["in_shape"])
        for local, (shape, init) in _call(t, kind, obj, "params", in_shape, {}).items():
            fan_in, fan_out = fans(shape)
            layer["params"][local] = {"shape": shape, "init": parse_initializer(
                t, f"init_{local}", init, shape), "fan_in": fan_in, "fan_out": fan_out}
        layer["out_shape"] = _call(t, kind, obj, "out_shape", in_shape, list(in_shape))
        layer.update(keys, plugin=entry, zeros=_declared_zeros(t, kind, obj, layer["params"]))
    parse.plugin = cls
    return parse


def _declared_zeros(t, kind, obj, params):
    """What the layer says of gradients that are zero by construction (compare/zeros.py),
    as attributes of its class or properties of the instance (its keys set): `shifts`, its
    parameters that only add a constant to each output feature (a bias); `cancels_shifts`,
    whether its output ignores such a constant added to its input (a normalisation over
    the batch, as BatchNorm); `zero_gradients`, {its parameter: why} for one whose gradient
    is zero whatever comes after (attention's key bias)."""
    shifts = getattr(obj, "shifts", ())
    zero = getattr(obj, "zero_gradients", {})
    cancels = getattr(obj, "cancels_shifts", False)
    if not isinstance(shifts, (list, tuple)) or not isinstance(zero, dict) or \
            not isinstance(cancels, bool):
        raise t.error("type", f"plugin {kind}: shifts is a tuple of parameter names, "
                              "zero_gradients a dict {name: why}, cancels_shifts True or False")
    for name in [*shifts, *zero]:
        if name not in params:
            raise t.error("type", f"plugin {kind}: {name!r} (in shifts or zero_gradients) is "
                                  f"not one of its parameters ({', '.join(params) or 'none'})")
    return {"shifts": list(shifts), "cancels_shifts": cancels,
            "zero_gradients": {k: str(v) for k, v in zero.items()}}


def _read_keys(t, kind, cls):
    """The spec keys declared by `keys`, typed like their defaults (None: required, any value)."""
    declared = getattr(cls, "keys", {})
    if not isinstance(declared, dict) or not all(isinstance(k, str) for k in declared):
        raise t.error("type", f"plugin {kind}: `keys` must be a dict of key name -> default")
    bad = [k for k in declared if k in RESERVED or k.startswith("init_")]
    if bad:
        raise t.error("type", f"plugin {kind}: key {bad[0]!r} is reserved (every layer has "
                              f"{', '.join(sorted(RESERVED))}; init_<param> sets initializers)")
    hidden = [k for k in declared if k == "keys" or callable(getattr(cls, k, None))]
    if hidden:  # set on the instance, the key's value would stand in the method's place
        raise t.error("type", f"plugin {kind}: key {hidden[0]!r} is the name of the class's "
                              f"own {'keys' if hidden[0] == 'keys' else 'method'}; name the "
                              "key otherwise")
    odd = [k for k, v in declared.items() if isinstance(v, type) and v not in REQUIRED]
    if odd:
        raise t.error("type", f"plugin {kind}: key {odd[0]!r}: a required key's type is one of "
                              f"{', '.join(c.__name__ for c in REQUIRED)}")
    return {key: _typed(t, key, default) for key, default in declared.items()}


def _typed(t, key, default):
    """A key typed like its default; a type as the default (`{"units": int}`) is a required key
    of that type, None a required key of any type."""
    if default is None:
        return t.raw(key, required=True)
    if isinstance(default, type):
        return REQUIRED[default](t, key)
    if isinstance(default, bool):
        return t.bool(key, default)
    if isinstance(default, int):
        return t.int(key, default, min=None)
    if isinstance(default, float):
        return t.float(key, default)
    if isinstance(default, str):
        return t.str(key, default)
    value = t.raw(key, default)
    kind = type(default)
    if isinstance(default, (list, tuple)):
        if not isinstance(value, list):
            raise t.error(key, f"must be a list, like its default {list(default)!r}")
        if default and any(not _same_kind(v, default[0]) for v in value):
            raise t.error(key, f"must be a list of {_kind_name(default[0])}, got {value!r}")
        return list(value)
    if not isinstance(value, kind):
        raise t.error(key, f"must be {_kind_name(default)}, like its default {default!r}")
    return value


def _required_list(t, key):
    value = t.raw(key, required=True)
    if not isinstance(value, list):
        raise t.error(key, f"must be a list, got {value!r}")
    return value


def _required_table(t, key):
    value = t.raw(key, required=True)
    if not isinstance(value, dict):
        raise t.error(key, f"must be a table, got {value!r}")
    return value


REQUIRED = {int: lambda t, key: t.int(key, required=True, min=None),
            float: lambda t, key: t.float(key, required=True),
            str: lambda t, key: t.str(key, required=True),
            bool: lambda t, key: t.bool(key, t.raw(key, required=True)),
            list: _required_list, dict: _required_table}


def _same_kind(value, like):
    if isinstance(like, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(like, bool)
    if isinstance(like, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(like))


def _kind_name(value):
    return {bool: "booleans", int: "integers", float: "numbers", str: "strings",
            dict: "a table"}.get(type(value), type(value).__name__)


def instantiate(cls, keys, error=ValueError):
    """An instance of the plugin class with every spec key set as an attribute (self.gamma)."""
    try:
        obj = cls()
    except Exception as err:
        raise error(f"{cls.__name__}() raised {describe(err)}") from None
    for key, value in keys.items():
        setattr(obj, key, value)
    return obj


def _call(t, kind, obj, method, in_shape, default):
    """obj.params(in_shape) or obj.out_shape(in_shape), checked; `default` if not defined."""
    fn = getattr(obj, method, None)
    if fn is None:
        return default
    try:
        value = fn(in_shape)
    except Exception as err:
        raise t.error("type", f"plugin {kind}: {method}({in_shape}) raised {describe(err)}") \
            from None
    check = _check_params if method == "params" else _check_shape
    problem, value = check(value)
    if problem:
        raise t.error("type", f"plugin {kind}: {method}({in_shape}) {problem}")
    return value


def _check_shape(value):
    """-> (problem or None, the shape as a list of positive ints)."""
    if not isinstance(value, (list, tuple)):
        return f"must return a shape (a tuple of positive integers), returned {value!r}", None
    shape = []
    for v in value:
        try:  # any integer type, as NumPy's (np.prod of a shape is an np.int64), as an int
            shape.append(check_int(v if isinstance(v, bool) else operator.index(v), 1,
                                   ValueError))
        except (TypeError, ValueError):
            return f"must return a shape of positive integers, returned {value!r}", None
    return None, shape


def _check_params(value):
    """-> (problem or None, {local: (shape, default initializer)})."""
    form = "{name: (shape, initializer)}"
    if not isinstance(value, dict):
        return f"must return {form}, returned {value!r}", None
    out = {}
    for local, pair in value.items():
        if not isinstance(local, str) or not TYPE_NAME.match(local):
            return (f"gives a parameter the name {local!r}; names are letters, digits and '_' "
                    "(canonical names join them to the layer's with a dot)"), None
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            return f"must return {form}, gives {local!r} {pair!r}", None
        problem, shape = _check_shape(pair[0])
        if problem:
            return f"gives {local!r} the shape {pair[0]!r}; a shape is a tuple of positive " \
                   "integers", None
        init = pair[1]
        try:
            parse_initializer(Table("", "", {"init": init}), "init", None, shape)
        except InputError as err:  # its field: which key of an initializer table
            return f"gives {local!r} the initializer {init!r}: {err.field}: {err.message}", None
        out[local] = (shape, init)
    return None, out


def fans(shape):
    """(fan_in, fan_out) for the initializers, by Keras' rule: (in, out) for a matrix, the
    receptive field times the last two axes for a kernel, the length of a vector for both."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


# ---- the worker side -------------------------------------------------------------------------

class Unsupported(Exception):
    """A plugin of this model has no implementation for this framework: the job is skipped."""


def attach(layers, sources):
    """Load the job's plugin sources and put an instance on every plugin layer (at any depth)
    as layer["plugin"], its spec keys set as attributes. -> {type: class} of the model."""
    types = {}
    for source in sources:
        types.update(load(source)[0])
    used = {}
    for entry in walk(layers):
        if isinstance(entry.get("plugin"), str):
            cls = types.get(entry["type"])
            if cls is None:
                raise ValueError(f"plugin {entry['type']}: not registered by {entry['plugin']}")
            keys = {k: entry[k] for k in getattr(cls, "keys", {})}
            entry["plugin"] = instantiate(cls, keys)
        if "plugin" in entry:
            used[entry["type"]] = type(entry["plugin"])
    return used


def unsupported(used, framework, kind):
    """Why `framework` cannot run this model's `kind` job ("check" or "train"), or None."""
    for name, cls in used.items():
        if not callable(getattr(cls, METHODS[framework], None)):
            return f"plugin {name} has no {framework} implementation"
    if kind == "train" and framework == "numpy" and without_backward(used):
        return f"{without_backward(used)}: NumPy cannot train it"
    return None


def without_backward(used):
    """"plugin X has no numpy_backward" if NumPy can evaluate the loss but no gradient."""
    for name, cls in used.items():
        if not callable(getattr(cls, "numpy_backward", None)):
            return f"plugin {name} has no numpy_backward"
    return None
