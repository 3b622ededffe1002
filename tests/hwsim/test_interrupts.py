"""hwsim.interrupts: a SIGTERM or SIGINT whose exception Python drops (raised inside a destructor or
a weakref callback, where matplotlib's transforms run) still stops publishing and sets the exit
status. Real signals to this process, inside the handlers the CLIs install."""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

import pytest

from hwsim import interrupts
from hwsim.cli import run_cli
from hwsim.output import REPORT, claim, publish_directory

# the dropped exception is what these tests make happen
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


class SignalsInDestructor:
    """Sends ``signum`` to this process from ``__del__``: the handler runs there and its exception
    is printed as "Exception ignored in ..." and dropped, as it was inside matplotlib."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    def __del__(self) -> None:
        os.kill(os.getpid(), self.signum)


def swallow(signum: int) -> None:
    victim = SignalsInDestructor(signum)
    del victim


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_swallowed_signal_still_stops_publishing(signum: int, tmp_path: Path) -> None:
    out = claim(tmp_path / "report", REPORT, flag="--report")
    with interrupts.handling():
        with pytest.raises(interrupts.Interrupted) as info, publish_directory(out, REPORT) as staged:
            (staged / "report.md").write_text("new\n")
            swallow(signum)  # no exception reaches this frame
            assert interrupts.pending() == signum
        assert info.value.signum == signum
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing published, no staging left


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_swallowed_signal_sets_the_exit_status(signum: int, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="t")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run").set_defaults(_run=lambda args: swallow(signum) or 0)
    assert run_cli("t", parser, ["run"]) == 128 + signum
    assert ("terminated" if signum == signal.SIGTERM else "interrupted") in capsys.readouterr().err


def test_a_swallowed_signal_does_not_outlive_its_command(tmp_path: Path) -> None:
    """After a command that ended on a swallowed signal, the same process publishes again (a library
    user, or the next test): the record goes with the handlers."""
    parser = argparse.ArgumentParser(prog="t")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run").set_defaults(_run=lambda args: swallow(signal.SIGINT) or 0)
    assert run_cli("t", parser, ["run"]) == 128 + signal.SIGINT
    assert interrupts.pending() is None
    with publish_directory(claim(tmp_path / "report", REPORT, flag="--report"), REPORT) as staged:
        (staged / "report.md").write_text("published\n")
    assert (tmp_path / "report" / "report.md").read_text() == "published\n"


def test_handlers_are_restored_and_the_record_cleared() -> None:
    before = {s: signal.getsignal(s) for s in interrupts.SIGNALS}
    with interrupts.handling():
        swallow(signal.SIGTERM)
        assert interrupts.pending() == signal.SIGTERM
    assert {s: signal.getsignal(s) for s in interrupts.SIGNALS} == before
    with interrupts.handling():
        assert interrupts.pending() is None
        interrupts.check()  # nothing pending: no exception
