"""The `hwsim` subcommands, one module each (discovered by hwsim.cli).

Each module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse

from hwsim.fixed import OVERFLOW_MODES
from hwsim.flags import acc_bits_int, batch_int


def add_emulator_arguments(parser: argparse.ArgumentParser) -> None:
    """The emulator flags shared by `hwsim emulate` and `hwsim compare`."""
    parser.add_argument(
        "--acc-bits",
        type=acc_bits_int,
        default=None,
        metavar="B",
        help="accumulator width (default: the bundle's acc_bits)",
    )
    parser.add_argument(
        "--overflow", choices=OVERFLOW_MODES, default="wrap", help="accumulator overflow mode"
    )
    parser.add_argument("--batch-size", type=batch_int, default=256, help="images per emulator batch")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
