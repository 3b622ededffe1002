"""The `hwsim` command line: parses arguments at the edge and dispatches to hwsim.commands.*.

User errors (hwsim.errors.UserError) print one message and exit with status 2, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from hwsim import commands
from hwsim.errors import UserError


def command_name(module: str) -> str:
    """The CLI name of the command module ``module``: ``import_qonnx`` -> ``import-qonnx``."""
    return module.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hwsim",
        description="Run an exported integer bundle bit-accurately, on a MAC-array model, and report.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"hwsim.commands.{info.name}")
        p = sub.add_parser(command_name(info.name), help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except UserError as err:
        print(f"hwsim {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hwsim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
