"""The numbers on the pages: what `crossgrad explain` runs, or reads from a report folder.

A layer type is measured with its example spec (harness/spec/examples.py: the layer among
a few others, ending in a classifier), checked in float64 and float32: every pair's
error on each layer's output and dL/dx (the check's per-layer values), on the layer's own
parameter gradients, and finite differences. A zoo model is checked in both dtypes and
trained (aligned) in both, as `crossgrad run` does without the native-defaults runs; or,
with `--results DIR`, its numbers are read from that report folder's results.json and
curves.csv. The mistakes gallery is always measured (gallery.py).
"""
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import api, registry
from ..run.execute import frameworks_to_run
from ..errors import InputError
from ..spec import DTYPES, examples, parse_spec, zoo_spec
from ..spec.files import read_bounded
from ..report import standard_json
from . import gallery

RESULTS_BYTES = 1 << 28   # a whole-zoo results.json is a few MB
# what the pages read from a report's entries (README "JSON output")
NEEDS = {"check": {"dtype": str, "passed": bool, "frameworks": dict, "comparisons": list,
                   "finite_difference": list},
         "train": {"dtype": str, "passed": (bool, type(None)), "frameworks": dict,
                   "steps": int, "reference": str}}


@dataclass
class Measured:
    how: str                                     # one sentence: where the numbers come from
    layers: dict = field(default_factory=dict)   # example name -> {dtype: check entry}
    models: dict = field(default_factory=dict)   # zoo name -> {"check"|"train": {dtype: entry}}
    curves: dict = field(default_factory=dict)   # (zoo name, dtype) -> curves_of's entry
    mistakes: list = None                        # gallery.measure's entries
    gallery: list = None                         # the gallery.Mistake each entry measures
    skipped: list = field(default_factory=list)  # mistakes of frameworks not run
    seconds: float = 0.0


def examples_of(layer_type):
    """The examples that measure a layer type: those named after it, else the first holding it."""
    holding = examples.for_type(layer_type)
    own = [n for n in holding if n == layer_type or n.startswith(layer_type + "_")]
    return own or holding[:1]


def example_spec(name, dtype):
    raw = dict(examples.LAYERS[name], dtype=dtype)
    return parse_spec(raw, f"examples/{name}", name)


def run(layer_types, models, mistakes, *, frameworks=None, executor=None, progress=None,
        given=None):
    """Check the layer types' examples and the zoo models (unless `given`, from_report's
    reading of a report folder, has them), train the models, measure the mistakes."""
    start = time.monotonic()
    out = given or Measured(how(None, frameworks))
    if given:
        out.how = how(given.how, frameworks)
    names = example_names(layer_types)
    layer_specs = [example_spec(n, d) for n in names for d in DTYPES]
    model_specs = [] if given else [zoo_spec(m, dtype=d) for m in models for d in DTYPES]
    if layer_specs or model_specs:
        checked = api.check(layer_specs + model_specs, frameworks=frameworks,
                            executor=executor, on_result=progress)
        for m in checked.models:
            if m["name"] in names:
                out.layers.setdefault(m["name"], {})[m["dtype"]] = m
            else:
                out.models.setdefault(m["name"], {"check": {}, "train": {}})["check"][
                    m["dtype"]] = m
    if model_specs:
        trained = api.train(model_specs, frameworks=frameworks, executor=executor,
                            on_result=progress)
        for m in trained.models:
            out.models[m["name"]]["train"][m["dtype"]] = m
        out.curves = curves_of(trained.curves)
    if mistakes:
        out.gallery, out.skipped, out.mistakes = measure_gallery(frameworks, executor, progress)
    out.seconds = time.monotonic() - start
    return out


def measure_gallery(frameworks=None, executor=None, progress=None):
    """-> (the mistakes measured, those left out: their framework is not run, the entries)."""
    ran = frameworks_to_run(frameworks)[0]
    found = gallery.discover()
    measured = [m for m in found if m.framework in ran]
    skipped = [m for m in found if m.framework not in ran]
    return measured, skipped, gallery.measure(measured, frameworks, executor, progress)


def example_names(layer_types):
    return list(dict.fromkeys(n for t in layer_types for n in examples_of(t)))


