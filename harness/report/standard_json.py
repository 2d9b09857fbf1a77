"""Reading back a report's JSON files (results.json, manifest.json) as the standard JSON
crossgrad writes: NaN, Infinity and -Infinity are refused, naming their field.

Python's reader takes those three tokens; standard JSON has none, and crossgrad never
writes them (run.outputs.plain writes a non-finite number as null). A file holding one was
not written by crossgrad, and read as floats its numbers would be compared and explained
as if they were results.
"""
import json

from ..errors import InputError


class _BareToken:
    """NaN, Infinity or -Infinity where a JSON value stands, kept until its field is named."""

    def __init__(self, token):
        self.token = token


def loads(text, path, what):
    """The document in `text`; InputError(path, field) at its first bare token, the message
    saying it is not `what` ("a crossgrad report file"). JSONDecodeError and RecursionError
    are the caller's to word."""
    bare = []
    doc = json.loads(text, parse_constant=lambda token: bare.append(_BareToken(token)) or bare[-1])
    if bare:  # named by its field where the document holds it (a later duplicate key may not)
        field, token = _first_bare(doc) or (None, bare[0])
        raise InputError(path, field, f"{token.token} is not standard JSON: not {what} "
                                      f"(crossgrad writes a non-finite number as null)")
    return doc


def _first_bare(doc):
    """(field, token) of the first _BareToken in `doc` in the file's order, the field named
    as crossgrad's messages name one (check.models[0].frameworks.torch.loss; None: the whole
    document); None where a later duplicate key replaced every one. Walked with a stack,
    not recursion: the parser takes nesting as deep as Python's recursion limit, and a
    recursive walk from further down the call stack would hit it."""
    stack = [(None, doc)]
    while stack:
        field, value = stack.pop()
        if isinstance(value, _BareToken):
            return field, value
        if isinstance(value, dict):
            inner = [(f"{field}.{key}" if field else key, v) for key, v in value.items()]
        elif isinstance(value, list):
            inner = [(f"{field or ''}[{i}]", v) for i, v in enumerate(value)]
        else:
            continue
        stack.extend(reversed(inner))  # popped first to last: the file's order
    return None
