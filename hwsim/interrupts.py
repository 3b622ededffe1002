"""Interrupts: SIGINT and SIGTERM unwind a command the same way, and are never lost.

Place in the flow: ``hwsim.cli.run_cli`` (both tools' ``main``) installs :func:`handling` around
a command; :mod:`hwsim.output` calls :func:`check` before it publishes anything and holds both
signals during its renames (:func:`held`). The handler records the signal and raises
:class:`Interrupted` (a ``KeyboardInterrupt``, so ``finally`` blocks and staging clean-ups run).
Python drops an exception raised while it runs a destructor or a weakref callback (printing
"Exception ignored in ..."), so a signal can arrive and raise nothing; the record survives, and
:func:`check` raises it at the next point that matters: before an output is published, and when
the command returns.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_pending: int | None = None


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``signum`` says which (the exit status is 128 + signum)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _handler(signum: int, frame: FrameType | None) -> None:
    global _pending
    _pending = signum
    raise Interrupted(signum)


def pending() -> int | None:
    """The signal received and not yet acted on, or None."""
    return _pending


def check() -> None:
    """Raise :class:`Interrupted` if a signal arrived (even one whose exception was swallowed)."""
    if _pending is not None:
        raise Interrupted(_pending)


@contextmanager
def handling() -> Iterator[None]:
    """Within the block SIGINT and SIGTERM raise :class:`Interrupted` (main thread only; elsewhere
    the handlers stay as they are)."""
    global _pending
    _pending = None
    try:
        previous = {s: signal.signal(s, _handler) for s in SIGNALS}
    except ValueError:  # not the main thread: leave the handlers alone
        yield
        return
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        # acted on inside the block (run_cli's exit status): a record left behind would stop the
        # next publish of this process, outside any command, as if the signal had come again
        _pending = None


@contextmanager
def held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done (its renames are not torn apart)."""
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    except (AttributeError, ValueError, OSError):  # no pthread_sigmask on this platform
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
