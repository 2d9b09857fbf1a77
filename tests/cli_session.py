"""The command line on the test session's workers."""
import contextlib

from crossgrad.harness import commands


def session_cli(monkeypatch, executor):
    """`crossgrad ...` through cli.main runs on the test session's workers (already started,
    frameworks imported) instead of starting its own pool."""
    monkeypatch.setattr(commands, "make_executor", lambda args: contextlib.nullcontext(executor))
