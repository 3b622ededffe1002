"""The `qat` subcommands, one module each (discovered by qat.cli).

Each module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
"""
