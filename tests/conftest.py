"""Shared pytest fixtures: real CIFAR-10 (when CIFAR10_DIR is set), one torch thread, hypothesis profiles."""

from __future__ import annotations

import os
from collections.abc import Iterator
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
