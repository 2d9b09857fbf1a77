"""The four framework folders expose the same files, names and signatures, in the same order.

Read with `ast`, so the check needs none of the frameworks installed.
"""
import ast
from pathlib import Path

import pytest

from crossgrad.harness.registry import FRAMEWORKS, MODULES

IMPLS = Path(__file__).resolve().parent.parent / "impls"
FOLDERS = {name: IMPLS / fw.package.rsplit(".", 1)[1] for name, fw in FRAMEWORKS.items()}


def public_api(path):
    """__all__ in order, with each function's parameter names (classes/dicts: their kind)."""
    tree = ast.parse(path.read_text())
    names = next((ast.literal_eval(node.value) for node in tree.body
                  if isinstance(node, ast.Assign) and
                  any(getattr(t, "id", None) == "__all__" for t in node.targets)), None)
    assert names is not None, f"{path} has no __all__"
    defs = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            a = node.args
            defs[node.name] = ("function", [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs],
                               len(a.defaults))
        elif isinstance(node, ast.ClassDef):
            defs[node.name] = ("class",)
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    defs[t.id] = ("value",)
    missing = [n for n in names if n not in defs]
    assert not missing, f"{path}: __all__ names {missing} that it does not define"
    return [(n, defs[n]) for n in names]


def test_every_folder_has_the_same_files():
    expected = {f"{m}.py" for m in MODULES} | {"__init__.py"}
    for name, folder in FOLDERS.items():
        assert {p.name for p in folder.glob("*.py")} == expected, name


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("framework", [f for f in FRAMEWORKS if f != "numpy"])
def test_same_public_api_as_the_reference(framework, module):
    reference = public_api(FOLDERS["numpy"] / f"{module}.py")
    assert public_api(FOLDERS[framework] / f"{module}.py") == reference


@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_implementations_never_import_the_harness(framework):
    for path in FOLDERS[framework].glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(m.split(".")[0] in ("harness", "crossgrad") for m in mods), path


@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_every_layer_type_is_implemented(framework):
    """The LAYERS catalog of each layers.py lists the same types as the spec catalog."""
    from crossgrad.harness.spec.catalog import PARSERS
    tree = ast.parse((FOLDERS[framework] / "layers.py").read_text())
    source = ast.unparse(next(n for n in tree.body if isinstance(n, ast.Assign) and
                              any(getattr(t, "id", None) == "LAYERS" for t in n.targets)))
    for kind in PARSERS:
        assert f"'{kind}'" in source or f'"{kind}"' in source, (framework, kind)
