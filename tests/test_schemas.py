"""JSON Schemas: the spec's is derived from the validating code and current; every zoo spec
and test case validates, typos do not; real `check --json` and `train --json` outputs
validate against theirs; `crossgrad schema` prints them."""
import json
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest

from crossgrad.harness import schemas
from crossgrad.harness.cli import main
from crossgrad.harness.spec import zoo_names
from crossgrad.harness.spec.catalog import PARSERS
from crossgrad.harness.spec.parse import ZOO
from crossgrad.harness.spec.schema import dumps, spec_schema

sys.path.insert(0, str(Path(__file__).parent))
import cases  # noqa: E402

VARIANTS = Path(__file__).parent / "plugins" / "swish_variants.py"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Whatever a command caches goes under tmp_path, never into the user's cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def validator(name):
    schema = json.loads(schemas.text(name))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(name, document):
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator(name).iter_errors(document)]


def test_the_spec_schema_file_is_the_one_the_code_derives():
    assert schemas.text("spec") == dumps(spec_schema()), (
        "harness/schemas/spec.schema.json is stale: python -m crossgrad.harness.spec.schema "
        "> harness/schemas/spec.schema.json")


def test_every_layer_type_of_the_catalog_is_in_the_schema():
    rules = json.loads(schemas.text("spec"))["$defs"]["layer"]["allOf"]
    assert [r["if"]["properties"]["type"]["const"] for r in rules] == list(PARSERS)


@pytest.mark.parametrize("name", zoo_names())
def test_every_zoo_spec_validates(name):
    from importlib import resources
    text = (resources.files(ZOO) / f"{name}.toml").read_text()
    assert errors("spec", tomllib.loads(text)) == []


CASES = {**cases.LAYERS, **cases.LOSSES,
         **{f"train_{o}": cases.training(o) for o in cases.OPTIMIZERS}}


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_test_case_validates(name):
    assert errors("spec", CASES[name]) == []


def dense_spec(**layer):
    return {"input_shape": [4], "data": {"source": "random_classification"},
            "layers": [{"type": "dense", "units": 3, **layer}], "loss": {"type": "mse"}}


@pytest.mark.parametrize("change, where", [
    ({"unit": 3}, "Additional properties are not allowed ('unit' was unexpected)"),
    ({"units": "3"}, "'3' is not of type 'integer'"),
    ({"units": 0}, "0 is less than the minimum of 1"),
    ({"init": "glorot_uniformm"}, "is not valid"),
    ({"bias_init": {"type": "normal", "sd": 1}}, "is not valid"),
])
def test_what_validation_refuses_the_schema_refuses(change, where):
    found = errors("spec", dense_spec(**change))
    assert found and any(where in e for e in found), found


def test_plugin_layers_are_open():
    spec = dense_spec()
    spec["plugins"] = ["my_layers.py"]
    spec["layers"].append({"type": "scaled_swish", "gamma": 1.5, "init_beta": "ones"})
    assert errors("spec", spec) == []


@pytest.mark.parametrize("name", schemas.NAMES)
def test_crossgrad_schema_prints_the_file(name, capsys):
    assert main(["schema", name]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(schemas.text(name))


@pytest.mark.slow
def test_real_json_outputs_validate(tmp_path):
    """check and train --json, with a plugin that lacks numpy_backward and tensorflow, so
    that the optional keys (gradients skipped, gradient_from, skipped frameworks) occur."""
    spec = {"name": "partial", "input_shape": [64], "plugins": [str(VARIANTS)],
            "data": {"source": "digits", "batch_size": 7},
            "loss": {"type": "softmax_cross_entropy"},
            "layers": [{"type": "dense", "units": 8}, {"type": "swish_partial"},
                       {"type": "dense", "units": 10}]}
    (tmp_path / "partial.json").write_text(json.dumps(spec))
    shared = [str(tmp_path / "partial.json"), "--zoo", "xor_2_2_1", "--frameworks",
              "numpy,torch", "--quiet"]
    assert main(["check", *shared, "--json", str(tmp_path / "check.json")]) == 0
    assert main(["train", *shared, "--steps", "3", "--json", str(tmp_path / "train.json")]) == 0
    checked = json.loads((tmp_path / "check.json").read_text())
    trained = json.loads((tmp_path / "train.json").read_text())
    assert errors("check", checked) == []
    assert errors("train", trained) == []
    partial = checked["models"][0]
    assert partial["frameworks"]["numpy"]["gradients"] == "skipped"
    assert trained["models"][0]["frameworks"]["numpy"]["status"] == "skipped"
    broken = dict(partial, frameworks={"numpy": {"status": "fine"}})
    assert errors("check", dict(checked, models=[broken]))
