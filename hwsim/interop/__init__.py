"""Interoperability with other tools' model formats: importers that build bundles, exporters that read them.

Place in the flow: another tool's quantized model --(an importer)--> bundle/ --> hwsim. An importer
lowers the model's graph through :class:`hwsim.bundle.BundleBuilder` and
:func:`hwsim.bundle.lowering.requant_constants`, the same way ``qat export`` lowers a PyTorch model,
and records the source tool's own execution as the bundle's reference, so ``hwsim compare`` reports
per layer where the integers and the source differ.

:data:`IMPORTERS` maps a format name to its import function ``(model_path, out, **options) -> report``
(a report with ``lines()``). Adding a format is one module here plus one entry. The optional
packages an importer needs are imported when it runs, never when ``hwsim`` is imported.

* ``qonnx_import``: QONNX (Brevitas, FINN, hls4ml) -> bundle (``hwsim import-qonnx``; docs/qonnx.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hwsim.interop.qonnx_import import import_qonnx

IMPORTERS: dict[str, Callable[..., Any]] = {
    "qonnx": import_qonnx,
}

__all__ = ["IMPORTERS", "import_qonnx"]
