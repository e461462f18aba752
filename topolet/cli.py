"""The ``topolet`` command line: one argparse parser, one module per subcommand.

Each subcommand lives in its own module (``topolet.cmd_discover``, ``topolet.cmd_demo``,
``topolet.cmd_bench``, ...) listed in :data:`COMMAND_MODULES`. A module exposes
``register(subparsers)``, which adds its parser (built with ``parents=[common_options()]``)
and sets ``func``: a callable taking the parsed arguments and returning the exit code.
Adding a subcommand means adding a module and one line to :data:`COMMAND_MODULES`.

Exit codes: 0 success, 1 error (one line on stderr, no traceback), 2 usage error.
Errors the user can act on are :class:`CommandError`, :class:`~topology.errors.TopologyError`
and :class:`OSError`; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from topology.errors import TopologyError

__all__ = ["COMMAND_MODULES", "CommandError", "build_parser", "common_options", "main"]

#: Modules that each register one subcommand, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "topolet.cmd_discover",
    "topolet.cmd_demo",
    "topolet.cmd_bench",
    "topolet.cmd_run",
    "topolet.cmd_cpumanager",
    "topolet.cmd_extender",
    "topolet.cmd_simulate",
    "topolet.cmd_describe",
    "topolet.cmd_node",
)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]

_DESCRIPTION = """\
topolet makes Kubernetes place and pin performance-sensitive pods by hardware topology.
This tool shows the machine's topology, runs the demo and the benchmarks."""


class CommandError(Exception):
    """A subcommand cannot do what was asked, for a reason the user can fix.

    The message is printed as the one-line error; it should say what is wrong and how
    to put it right.
    """


def common_options() -> argparse.ArgumentParser:
    """The options every subcommand accepts (pass as ``parents=[common_options()]``)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="log more (-v: progress, -vv: debug)",
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every module of :data:`COMMAND_MODULES` registered."""
    parser = argparse.ArgumentParser(
        prog="topolet",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v: progress, -vv: debug)"
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _os_error_message(err: OSError) -> str:
    """``path: reason`` for OS errors (``[Errno 2] ...`` is noise to a user)."""
    reason = err.strerror or str(err)
    if err.filename is not None:
        return f"{err.filename}: {reason}"
    return reason


def _fail(message: str) -> int:
    first_line = message.strip().splitlines()[0] if message.strip() else "failed"
    print(f"topolet: error: {first_line}", file=sys.stderr)
    return EXIT_ERROR


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace | int:
    try:
        return parser.parse_args(argv)
    except SystemExit as done:  # --help (0) or a usage error (2): argparse has printed it
        return done.code if isinstance(done.code, int) else EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``topolet`` command line with *argv* (default: ``sys.argv[1:]``)."""
    parser = build_parser()
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args
    _setup_logging(args.verbose)
    handler: Handler | None = getattr(args, "func", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return handler(args)
    except (CommandError, TopologyError) as err:
        return _fail(str(err))
    except OSError as err:
        return _fail(_os_error_message(err))
    except KeyboardInterrupt:
        return 130
