"""The four framework folders expose the same files, names and signatures, in the same order.

And they read as four columns: every layer type (loss type, optimizer type) has a builder
of the same name, signature and place in each file, whose docstring starts with the same
line, the canonical equation. Read with `ast`, so the check needs none of the frameworks
installed.
"""
import ast
from collections import Counter
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


# ---- four columns: one builder per type, alike in every file ----------------------------------

COLUMNS = {  # module: (its catalog, builders outside the catalog, every builder's parameters)
    "layers": ("LAYERS", ["plugin"], ["layer", "dtype", "native"]),
    "losses": ("LOSSES", [], ["loss", "native"]),
    "optimizers": ("OPTIMIZERS", [], ["optimizer", "native"]),
}


def catalog(tree, name):
    """The builder names of the catalog dict `name`, in order: {"dense": dense, ...} or
    {f.__name__: f for f in (dense, ...)}. A type named unlike its builder is reported."""
    node = next((n.value for n in tree.body if isinstance(n, ast.Assign) and
                 any(getattr(t, "id", None) == name for t in n.targets)), None)
    if isinstance(node, ast.DictComp) and isinstance(node.generators[0].iter, ast.Tuple):
        return [e.id for e in node.generators[0].iter.elts]
    if isinstance(node, ast.Dict):
        names = [v.id if isinstance(v, ast.Name) else ast.unparse(v) for v in node.values]
        keys = [ast.literal_eval(k) if k is not None else None for k in node.keys]
        return [n if k in (None, n) else f"{k} -> {n}" for k, n in zip(keys, names)]
    return []


def builders(source, module):
    """-> (catalog names, {builder: (parameter names, first docstring line)}, definition order)."""
    tree = ast.parse(source)
    catalog_name, extra, _ = COLUMNS[module]
    names = catalog(tree, catalog_name)
    wanted = set(names) | set(extra)
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    found = {n.name: ([a.arg for a in n.args.posonlyargs + n.args.args + n.args.kwonlyargs],
                      (ast.get_docstring(n) or "").split("\n")[0].strip()) for n in defs}
    return names, found, [n.name for n in defs]


def odd_ones(values):
    """{framework: value} -> [(framework, its value, the value most frameworks have)]."""
    counts = Counter(repr(v) for v in values.values())
    usual = next(v for v in values.values() if repr(v) == counts.most_common(1)[0][0])
    return [(fw, v, usual) for fw, v in values.items() if v != usual]


def column_problems(sources, module):
    """Every way the files' builders differ: sources is {framework: text of <module>.py}.
    A framework unlike the others is named; the others' way is quoted."""
    catalog_name, extra, signature = COLUMNS[module]
    read = {fw: builders(text, module) for fw, text in sources.items()}
    problems = []
    for fw, (names, found, order) in read.items():
        if not names:
            problems.append(f"{fw}: no {catalog_name} catalog")
        problems += [f"{fw}: {catalog_name} maps type {n}" for n in names if " -> " in n]
        for name in names + extra:
            if name not in found:
                problems.append(f"{fw}: no builder def {name}(...)")
            elif found[name][0] != signature:
                problems.append(f"{fw}: {name}{tuple(found[name][0])}, "
                                f"not {name}{tuple(signature)}")
            elif not found[name][1]:
                problems.append(f"{fw}: {name} has no docstring with the equation")
    for fw, names, usual in odd_ones({fw: r[0] for fw, r in read.items()}):
        problems.append(f"{fw}: {catalog_name} lists {names}, the others {usual}")
    for fw, order, usual in odd_ones({fw: r[2] for fw, r in read.items()}):
        problems.append(f"{fw}: builders defined in the order {order}, the others {usual}")
    for name in set().union(*(r[1] for r in read.values())):
        firsts = {fw: r[1][name][1] for fw, r in read.items() if name in r[1]}
        for fw, line, usual in odd_ones(firsts):
            problems.append(f"{fw}: {name}'s docstring starts {line!r}, the others' {usual!r}")
    return problems


def sources(module):
    return {fw: (folder / f"{module}.py").read_text() for fw, folder in FOLDERS.items()}


@pytest.mark.parametrize("module", list(COLUMNS))
def test_the_builders_read_as_four_columns(module):
    assert column_problems(sources(module), module) == []


def changed(module, framework, old, new):
    """The four sources with one replacement in one framework's file."""
    texts = sources(module)
    assert old in texts[framework], (framework, old)
    texts[framework] = texts[framework].replace(old, new)
    return texts


