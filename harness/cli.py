"""`crossgrad`: check | train | run | diff | sweep | bench | zoo.

Exit status: 0 everything agrees, 1 something disagrees, a framework failed or an output
could not be written, 2 bad input (one line naming the file or flag and the field; nothing
is written), 128 + N stopped by signal N (the previous outputs are intact).
"""
import argparse
import io
import os
import signal
import sys
import threading

from .errors import EXIT_BAD_INPUT, EXIT_DISAGREE, InputError
from .run.atomic import OutputFailed
from .run.ownership import tool_version

STOPPING = (signal.SIGTERM, signal.SIGHUP)


class Parser(argparse.ArgumentParser):
    def add_argument(self, *names, **kwargs):
        """An option that keeps one value is refused when given twice: argparse would keep the
        last without a word (`--save a --save b` saved to b alone, `--steps 5 --steps 50`
        trained 50). Options that gather values (--zoo) and switches keep their actions."""
        if names and names[0].startswith("-") and kwargs.get("action") in (None, "store"):
            kwargs["action"] = StoreOnce
        return super().add_argument(*names, **kwargs)

    def error(self, message):
        """One line, status 2 (argparse's default prints the whole usage first); a bad option
        value reads like every other bad input: `crossgrad: --timeout: ...`."""
        if message.startswith("argument -") and ": " in message:
            sys.stderr.write(f"crossgrad: {message[len('argument '):]}\n")
        else:
            sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(EXIT_BAD_INPUT)


class StoreOnce(argparse.Action):
    """argparse's "store", refusing a second value for the same option (Parser.add_argument).
    The options seen are kept on the namespace: each parse starts with a new one."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = namespace.__dict__.setdefault("_options_given", set())
        if self.dest in given:
            parser.error(f"argument {option_string}: given more than once; give it once")
        given.add(self.dest)
        setattr(namespace, self.dest, values)


class Stopped(BaseException):
    """SIGTERM or SIGHUP, raised where the program is, so outputs being written are dropped
    whole and the workers are closed, as for Ctrl-C."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def main(argv=None):
    with _tolerant_streams(), _signals_stop():
        try:
            args = build_parser().parse_args(argv)
            return args.command(args)
        except InputError as err:
            print(f"crossgrad: {err}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except OutputFailed as err:
            print(f"crossgrad: {err}", file=sys.stderr)
            return EXIT_DISAGREE
        except KeyboardInterrupt:
            print("crossgrad: interrupted; nothing half-written was left behind", file=sys.stderr)
            return 130
        except Stopped as stop:
            print(f"crossgrad: stopped by {signal.Signals(stop.signum).name}; nothing "
                  "half-written was left behind", file=sys.stderr)
            return 128 + stop.signum


def build_parser():
    """The commands are imported here, not with this module: they load NumPy, pandas and the
    harness (about a second), and a Ctrl-C meanwhile should meet main's handlers (one line,
    status 130), not a traceback."""
    from . import commands
    parser = Parser(prog="crossgrad", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"crossgrad {tool_version()}")
    sub = parser.add_subparsers(dest="name", required=True, parser_class=Parser)
    for name, (fn, helptext, adders) in commands.COMMANDS.items():
        p = sub.add_parser(name, help=helptext, description=helptext)
        for add in adders:
            add(p)
        p.set_defaults(command=fn)
    return parser


# ---- manners: closed pipes and signals ------------------------------------------------------

class ClosedPipeTolerant:
    """A text stream that, once its reader is gone (`crossgrad zoo | head -1`), drops what is
    written instead of raising: the command and its output files carry on, quietly."""

    def __init__(self, stream):
        self.stream, self.reader_gone = stream, False

    def write(self, text):
        if not self.reader_gone:
            try:
                return self.stream.write(text)
            except BrokenPipeError:
                self._drop()
        return len(text)

    def flush(self):
        if not self.reader_gone:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._drop()

    def _drop(self):
        """Point the descriptor at /dev/null, so that what is still buffered goes nowhere
        when Python flushes at exit, instead of a 'BrokenPipeError' notice."""
        self.reader_gone = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, io.UnsupportedOperation):
            pass

    def __getattr__(self, name):
        return getattr(self.stream, name)


class _tolerant_streams:
    def __enter__(self):
        self.saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = ClosedPipeTolerant(sys.stdout), ClosedPipeTolerant(sys.stderr)

    def __exit__(self, *exc):
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sys.stdout, sys.stderr = self.saved


class _signals_stop:
    """SIGTERM and SIGHUP raise Stopped in the main thread (where they are not already
    handled by whoever embeds us)."""

    def __enter__(self):
        self.saved = {}
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in STOPPING:
            if signal.getsignal(signum) == signal.SIG_DFL:
                self.saved[signum] = signal.signal(signum, _raise_stopped)

    def __exit__(self, *exc):
        for signum, handler in self.saved.items():
            signal.signal(signum, handler)


def _raise_stopped(signum, frame):
    raise Stopped(signum)


if __name__ == "__main__":
    sys.exit(main())