def job_count(layer_types, models, mistakes, results, frameworks):
    """How many jobs `run` starts: one per spec and framework (for the progress lines); no
    spec here has an original model of its own (importers/)."""
    ran = [fw for fw in frameworks_to_run(frameworks)[0] if fw in registry.FRAMEWORKS]
    specs = len(example_names(layer_types)) * len(DTYPES)
    specs += 0 if results else 2 * len(models) * len(DTYPES)       # check and train
    if mistakes:
        found = [m for m in gallery.discover() if m.framework in ran]
        specs += sum(2 for m in found if m.kind == "formula")
        specs += len({gallery.network_name(m) for m in found if m.kind == "idiom"})
        specs += sum(m.steps - 1 for m in found if m.kind == "idiom")
    return specs * len(ran)


def how(results, frameworks):
    ran = [fw for fw in frameworks_to_run(frameworks)[0] if fw in registry.FRAMEWORKS]
    which = ", ".join(f"{registry.FRAMEWORKS[fw].label} {registry.version(fw)}" for fw in ran)
    if results:
        return (f"Layer types and mistakes measured by this run ({which}); zoo models' "
                f"numbers read from the report folder {results}.")
    return f"Measured by this run ({which}), on this machine."


def curves_of(frame):
    """(model, dtype) -> {"loss" | "rel_diff": {framework: [value per step]}} from a curves
    table (aligned runs only)."""
    out = {}
    if frame is None or frame.empty:
        return out
    frame = frame[frame["mode"] == "aligned"] if "mode" in frame else frame
    for (model, dtype, fw), rows in frame.groupby(["model", "dtype", "framework"], sort=False):
        rows = rows.sort_values("step")
        slot = out.setdefault((model, dtype), {"loss": {}, "rel_diff": {}})
        slot["loss"][fw] = rows["loss"].astype(float).tolist()
        slot["rel_diff"][fw] = rows["rel_diff"].astype(float).tolist()
    return out


# ---- a report folder's numbers --------------------------------------------------------------

def from_report(folder, models):
    """A zoo model's numbers (and curves) from a report folder made by `crossgrad run`;
    InputError naming the file and field if it is not one, or lacks a model."""
    out = Measured(str(folder))
    path = Path(folder) / "results.json"
    try:
        body = standard_json.loads(read_bounded(path, RESULTS_BYTES, "a results.json"), path,
                                   "a crossgrad report's results.json")
    except (OSError, ValueError) as err:
        raise InputError(path, None, f"is not a crossgrad report's results.json ({err})") \
            from None
    except RecursionError:  # `[[[[...` deeper than Python's parser goes
        raise InputError(path, None, "is not a crossgrad report's results.json (its JSON is "
                                     "nested too deeply)") from None
    for section in ("check", "train"):
        part = body.get(section) if isinstance(body, dict) else None
        entries = part.get("models") if isinstance(part, dict) else None
        if not isinstance(entries, list):
            raise InputError(path, section, "missing: give a report folder made by "
                                            "`crossgrad run` (--results)")
        for i, m in enumerate(entries):
            if isinstance(m, dict) and m.get("name") in models:
                lacks = [k for k in NEEDS[section] if not isinstance(m.get(k), NEEDS[section][k])]
                if lacks:
                    raise InputError(path, f"{section}.models[{i}]",
                                     f"lacks {', '.join(lacks)}: not an entry crossgrad wrote")
                slot = out.models.setdefault(m["name"], {"check": {}, "train": {}})
                slot[section][m["dtype"]] = m
    absent = [m for m in models if not out.models.get(m, {}).get("check")]
    if absent:
        raise InputError(path, "check", f"has no results for {', '.join(absent)}; run "
                                        "`crossgrad run` with them, or leave out --results")
    curves = Path(folder) / "curves.csv"
    if curves.is_file():
        try:
            import pandas as pd  # here: pandas is not for every command's start (api.py)
            frame = pd.read_csv(curves)
            out.curves = curves_of(frame[frame["model"].isin(models)])
        except (OSError, ValueError, KeyError) as err:
            raise InputError(curves, None, f"cannot be read as a curves table ({err})") \
                from None
    return out
