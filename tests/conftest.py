"""Shared pytest fixtures: real CIFAR-10 (when CIFAR10_DIR is set), one torch thread, hypothesis profiles."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch intra-op thread for a module (``pytestmark = pytest.mark.usefixtures(...)``): on two
    cores shared with other work, more threads stall each other."""
    import torch  # here, not at the top: the hwsim tests run without importing torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def cifar10_dir() -> Path:
    """The real CIFAR-10 batches directory named by CIFAR10_DIR; skips when it is not set."""
    value = os.environ.get("CIFAR10_DIR")
    if not value:
        pytest.skip("CIFAR10_DIR is not set (the real-data cases need a CIFAR-10 batches directory)")
    path = Path(value)
    if not (path / "test_batch").is_file():
        pytest.fail(f"CIFAR10_DIR={value} does not hold a CIFAR-10 python batches directory (no test_batch)")
    return path


def tree_bytes(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` (``root`` included) -> its bytes (None for a directory): a snapshot to
    compare after a command that must have left it alone."""
    if not root.exists():
        return {}
    paths = [root, *sorted(root.rglob("*"))]
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in paths}


CliRun = Callable[[Callable[[list[str]], int], list[str]], tuple[int, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> CliRun:
    """``cli(main, argv)`` -> ``(exit status, stderr)`` of a CLI's ``main``, argparse's refusals of a
    flag's value (SystemExit: the usage line and status 2) included."""

    def run(main: Callable[[list[str]], int], argv: list[str]) -> tuple[int, str]:
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        return code, capsys.readouterr().err

    return run


@pytest.fixture
def snapshot() -> Callable[[Path], dict[str, bytes | None]]:
    """:func:`tree_bytes` as a fixture, for tests of what commands leave untouched."""
    return tree_bytes


MEMORY_BOUND = 2 << 30  # bytes of address space a CLI run under `run_limited` may map


def _run_limited(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``hwsim ...`` or ``qat ...`` (``argv[0]``) in a fresh process mapping MEMORY_BOUND bytes at most."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BOUND, MEMORY_BOUND))

    code = f"import sys; from {argv[0]}.cli import main; sys.exit(main({list(argv[1:])!r}))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def run_limited() -> Callable[..., subprocess.CompletedProcess[str]]:
    """A CLI run in bounded memory: ``run_limited("hwsim", "emulate", BUNDLE, cwd=DIR)``."""
    return _run_limited