def test_a_renamed_builder_is_caught():
    texts = changed("layers", "torch", "def lstm(layer, dtype, native)",
                    "def lstm_layer(layer, dtype, native)")
    assert "torch: no builder def lstm(...)" in column_problems(texts, "layers")


def test_a_different_equation_is_caught():
    jax = sources("layers")["jax"]
    first = jax[jax.index("def lstm("):].split('"""')[1].split("\n")[0]
    texts = changed("layers", "jax", first, first.replace("c' = f*c + i*g", "c' = f*c + g"))
    problems = column_problems(texts, "layers")
    assert any(p.startswith("jax: lstm's docstring starts") for p in problems), problems


def test_a_changed_signature_is_caught():
    texts = changed("layers", "tensorflow", "def dense(layer, dtype, native)",
                    "def dense(layer, native)")
    assert "tensorflow: dense('layer', 'native'), not dense('layer', 'dtype', 'native')" in \
        column_problems(texts, "layers")


def test_a_builder_out_of_order_is_caught():
    texts = sources("layers")
    numpy = texts["numpy"]
    start, end = numpy.index("def identity("), numpy.index("def dropout(")  # move identity last
    texts["numpy"] = numpy[:start] + numpy[end:] + "\n\n" + numpy[start:end]
    assert any(p.startswith("numpy: builders defined in the order")
               for p in column_problems(texts, "layers"))


def test_a_loss_or_optimizer_out_of_line_is_caught():
    texts = changed("optimizers", "jax", "def nesterov(optimizer, native)",
                    "def nesterov(cfg, native)")
    assert "jax: nesterov('cfg', 'native'), not nesterov('optimizer', 'native')" in \
        column_problems(texts, "optimizers")
    texts = changed("losses", "numpy", '"""L = sum_b 0.5 sum_k', '"""L = sum_b sum_k')
    assert any(p.startswith("numpy: half_squared_error's docstring starts")
               for p in column_problems(texts, "losses"))


@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_every_type_of_the_spec_is_implemented(framework):
    """The catalogs of each folder list the layer, loss and optimizer types of the spec."""
    from crossgrad.harness.spec import LOSSES, OPTIMIZERS
    from crossgrad.harness.spec.catalog import PARSERS
    for module, types in (("layers", PARSERS), ("losses", LOSSES), ("optimizers", OPTIMIZERS)):
        names, _, _ = builders((FOLDERS[framework] / f"{module}.py").read_text(), module)
        assert sorted(names) == sorted(types), (framework, module)


# ---- the Python API: crossgrad.check takes what `crossgrad check` does ------------------------

def test_the_python_check_takes_the_order_and_matmul_precision_of_the_command(executor):
    """crossgrad.check(order=2) and (matmul_precision=...) as `crossgrad check --order 2` and
    `--matmul-precision`, with the command's defaults."""
    import inspect

    import crossgrad
    from crossgrad.harness import api
    public, inner = (inspect.signature(f).parameters for f in (crossgrad.check, api.check))
    for name in ("order", "matmul_precision"):
        assert public[name].default == inner[name].default, name
    second = crossgrad.check("xor_2_2_1", frameworks="numpy", order=2,
                             executor=executor).to_json()["models"][0]
    assert second["hvp"] and "hvp" in second["frameworks"]["numpy"]
    assert "hvp" not in crossgrad.check("xor_2_2_1", frameworks="numpy",
                                        executor=executor).to_json()["models"][0]
    pinned = crossgrad.check("xor_2_2_1", frameworks="numpy", dtype="float32",
                             matmul_precision="default", executor=executor).to_json()
    assert pinned["models"][0]["matmul_precision"] == "default"
    with pytest.raises(ValueError, match="order"):
        crossgrad.check("xor_2_2_1", order=3, executor=executor)


@pytest.mark.parametrize("given", [["numpy", "pytorch"], "numpy,pytorch"])
def test_an_unknown_framework_in_python_is_named_by_its_argument(given):
    """From Python it said "--frameworks: pytorch: unknown framework", a flag the caller
    never typed."""
    import crossgrad
    for call in (crossgrad.check, crossgrad.train):
        with pytest.raises(crossgrad.InputError) as caught:
            call("xor_2_2_1", frameworks=given)
        assert str(caught.value).startswith("frameworks: pytorch: unknown framework; choose "
                                            "from numpy, torch, tensorflow, jax, original")
