"""User-facing errors: one base class that every CLI turns into a message and exit status 2.

Place in the flow: raised anywhere a user's input is wrong (a bundle, a hardware YAML, a
quantization config, a flag); never for a bug in this project. Messages say what was wrong,
where (file, node, field), what was expected and how to fix it.
"""

from __future__ import annotations

import reprlib


class UserError(Exception):
    """Bad input from the user; the CLIs print the message and exit with status 2."""


_SHOWN = reprlib.Repr()
_SHOWN.maxlevel = 3
_SHOWN.maxlist = _SHOWN.maxtuple = _SHOWN.maxdict = _SHOWN.maxset = _SHOWN.maxfrozenset = 6
_SHOWN.maxstring = _SHOWN.maxlong = _SHOWN.maxother = 80


def shown(value: object, limit: int = 60) -> str:
    """``repr(value)`` for a message, at most about ``limit`` characters, built without the whole repr.

    A longer value is cut with ``...`` and, when it has a length, followed by it
    (``'aaaa...' (100000 characters)``): a message never holds a whole hostile input.
    """
    text = _SHOWN.repr(value)
    if len(text) > limit:
        text = text[: max(limit - 3, 1)] + "..."
    if "..." in text and isinstance(value, (str, bytes, list, tuple, dict, set, frozenset)):
        unit = "character" if isinstance(value, str) else "byte" if isinstance(value, bytes) else "item"
        text += f" ({len(value)} {unit}{'' if len(value) == 1 else 's'})"
    return text
