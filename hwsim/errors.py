"""User-facing errors: one base class that every CLI turns into a message and exit status 2.

Place in the flow: raised anywhere a user's input is wrong (a bundle, a hardware YAML, a
quantization config, a flag); never for a bug in this project. Messages say what was wrong,
where (file, node, field), what was expected and how to fix it.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user; the CLIs print the message and exit with status 2."""
