"""`crossgrad`: check | train | run | diff | sweep | bench | zoo.

Exit status: 0 everything agrees, 1 something disagrees or a framework failed,
2 bad input (one line naming the file and field; nothing is written).
"""
import argparse
import sys

from . import commands
from .errors import EXIT_BAD_INPUT, InputError


class Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line, status 2 (argparse's default prints the whole usage first)."""
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(EXIT_BAD_INPUT)


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.command(args)
    except InputError as err:
        print(f"crossgrad: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("crossgrad: interrupted; nothing half-written was left behind", file=sys.stderr)
        return 130


def build_parser():
    parser = Parser(prog="crossgrad", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="name", required=True, parser_class=Parser)
    for name, (fn, helptext, adders) in commands.COMMANDS.items():
        p = sub.add_parser(name, help=helptext, description=helptext)
        for add in adders:
            add(p)
        p.set_defaults(command=fn)
    return parser


if __name__ == "__main__":
    sys.exit(main())
