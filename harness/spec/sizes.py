"""The memory a spec needs, estimated from the spec alone before anything is allocated.

`estimate(spec, training)` lists the items (parameters per layer, activations per layer,
the data set, per-step arrays, loss curves), each with the spec field that sets its
size; `check` refuses a spec whose items add up to more than the limit (default: half
of the machine's memory), naming the biggest. MNIST files are sized from their headers
(spec/mnist.py), nothing else is read. The formula, with b the dtype's bytes (8 or 4),
B the batch size, N the examples, F the frameworks, is in the README ("Limits"); it
counts one job's arrays in the harness and in one worker, the copies every framework
keeps, and each framework's results coming back.
"""
import math
import os
from dataclasses import dataclass

from ..errors import InputError
from .catalog import walk
from .mnist import mnist_sizes

F64 = 8
SLOTS = {"sgd": 0, "momentum": 1, "nesterov": 1, "adam": 2, "adamw": 2, "rmsprop": 1,
         "adagrad": 1}                # optimizer state: arrays the size of the parameters
CURVE_VALUE = 500                    # bytes per recorded value (loss, norm, per-layer norm)
                                     # through worker lists, the pipe, the harness's rows and
                                     # DataFrames (measured: README "Limits")
SIZE_KEYS = {"dense": "units", "rnn": "units", "lstm": "units", "gru": "units",
             "conv2d": "filters", "embedding": "vocab", "attention": "key_dim",
             "maxpool2d": "pool_size", "avgpool2d": "pool_size"}


@dataclass
class Item:
    field: str      # the spec field that sets its size
    bytes: int
    text: str       # "... need 3.2 GB of weights"
    blame: tuple = None  # (field, text) when an earlier key grew it: what a refusal says


