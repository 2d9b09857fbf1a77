"""The harness's rooms: every module imports, dependencies point one way, no cycles.

Levels, bottom up: the base (errors, registry), spec/, run/ and bench/ (the workers run
both), compare/, report/, then the top (api, options, commands, cli, sweep) and the public
`crossgrad` package. A module may import its own level or below, never above; module-level
imports form no cycle.
"""
import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import crossgrad
import crossgrad.harness as harness

ROOT = Path(harness.__file__).parent
LEVELS = {"errors": 0, "registry": 0, "spec": 1, "importers": 1.5, "run": 2, "bench": 2,
          "compare": 3, "report": 4}
TOP = 5


def modules():
    return sorted(m.name for m in pkgutil.walk_packages(harness.__path__, "crossgrad.harness."))


def known():
    """Every crossgrad module: the harness's, the public package's and the implementations'."""
    import crossgrad.impls as impls
    public = [m.name for m in pkgutil.walk_packages(crossgrad.__path__, "crossgrad.")]
    inner = [m.name for m in pkgutil.walk_packages(impls.__path__, "crossgrad.impls.")]
    return {"crossgrad", "crossgrad.harness", "crossgrad.impls", *modules(), *public, *inner}


def level(module):
    """crossgrad.harness.<room>[.…] -> its level; the public package sits above everything."""
    parts = module.split(".")
    if parts[:2] != ["crossgrad", "harness"]:
        return TOP + 1
    return LEVELS.get(parts[2], TOP) if len(parts) > 2 else 0  # the package: see below


def imports(module, top_only=False):
    """The crossgrad modules `module` imports (relative imports resolved)."""
    path = Path(importlib.util.find_spec(module).origin)  # a module, not a name inside one
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    nodes = tree.body if top_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found |= {target} | {f"{target}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found & KNOWN


KNOWN = known()


@pytest.mark.parametrize("module", modules())
def test_every_module_imports(module):
    importlib.import_module(module)


def test_the_harness_package_itself_imports_nothing():
    """`from .. import registry` runs harness/__init__.py: it must stay at the bottom."""
    assert not imports("crossgrad.harness")


@pytest.mark.parametrize("module", modules())
def test_no_upward_import(module):
    upward = sorted(m for m in imports(module) if level(m) > level(module))
    assert not upward, f"{module} (level {level(module)}) imports {upward}"


def test_no_import_cycle():
    graph = {m: {i for i in imports(m, top_only=True) if i in set(modules())}
             for m in modules()}
    state = {}

    def visit(m, path):
        if state.get(m) == "open":
            raise AssertionError(" -> ".join(path + [m]))
        if state.get(m) != "done":
            state[m] = "open"
            for n in graph[m]:
                visit(n, path + [m])
            state[m] = "done"
    for m in graph:
        visit(m, [])


def test_the_commands_load_without_pandas():
    """The CLI's commands start their workers as soon as the options and specs are read:
    pandas (0.4 s; only the tables returned to Python and the report's CSV need it) is
    imported after, while TensorFlow's worker imports (3 s), not before it."""
    code = ("import sys, crossgrad.harness.cli, crossgrad.harness.commands;"
            "print(sorted(m for m in ('pandas', 'matplotlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_only_one_top_level_name_is_installed():
    """harness/ and impls/ install as crossgrad.harness and crossgrad.impls, nothing else."""
    from importlib.metadata import distribution
    assert crossgrad.__version__ == distribution("crossgrad").version
    top = distribution("crossgrad").read_text("top_level.txt").split()
    assert top == ["crossgrad"]
    assert importlib.util.find_spec("crossgrad.impls.numpy_manual") is not None
