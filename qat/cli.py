"""The `qat` command line: parses arguments at the edge and dispatches to qat.commands.*.

User errors (hwsim.errors.UserError) print one message and exit with status 2, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from hwsim.errors import UserError
from qat import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qat",
        description="Quantization-aware training of CIFAR-10 networks and export to an integer bundle.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"qat.commands.{info.name}")
        p = sub.add_parser(info.name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except UserError as err:
        print(f"qat {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qat: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
