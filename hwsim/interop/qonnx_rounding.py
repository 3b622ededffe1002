"""QONNX rounding modes against the bundle's: the one table that the importer and the exporter read.

Place in the flow: ``hwsim import-qonnx`` gives each requantizer the bundle mode of its QONNX
``rounding_mode`` (:data:`FROM_QONNX`); ``hwsim export-qonnx`` writes each bundle mode as a
QONNX mode plus a value added before it (:data:`TO_QONNX`; ``half_up`` has no QONNX mode and is
``FLOOR`` of ``x + 0.5``). The modes are those of qonnx 1.0.0's ``resolve_rounding_mode``.
No onnx import here.
"""

from __future__ import annotations

# bundle rounding mode -> (QONNX rounding_mode, value added before rounding)
TO_QONNX: dict[str, tuple[str, float]] = {
    "half_even": ("ROUND", 0.0),
    "floor": ("FLOOR", 0.0),
    "ceil": ("CEIL", 0.0),
    "toward_zero": ("DOWN", 0.0),  # qonnx: np.fix
    "half_away": ("HALF_UP", 0.0),  # qonnx: sign(x) floor(|x| + 0.5)
    "half_up": ("FLOOR", 0.5),  # no qonnx mode: floor(x + 0.5)
}

# QONNX spellings of the same rounding as one in TO_QONNX
_SYNONYMS = {"HALF_EVEN": "ROUND", "ROUND_TO_ZERO": "DOWN"}

# QONNX rounding_mode -> bundle rounding mode (each mode QONNX rounds by without an addend)
FROM_QONNX: dict[str, str] = {q: m for m, (q, addend) in TO_QONNX.items() if addend == 0.0}
FROM_QONNX.update({alias: FROM_QONNX[q] for alias, q in _SYNONYMS.items()})


def mode_of(qonnx_mode: str, addend: float) -> str | None:
    """The bundle mode that ``qonnx_mode`` after adding ``addend`` computes (``None``: none does)."""
    return next((m for m, q in TO_QONNX.items() if q == (qonnx_mode, addend)), None)
