"""Fixtures of the interop tests: Brevitas models exported to QONNX once per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def qonnx_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``qonnx_model(kind)``: the .onnx file of ``brevitas_models.build(kind)``, exported once per session."""
    pytest.importorskip("brevitas")
    pytest.importorskip("qonnx")
    from qat import brevitas_models

    root = tmp_path_factory.mktemp("qonnx_models")
    cache: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in cache:
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                cache[kind] = brevitas_models.export(brevitas_models.build(kind), root / f"{kind}.onnx")
            finally:
                torch.set_num_threads(threads)
        return cache[kind]

    return get
