"""The spec: parsing and validation (every error names its file and field), the layer
catalog, initializers and data. Nothing here knows about frameworks or workers."""
from .parse import DTYPES, LOSSES, OPTIMIZERS, Spec, load_spec, parse_spec, zoo_names, zoo_spec

__all__ = ["DTYPES", "LOSSES", "OPTIMIZERS", "Spec", "load_spec", "parse_spec", "zoo_names",
           "zoo_spec"]
