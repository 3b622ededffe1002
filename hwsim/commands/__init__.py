"""The `hwsim` subcommands, one module each (discovered by hwsim.cli).

Each module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
"""
