"""The ``topolet`` command line: one argparse parser, one module per subcommand.

Each subcommand lives in its own module (``topolet.cmd_discover``, ``topolet.cmd_demo``,
``topolet.cmd_bench``, ...) listed in :data:`COMMAND_MODULES`. A module exposes
``register(subparsers)``, which adds its parser (built with ``parents=[common_options()]``)
and sets ``func``: a callable taking the parsed arguments and returning the exit code.
Adding a subcommand means adding a module and one line to :data:`COMMAND_MODULES`.

Exit codes: 0 success, 1 error (one line on stderr, no traceback), 2 usage error.
Errors the user can act on (:data:`USER_ERRORS`: bad flags, configuration, checkpoint or
sysfs input, and the OS refusing a file) print one line naming the flag, key or file;
``--debug`` (or ``-vv``) shows their traceback too, for a bug report. Anything else is a
bug and keeps its traceback.

Only the module of the subcommand named on the command line is imported (``--help``
imports them all), so an error in the arguments is answered before any heavy import.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Callable, Sequence

import yaml

from cpumanager.errors import CPUManagerError
from deviceplugin.errors import DevicePluginError
from scheduler.errors import SchedulerError
from topolet.errors import TopoletError
from topology.cpuset import raise_cpu_id_limit
from topology.errors import TopologyError
from topology.sysfs import SysfsReader

__all__ = ["COMMAND_MODULES", "USER_ERRORS", "CommandError", "build_parser", "common_options", "main"]

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


class CommandError(TopoletError):
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
    parent.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
    return parent


_DEBUG_HELP = "on an error, print the traceback as well (for bug reports)"


def _command_of(argv: Sequence[str]) -> str | None:
    """The module of the subcommand *argv* names (its first word that is not an option)."""
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            module = f"topolet.cmd_{word}"
            return module if module in COMMAND_MODULES else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, with every module of :data:`COMMAND_MODULES` registered (with
    *only*, a module of that list, just that one)."""
    parser = argparse.ArgumentParser(
        prog="topolet",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v: progress, -vv: debug)"
    )
    parser.add_argument("--debug", action="store_true", default=False, help=_DEBUG_HELP)
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in (only,) if only is not None else COMMAND_MODULES:
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


#: Errors caused by what the user gave (flags, configuration, checkpoint, sysfs) or by the
#: OS refusing a file: one line, exit 1. ``ValueError`` covers every parser's refusal
#: (cpu lists, quantities, configuration keys).
USER_ERRORS: tuple[type[BaseException], ...] = (
    TopoletError,
    TopologyError,
    CPUManagerError,
    DevicePluginError,
    SchedulerError,
    yaml.YAMLError,
    ValueError,
    MemoryError,
    OSError,
)

#: The longest error line printed (a refused value is quoted, never dumped whole).
_MAX_LINE = 2000


def _one_line(err: BaseException) -> str:
    if isinstance(err, OSError):
        return _os_error_message(err)
    if isinstance(err, MemoryError):
        return "out of memory (an input is far larger than any real one)"
    text = " ".join(str(err).split())  # YAML errors span lines: join them
    return text or type(err).__name__


def _fail(message: str) -> int:
    line = message.strip().splitlines()[0] if message.strip() else "failed"
    if len(line) > _MAX_LINE:
        line = f"{line[:_MAX_LINE]}... ({len(line)} characters)"
    print(f"topolet: error: {line}", file=sys.stderr)
    return EXIT_ERROR


def _machine_cpu_limit() -> None:
    """Let CPU ids reach this kernel's ``kernel_max`` when it is above the default 8191."""
    try:
        limit = SysfsReader("/").cpu_id_limit()
    except (TopologyError, OSError):
        return
    if limit is not None:
        raise_cpu_id_limit(limit)


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace | int:
    try:
        return parser.parse_args(argv)
    except SystemExit as done:  # --help (0) or a usage error (2): argparse has printed it
        return done.code if isinstance(done.code, int) else EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``topolet`` command line with *argv* (default: ``sys.argv[1:]``)."""
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_of(words))
    args = _parse(parser, words)
    if isinstance(args, int):
        return args
    _setup_logging(args.verbose)
    handler: Handler | None = getattr(args, "func", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    debug = args.debug or args.verbose >= 2
    _machine_cpu_limit()
    try:
        return handler(args)
    except USER_ERRORS as err:
        if debug:
            traceback.print_exc(file=sys.stderr)
        return _fail(_one_line(err))
    except KeyboardInterrupt:
        return 130
