"""Stress settings of a kit run: how often valid and ready drop, and the seed that replays it.

Place in the flow: chosen on the command line (``--stress``, ``--pause-valid``, ``--pause-ready``,
``--seed``; rtl_models/kit/command.py), carried to the simulator by ``rtl_models.kit.runner`` and
used by the drivers of ``rtl_models.kit.protocols``: with stress on, every cycle each input stream
holds its beat back with probability ``valid_pause``, the output stream lowers ready with
probability ``ready_pause``, and parallel loads wait a random number of idle cycles. The same seed
gives the same run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from hwsim.errors import UserError

DEFAULT_PAUSE = 0.35


@dataclass(frozen=True)
class Stress:
    enabled: bool = False
    seed: int = 0
    valid_pause: float = DEFAULT_PAUSE
    ready_pause: float = DEFAULT_PAUSE

    def __post_init__(self) -> None:
        for name in ("valid_pause", "ready_pause"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise UserError(
                    f"--pause-{name.split('_')[0]} {value}: give a probability from 0 up to (not including) 1"
                )

    def describe(self) -> str:
        if not self.enabled:
            return f"stress off, seed {self.seed}"
        pauses = f"valid pause {self.valid_pause:g}, ready pause {self.ready_pause:g}"
        return f"stress on ({pauses}), seed {self.seed}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
