"""Checkpoints: one self-describing file per trained model (``checkpoint.pt``, ``best.pt``).

Place in the flow: ``qat train`` writes them; ``qat eval``, ``qat export`` and ``qat train --init``
/ ``--resume`` read them. A checkpoint holds everything needed to rebuild the model without
flags, so :func:`load_model` needs only the path. Files are written to a temporary name and
renamed; they are read with ``torch.load(weights_only=True)`` (data only, no code).

Keys of the dict (``format_version`` 1):

==================  ===========================================================================
``format``          ``"qat-checkpoint"``
``format_version``  1
``model``           model name (``qat.models.MODEL_NAMES``)
``num_classes``     int
``quant``           resolved quantization, explicit per module (``ResolvedQuant.to_dict()``;
                    ``qat.config.config_from_dict`` loads it back)
``quant_source``    the config as given (``QuantConfig.to_dict()``), or None for float training
``normalization``   ``{"mean": [3 floats], "std": [3 floats]}`` applied to ``pixel / 255``
``state_dict``      the model's ``state_dict()`` (CPU tensors)
``epoch``           completed epochs
``best_top1``       best test top-1 (%) so far
``metrics``         list of per-epoch dicts (the rows of metrics.csv)
``train_args``      ``TrainConfig.to_dict()``
``optimizer``       optimizer ``state_dict()`` (for ``--resume``; None in ``best.pt``)
``scheduler``       LR scheduler ``state_dict()`` (for ``--resume``; None in ``best.pt``)
``data``            description of the training data (``cifar10 (DIR)`` or ``synthetic (...)``)
``init``            the ``--init`` checkpoint this run started from, or None
``torch_version``   ``torch.__version__`` at save time
==================  ===========================================================================
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwsim.atomic import write_atomic
from hwsim.errors import UserError
from qat.config import ConfigError, config_from_dict
from qat.data import Normalization
from qat.models import MODEL_NAMES, build_model

CHECKPOINT_FORMAT = "qat-checkpoint"
CHECKPOINT_VERSION = 1
REQUIRED_KEYS: tuple[str, ...] = (
    "format",
    "format_version",
    "model",
    "num_classes",
    "quant",
    "normalization",
    "state_dict",
)
# Keys that are bulky or only for resuming; load_model's ``meta`` leaves them out.
STATE_KEYS: tuple[str, ...] = ("state_dict", "optimizer", "scheduler")


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (see the module docstring) atomically: temporary file, then rename."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    write_atomic(Path(path), buf.getvalue())


def make_payload(
    model: nn.Module,
    *,
    normalization: Normalization,
    quant_source: dict[str, Any] | None,
    epoch: int,
    best_top1: float,
    metrics: list[dict[str, Any]],
    train_args: dict[str, Any],
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any,
    data: str,
    init: str | None,
) -> dict[str, Any]:
    """The checkpoint dict of a model built by :func:`qat.models.build_model`."""
    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "model": model.model_name,
        "num_classes": int(model.fc.out_features),
        "quant": model.quant.to_dict(),
        "quant_source": quant_source,
        "normalization": normalization.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "epoch": int(epoch),
        "best_top1": float(best_top1),
        "metrics": [dict(r) for r in metrics],
        "train_args": dict(train_args),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "data": data,
        "init": init,
        "torch_version": str(torch.__version__),
    }


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and check a checkpoint dict (tensors on CPU); a bad file is a :class:`UserError`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"checkpoint {path}: no such file; pass the checkpoint.pt or best.pt that `qat train` wrote"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()] or [type(err).__name__]
        first = next((ln for ln in lines if "Unsupported global" in ln), lines[0])
        raise UserError(
            f"checkpoint {path}: not a readable PyTorch checkpoint ({first}); "
            "pass a file written by `qat train`"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise UserError(
            f"checkpoint {path}: not a qat checkpoint (no format: {CHECKPOINT_FORMAT!r}); "
            "pass a checkpoint.pt or best.pt written by `qat train`"
        )
    if payload.get("format_version") != CHECKPOINT_VERSION:
        raise UserError(
            f"checkpoint {path}: format_version {payload.get('format_version')!r}, this qat reads "
            f"{CHECKPOINT_VERSION}"
        )
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise UserError(f"checkpoint {path}: missing key(s) {missing}; the file is incomplete")
    if payload["model"] not in MODEL_NAMES:
        raise UserError(f"checkpoint {path}: model {payload['model']!r} is not one of {list(MODEL_NAMES)}")
    return payload


def model_from_payload(payload: dict[str, Any], source: str) -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights (on CPU)."""
    try:
        qconfig = config_from_dict(payload["quant"], source=f"{source} (quant)")
        normalization = Normalization.from_dict(payload["normalization"])
        model = build_model(
            payload["model"], qconfig, num_classes=int(payload["num_classes"]), normalization=normalization
        )
    except ConfigError as err:
        raise UserError(
            f"checkpoint {source}: its quantization record does not fit the model: {err}"
        ) from None
    result = model.load_state_dict(payload["state_dict"], strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise UserError(
            f"checkpoint {source}: state_dict does not match model {payload['model']} "
            f"(missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]})"
        )
    return model


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """``(model in eval mode on device, meta)``; ``meta`` is the checkpoint dict without tensors
    (no ``state_dict``/``optimizer``/``scheduler``), with ``normalization`` as a :class:`Normalization`
    under ``meta["normalization_obj"]`` for convenience."""
    payload = read_checkpoint(path)
    model = model_from_payload(payload, str(path))
    model.to(device).eval()
    meta = {k: v for k, v in payload.items() if k not in STATE_KEYS}
    meta["normalization_obj"] = Normalization.from_dict(payload["normalization"])
    meta["path"] = str(path)
    return model, meta


def load_matching_weights(model: nn.Module, path: str | Path) -> tuple[list[str], list[str]]:
    """``--init``: copy every tensor of checkpoint ``path`` whose name and shape match ``model``.

    Returns ``(loaded, left_at_init)``: the model keys loaded and those kept as initialized
    (quantizer parameters the float model does not have, such as PACT's alpha or LSQ's step;
    LSQ steps then initialize from the data on the first training batch). A checkpoint of another
    architecture, or a tensor whose shape differs, is an error.
    """
    payload = read_checkpoint(path)
    if payload["model"] != model.model_name:
        raise UserError(
            f"--init {path}: the checkpoint is a {payload['model']}, the model being trained is a "
            f"{model.model_name}; pass --model {payload['model']} or another checkpoint"
        )
    source = payload["state_dict"]
    target = model.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    for key, value in source.items():
        if key not in target:
            continue  # e.g. a quantizer state of a quantized --init that this config does not have
        if target[key].shape != value.shape:
            raise UserError(
                f"--init {path}: tensor {key} has shape {list(value.shape)} in the checkpoint but "
                f"{list(target[key].shape)} in the model (different --num-classes or architecture?)"
            )
        loaded[key] = value
    weights = [k for k in target if k.endswith("weight") and k not in loaded and "quant" not in k]
    if weights:
        raise UserError(
            f"--init {path}: the checkpoint lacks layer weights {weights[:5]}; not a {model.model_name}"
        )
    model.load_state_dict(loaded, strict=False)
    return list(loaded), [k for k in target if k not in loaded]