def gb(n):
    """Decimal units, as --max-memory takes them; beyond 999 EB in powers of ten (a spec can
    ask for 1e30 bytes as easily as for 1e9)."""
    for unit, size in (("EB", 1e18), ("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if round(n / size, 1) >= 1:  # 999.96 TB is "1.0 PB", not "1000.0 TB"
            return f"{n / size:.1f} {unit}" if n < 1000 * size else f"{n / size:.1e} {unit}"
    return f"{n / 1e3:.1f} kB"


def estimate(spec, training, frameworks=4):
    """[Item] for one (spec, dtype): what one job needs in the harness and one worker."""
    b = _width(spec)
    n, stored = _examples(spec)
    batch = min(spec.data["batch_size"] or n, max(n, 1))
    items = _parameters(spec, b, training, frameworks)
    items += _activations(spec, b, batch)
    items += _data(spec, b, n, stored, batch, training)
    if training:  # the loss, the gradient norm and one norm per top-level layer with weights
        layers = sum(1 for layer in spec.layers if any(sub["params"] for sub in walk([layer])))
        values = spec.train["steps"] * frameworks * (2 + layers)
        items.append(Item("train.steps", values * CURVE_VALUE,
                          f"{spec.train['steps']:,} steps need {gb(values * CURVE_VALUE)} of loss "
                          f"curves ({frameworks} framework{'s' * (frameworks != 1)} x "
                          f"{2 + layers} values a step)"))
    return items


DEFAULT_LIMIT = "half of this machine's memory; --max-memory GB raises it"  # default_limit's


def check(specs, limit, training, frameworks=4, why=DEFAULT_LIMIT):
    """Refuse (exit 2) the first spec whose estimate exceeds `limit` bytes."""
    for spec in specs:
        over = _over(estimate(spec, training, frameworks), limit, why)
        if over:
            raise InputError(spec.file, *over)


def _over(items, limit, why):
    """(the field that sets the biggest item, what it needs and the total) where the items
    exceed `limit` bytes, else None."""
    total = sum(i.bytes for i in items)
    if total <= limit:
        return None
    big = max(items, key=lambda i: i.bytes)
    field, text = big.blame or (big.field, big.text)
    return field, f"{text}; {gb(total)} in all, over the limit of {gb(limit)} ({why})"


def check_batch(spec, batch, limit, frameworks=1, flag="--batch-sizes", why=DEFAULT_LIMIT):
    """Refuse (exit 2, naming `flag`) training `spec` at batch size `batch` whatever its own
    data.batch_size (`bench --step-time --batch-sizes`): the same items as a training
    `estimate` but the curves (a bench records a call's steps, not train.steps), with one
    batch of `batch` examples and the data set repeated up to `batch` rows where the batch
    is larger than it (the bench draws each batch without replacement from those rows)."""
    b = _width(spec)
    n, stored = _examples(spec)
    rows = max(n, batch)
    data = _data(spec, b, rows, stored, batch, True)[0]
    if rows > n:  # the batch size, not a key of the spec, sets it
        data.field = None
        data.text = (f"{n:,} examples of shape {tuple(spec.input_shape)} repeated to "
                     f"{rows:,} rows need {gb(data.bytes)} of data")
    items = _parameters(spec, b, True, frameworks) + _activations(spec, b, batch) + [data]
    over = _over(items, limit, why)
    if over:
        field, text = over
        raise InputError(flag, None, f"{spec.name} at batch size {batch:,}: "
                                     + (f"{field}: " if field else "") + text)


def default_limit():
    """Half of the machine's memory (or of the cgroup's limit, if lower), in bytes."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            text = f.read().strip()
        if text.isdigit():
            total = min(total, int(text))
    except OSError:
        pass
    return total // 2


# ---- the items -------------------------------------------------------------------------------

def _width(spec):
    """Bytes per value of the spec's dtype."""
    return 4 if spec.dtype == "float32" else 8


def _examples(spec):
    """-> (examples used, bytes of the files as stored: MNIST's are read whole)."""
    data, stored = spec.data, 0
    if data["source"] == "mnist":
        n, stored = mnist_sizes(data["path"], spec.file)
    else:
        n = {"xor": 4, "digits": 1797, "digits28": 1797}.get(data["source"], data.get("examples"))
    return (min(n, data["examples"]) if data.get("examples") else n), stored


def _field(layer):
    """"layers[3].layers[1].units" for layer "3.1" of type dense."""
    path = ".layers".join(f"[{i}]" for i in layer["name"].split("."))
    return f"layers{path}.{SIZE_KEYS.get(layer['type'], 'type')}"


def _parameters(spec, b, training, frameworks):
    """Per layer: weights in the harness, the worker's copy, the framework's tensors, their
    gradients, optimizer state, each framework's result, and finite-difference directions."""
    slots = SLOTS[spec.optimizer["type"]] if training else 0
    probes = 3 * F64 if spec.dtype == "float64" and not training else 0
    items, before = [], []
    for layer in walk(spec.layers):
        before.append(layer)
        count = sum(math.prod(p["shape"]) for p in layer["params"].values())
        if not count:
            continue
        held = count * ((4 + slots + frameworks) * b + probes + F64)  # F64: the draw
        key = SIZE_KEYS.get(layer["type"])
        what = f"{layer[key]} {key}" if key in layer and key != "pool_size" else layer["type"]
        needs = (f"need {gb(count * b)} of weights ({count:,} parameters; {gb(held)} with "
                 f"gradients, copies and results)")
        items.append(Item(_field(layer), held, f"{what} {needs}",
                          _fan_in_blame(spec, before[:-1], layer, needs)))
    return items


def _fan_in_blame(spec, before, layer, needs):
    """-> (field, text) for a dense layer with more input features than units: its weights
    are big because of its input, and the key that set the input is the one to change (an
    image flattened whole, an earlier layer's units), not its own units; else None."""
    fan_in = layer["in_shape"][-1]
    if layer["type"] != "dense" or fan_in <= layer["units"]:
        return None
    field, value = "input_shape", spec.input_shape
    for earlier in reversed(before):  # the last layer that set a size (a pool only shrinks)
        if earlier["type"] in SIZE_KEYS and SIZE_KEYS[earlier["type"]] != "pool_size":
            field = _grown_field(earlier)
            value = earlier.get(field.rsplit(".", 1)[1])
            break
    where = _field(layer).rsplit(".", 1)[0]
    return field, (f"{value!r} gives dense at {where} {fan_in:,} input features, so its "
                   f"{layer['units']} units {needs}")


def _activations(spec, b, batch):
    """Per layer: its output and the gradient of it for one batch, plus what it keeps."""
    items = []
    for layer, grown in _grown_by(spec.layers):
        values = math.prod(layer["out_shape"]) + _kept(layer)
        held = batch * values * b * 2
        if held:
            needs = f"needs {gb(held)} of activations for a batch of {batch} (forward and backward)"
            items.append(Item(_field(layer), held,
                              f"{layer['type']} on {tuple(layer['in_shape'])} {needs}",
                              _blame(layer, grown, values, needs)))
    return items


def _grown_by(layers, grown=None):
    """(layer, (the layer that grew its input most, by what factor) or None), in walk's
    order. A layer's activations follow its input, which an earlier layer may have blown
    up (padding [100000, 100000] on an 8x8 image): that layer's key is the one to change,
    not the size key of the layer where the memory runs out. A layer that shrinks the
    values per example wears the standing factor down; a residual block's inside leaves
    it as it was (the block ends at its input's shape)."""
    for layer in layers:
        yield layer, grown
        yield from _grown_by(layer.get("layers", []), grown)
        factor = _growth(layer)
        if factor > 1 and (grown is None or factor > grown[1]):
            grown = (layer, factor)
        elif grown is not None and factor < 1:
            grown = (grown[0], grown[1] * factor) if grown[1] * factor > 1 else None


def _growth(layer):
    return math.prod(layer["out_shape"]) / max(1, math.prod(layer["in_shape"]))


def _blame(layer, grown, values, needs):
    """-> (field, text) for a refusal, when another key than the layer's size key made its
    activations big: an earlier layer's growth larger than this layer's own multiple of its
    input, or this layer's own padding; None when the layer's size key says it."""
    own = values / max(1, math.prod(layer["in_shape"]))
    culprit = grown[0] if grown is not None and grown[1] > own else layer
    field = _grown_field(culprit)
    if culprit is layer and field == _field(layer):
        return None
    grew = (f"{culprit.get(field.rsplit('.', 1)[1])!r} grows {culprit['type']}'s input "
            f"{tuple(culprit['in_shape'])} to {_grown_to(culprit, field)}")
    if culprit is layer:
        return field, f"{grew}, which {needs}"
    where = _field(layer).rsplit(".", 1)[0]
    return field, f"{grew}; then {layer['type']} at {where} on {tuple(layer['in_shape'])} {needs}"


def _grown_to(layer, field):
    """What a layer grew its input to: its output, or the padded image its padding made
    where the output did not grow (a stride past it)."""
    if not field.endswith(".padding") or \
            math.prod(layer["out_shape"][:2]) > math.prod(layer["in_shape"][:2]):
        return tuple(layer["out_shape"])
    (top, bottom), (left, right) = layer["pads"]
    h, w, c = layer["in_shape"]
    return f"a padded image of {(h + top + bottom, w + left + right, c)}"


GROWTH_KEYS = {"embedding": "dim"}  # the key that sets a layer's output, where not SIZE_KEYS'


def _grown_field(layer):
    """The key that made a layer's output larger than its input: a window layer's padding
    where the image grew, else the key that sets its output size."""
    path = _field(layer).rsplit(".", 1)[0]
    if "pads" in layer and _padded(layer) > math.prod(layer["in_shape"][:2]):
        return f"{path}.padding"  # the image it pads, and so its windows (_kept)
    return f"{path}.{GROWTH_KEYS.get(layer['type'], SIZE_KEYS.get(layer['type'], 'type'))}"


def _padded(layer):
    """A window layer's input image, padded: pixels per channel."""
    (top, bottom), (left, right) = layer["pads"]
    return (layer["in_shape"][0] + top + bottom) * (layer["in_shape"][1] + left + right)


def _kept(layer):
    """Values per example a layer keeps beyond its output (for its backward pass)."""
    kind, shape = layer["type"], layer["in_shape"]
    if kind == "attention":
        time, inner = shape[0], layer["heads"] * layer["key_dim"]
        return 2 * layer["heads"] * time * time + 4 * time * inner  # scores, softmax; q k v
    if kind in ("rnn", "lstm", "gru"):
        gates = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
        return shape[0] * (gates + 1) * layer["units"]  # every step's gates and state
    if kind in ("conv2d", "maxpool2d", "avgpool2d"):
        window = layer["kernel_size"] if kind == "conv2d" else layer["pool_size"]
        h, w, c = layer["out_shape"][0], layer["out_shape"][1], shape[2]
        return (h * w * window[0] * window[1] + _padded(layer)) * c  # its windows, its image
    if kind in ("batchnorm", "layernorm", "dropout"):
        return math.prod(shape)  # the normalised input, or the mask
    return 0


def _data(spec, b, n, stored, batch, training):
    """The data set (drawn or read in float64, kept in the dtype, and in a training worker),
    targets, the teacher of random sources, one epoch's order and one step's batch."""
    width = math.prod(spec.input_shape)
    per_example = width * (F64 + b + (b if training else 0)) + F64 * (1 + spec.out_shape[0])
    teacher = width * spec.out_shape[0] * F64 if spec.data["source"].startswith("random") else 0
    data = n * per_example + stored + teacher + n * F64 + batch * width * b
    if spec.data["source"] == "mnist":
        field = "data.path"
    else:
        field = "data.examples" if n >= width else "input_shape"
    return [Item(field, data, f"{n:,} examples of shape {tuple(spec.input_shape)} need "
                              f"{gb(data)} of data")]
