"""The `hwsim` command line: parses arguments at the edge and dispatches to hwsim.commands.*.

User errors (hwsim.errors.UserError, the output policy's included) print one message and exit
with status 2, no traceback; SIGINT exits with 130 and SIGTERM with 143, both after the same
cleanup (a KeyboardInterrupt unwinds every staging directory). :func:`run_cli` is that loop, for
``qat`` too.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import pkgutil
import re
import signal
import sys
from pathlib import Path

from hwsim import commands, interrupts
from hwsim.errors import UserError

DISTRIBUTION = "qnn-verify"


def package_version() -> str:
    """The installed version of the package; from pyproject.toml beside the sources if not installed."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return "unknown"
    found = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
    return f"{found.group(1)} (not installed)" if found else "unknown"


def add_version_argument(parser: argparse.ArgumentParser) -> None:
    """``--version``: the program name and :func:`package_version`."""
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")


def command_name(module: str) -> str:
    """The CLI name of the command module ``module``: ``import_qonnx`` -> ``import-qonnx``."""
    return module.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hwsim",
        description="Run an exported integer bundle bit-accurately, on a MAC-array model, and report.",
    )
    add_version_argument(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"hwsim.commands.{info.name}")
        p = sub.add_parser(command_name(info.name), help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def run_cli(prog: str, parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse ``argv``, run the chosen command; UserError -> message and 2, SIGINT -> 130, SIGTERM -> 143."""
    args = parser.parse_args(argv)
    with interrupts.handling():
        try:
            status = int(args._run(args) or 0)
            interrupts.check()  # a signal whose exception was swallowed on the way
            return status
        except UserError as err:
            print(f"{prog} {args.command}: error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as err:
            signum = err.signum if isinstance(err, interrupts.Interrupted) else signal.SIGINT
            what = "terminated" if signum == signal.SIGTERM else "interrupted"
            print(f"{prog}: {what}", file=sys.stderr)
            return 128 + signum


def main(argv: list[str] | None = None) -> int:
    return run_cli("hwsim", build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
