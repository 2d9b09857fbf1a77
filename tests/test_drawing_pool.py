"""The report's drawing processes and the harness's end: an interruption sent to the whole
process group (Ctrl-C, a hangup, `timeout`'s SIGTERM) is answered by the harness alone, in
one line, with no traceback from a drawing process; a harness killed with SIGKILL leaves no
drawing process behind. Each in a fresh process, as the command line's harness (this one
may hold JAX's threads, and there would be no pool), with draws that only sleep."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SLOW = """
import time
from pathlib import Path


def figure(folder, index, seconds):
    Path(folder, f"started-{index}").touch()
    time.sleep(seconds)
    Path(folder, f"drawn-{index}").touch()
    return b"png"
"""

# the harness's own manners (cli.main): SIGTERM and SIGHUP raise Stopped, the interruption
# is one line and 128 + N
HARNESS = """
import signal
import sys
import time
from crossgrad.harness.cli import Stopped, _signals_stop
from crossgrad.harness.report import drawing
import slow

folder, seconds = sys.argv[1], float(sys.argv[2])
# as in a terminal: under nohup SIGHUP is ignored, and crossgrad rightly leaves it so
signal.signal(signal.SIGHUP, signal.SIG_DFL)
with _signals_stop():
    try:
        with drawing.rendering(processes=2):
            figures = [drawing.later(slow.figure, folder, i, seconds) for i in range(2)]
            assert all(figure.future is not None for figure in figures)  # in the pool
            time.sleep(60)  # the rest of the report, built meanwhile
            for figure in figures:
                drawing.png_bytes(figure)
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        sys.exit(130)
    except Stopped as stop:
        print("harness: stopped", file=sys.stderr)
        sys.exit(128 + stop.signum)
"""


# where the drawing processes are when the harness ends: each in a figure of 3 s (the pool
# hands an exception raised there back to the harness), or both waiting for the next figure
# (where nothing catches it: a traceback), the two already drawn in no time
SECONDS = {"drawing": 3, "idle": 0}


def _start(tmp_path, state):
    """The harness in the middle of a report, its drawing processes `state`."""
    (tmp_path / "slow.py").write_text(SLOW)
    drawn = tmp_path / "drawn"
    drawn.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", HARNESS, str(drawn), str(SECONDS[state])],
                            cwd=tmp_path, env=dict(os.environ, PYTHONPATH=_path(tmp_path)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    marks = {"drawing": ["started-0", "started-1"], "idle": ["drawn-0", "drawn-1"]}[state]
    deadline = time.monotonic() + 30
    while not all((drawn / mark).exists() for mark in marks):
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no figure was drawn: {_end_group(proc)}")
        time.sleep(0.05)
    time.sleep(0.5)  # each back in the pool's loop, or well into its figure
    return proc


def _path(tmp_path):
    return os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))


def _children(pid):
    return {int(child) for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()}


def _alive(pid):
    """A zombie is gone too: nobody may reap a child orphaned in a container."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _end_group(proc):
    """Whatever is left of the harness's process group (its own session) -> its stderr."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return proc.communicate()[1]


def test_a_hangup_ignored_by_nohup_stays_ignored():
    """Under `nohup crossgrad run ...` SIGHUP is ignored, and crossgrad leaves it so (it takes
    over a signal only where it has the default action): closing the terminal must not stop
    a run the user detached from it."""
    from crossgrad.harness.cli import _signals_stop
    saved = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with _signals_stop():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        with _signals_stop():
            assert signal.getsignal(signal.SIGHUP) not in (signal.SIG_DFL, signal.SIG_IGN)
    finally:
        signal.signal(signal.SIGHUP, saved)


@pytest.mark.parametrize("state", SECONDS)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP, signal.SIGTERM],
                         ids=lambda s: signal.Signals(s).name)
def test_an_interruption_of_the_process_group_is_one_line(tmp_path, signum, state):
    """The harness's one line and status; the drawing processes say nothing."""
    proc = _start(tmp_path, state)
    try:
        os.killpg(proc.pid, signum)
        _, stderr = proc.communicate(timeout=20)
    finally:
        _end_group(proc)
    assert "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1:] == [
        "harness: interrupted" if signum == signal.SIGINT else "harness: stopped"], stderr
    assert proc.returncode == 128 + signum


@pytest.mark.parametrize("state", SECONDS)
def test_a_harness_killed_leaves_no_drawing_process(tmp_path, state):
    """Each would wait forever on a pipe its sister holds open, a report's worth of memory."""
    proc = _start(tmp_path, state)
    try:
        drawing = _children(proc.pid)
        assert len(drawing) == 2
        proc.kill()
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while any(map(_alive, drawing)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in drawing if _alive(pid)]
    finally:
        _end_group(proc)
