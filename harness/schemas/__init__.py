"""JSON Schemas of what crossgrad reads and writes, and `crossgrad schema spec|check|...`.

spec.schema.json is derived from the validating code (spec/schema.py) and checked in;
check.schema.json, train.schema.json and pitfalls.schema.json describe the `--json`
outputs of check, train (compare/results.py builds them) and pitfalls (ablation/).
Editors complete a spec with the first: a `#:schema <path>` line at the top of a TOML file (Taplo, Even Better TOML) or a
"$schema" key in JSON.
"""
import sys
from importlib import resources

from ..errors import EXIT_OK

NAMES = ("spec", "check", "train", "pitfalls")


def text(name):
    """The schema file's text."""
    return (resources.files(__package__) / f"{name}.schema.json").read_text()


def cmd_schema(args):
    sys.stdout.write(text(args.which))
    return EXIT_OK


def add_schema_args(p):
    p.add_argument("which", choices=NAMES,
                   help="spec: a spec file; check, train, pitfalls: their --json output")
