"""The `qat` command line: parses arguments at the edge and dispatches to qat.commands.*.

User errors (hwsim.errors.UserError) print one message and exit with status 2, no traceback;
SIGINT exits with 130, SIGTERM with 143, after the same cleanup (hwsim.cli.run_cli).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from hwsim.cli import add_version_argument, run_cli
from qat import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qat",
        description="Quantization-aware training of CIFAR-10 networks and export to an integer bundle.",
    )
    add_version_argument(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"qat.commands.{info.name}")
        p = sub.add_parser(info.name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli("qat", build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
