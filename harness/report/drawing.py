"""Figures drawn in a pool of processes while the report is built around them.

A figure takes a second or more to draw and the report has two per model; inside a
`rendering()` block, `later(draw, ...)` hands one to the pool and the report goes on.
Nothing here imports matplotlib: the pool's processes do, when they draw. The harness
alone answers an interruption, and its drawing processes end with it (`_drawing_process`).
"""
import multiprocessing
import os
import pickle
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager

from ..run.orphans import stop_with

MAX_PROCESSES = 4   # drawing processes of a rendering() block, at most one per core
_pool = None        # the pool of the open rendering() block


@contextmanager
def rendering(processes=None):
    """Figures asked for with `later` inside the block are drawn in a pool of processes."""
    global _pool
    processes = processes or min(MAX_PROCESSES, os.cpu_count() or 1)
    context = _forking()
    if processes < 2 or context is None or _pool is not None:
        yield  # drawn here, one after another
        return
    _pool = ProcessPoolExecutor(processes, mp_context=context, initializer=_drawing_process,
                                initargs=(os.getpid(),))
    try:
        yield
    finally:
        _pool.shutdown(cancel_futures=True)
        _pool = None


# frameworks that start native thread pools when imported: threading cannot see those
# threads, and a child forked while one holds a lock waits for it forever
THREADED = ("jax", "tensorflow")


def _forking():
    """The fork context, where there is one and no other thread runs here (a fork copies
    only the calling thread; Ray's or an executor's could hold a lock). Not spawn: its
    children import the caller's __main__ again, which runs an unguarded script twice.
    The command line's harness imports no framework (its workers do); a user's process
    that has one loaded (crossgrad.train from a notebook) draws in-process."""
    if ("fork" not in multiprocessing.get_all_start_methods() or threading.active_count() > 1
            or any(name in sys.modules for name in THREADED)):
        return None
    return multiprocessing.get_context("fork")


def _drawing_process(harness):
    """A drawing process, as it starts. Ctrl-C and a terminal's hangup reach the whole process
    group: the harness answers them in one line and shuts the pool down, letting the figures
    being drawn finish; a drawing process ignores them rather than print a traceback of its
    own. SIGTERM (the pool's own, to end a broken pool's processes) ends it at once, quietly,
    instead of raising the harness's Stopped. A harness killed with SIGKILL shuts nothing
    down: it stops itself then, as the harness's workers do, instead of waiting forever on
    pipes its sister processes hold open."""
    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    stop_with(harness)


class Later:
    """A figure being drawn: result() -> its PNG bytes (drawn here if the pool broke)."""

    def __init__(self, draw, args):
        self.draw, self.args = draw, args
        self.future = _pool.submit(draw, *args) if _pool is not None and _crosses(draw) else None

    def result(self):
        if self.future is not None:
            try:
                return self.future.result()
            except BrokenProcessPool:
                pass
        return self.draw(*self.args)


def _crosses(draw):
    """Whether `draw` can be sent to another process (a module's function: by name)."""
    try:
        pickle.dumps(draw)
    except (pickle.PicklingError, AttributeError, TypeError):
        return False
    return True


def later(draw, *args):
    """draw(*args) (PNG bytes): in the pool of an open `rendering()` block, else on result()."""
    return Later(draw, args)


def png_bytes(png):
    """A figure's PNG bytes, from bytes or a `later` figure."""
    return png if isinstance(png, bytes) else png.result()
