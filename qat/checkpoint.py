"""Checkpoints: one self-describing file per trained model (``checkpoint.pt``, ``best.pt``).

Place in the flow: ``qat train`` writes them; ``qat eval``, ``qat export`` and ``qat train --init``
/ ``--resume`` read them. A checkpoint holds everything needed to rebuild the model without
flags, so :func:`load_model` needs only the path. Files are written to a temporary name and
renamed; they are read with ``torch.load(weights_only=True)`` (data only, no code) and every key
below is checked on load, types and tensor shapes included (:func:`check_payload`,
:func:`model_from_payload`; ``--resume`` also :func:`check_resumable`, :func:`load_training_state`):
a bad file is a :class:`CheckpointError` naming the file and the key.

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
``best_top1``       best validation top-1 (%) so far: ``best.pt``'s epoch (best test top-1 in runs
                    without a validation split, ``train_args.val_fraction`` 0)
``metrics``         list of per-epoch dicts (the rows of metrics.csv; ``val_loss``/``val_acc``
                    only in runs with a validation split)
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
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwsim.atomic import write_atomic
from hwsim.errors import UserError
from hwsim.flags import check_float, check_int
from qat.config import ConfigError, config_from_dict
from qat.data import Normalization
from qat.models import MODEL_NAMES, build_model
from qat.train import METRIC_FIELDS, REQUIRED_METRIC_FIELDS, VALIDATION_FIELDS, TrainConfig

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


class CheckpointError(UserError):
    """A file that is not a complete, consistent qat checkpoint; the message names the file and the key."""


_FIX = "pass a checkpoint.pt or best.pt written by `qat train`"


def _bad(path: str | Path, key: str, problem: str, fix: str = _FIX) -> CheckpointError:
    return CheckpointError(f"checkpoint {path}: key {key!r}: {problem}; {fix}")


def _type_name(value: object) -> str:
    return type(value).__name__


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict (tensors on CPU) and check every key (:func:`check_payload`).

    A file that is not a checkpoint (other bytes, a zip that is not a torch file, a pickle that
    would construct anything but data) is a :class:`CheckpointError`, as is any key missing or
    of the wrong type.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path}: no such file; pass the checkpoint.pt or best.pt that `qat train` wrote"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many types for foreign bytes; none of them is ours
        lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()] or [type(err).__name__]
        first = next((ln for ln in lines if "Unsupported global" in ln), lines[0])[:200]
        raise CheckpointError(
            f"checkpoint {path}: not a readable PyTorch checkpoint ({first}); "
            "pass a file written by `qat train`"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {path}: not a qat checkpoint (no format: {CHECKPOINT_FORMAT!r}); {_FIX}"
        )
    if payload.get("format_version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint {path}: format_version {payload.get('format_version')!r:.40}, this qat reads "
            f"{CHECKPOINT_VERSION}"
        )
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path}: missing key(s) {missing}; the file is incomplete; {_FIX}")
    check_payload(payload, path)
    return payload


def check_payload(payload: dict[str, Any], path: str | Path) -> None:
    """Every key that eval, export and resume read, with its type (the module docstring's table).

    The tensors' shapes are checked against the model when it is built (:func:`model_from_payload`);
    whether the file can be resumed is :func:`check_resumable`'s question.
    """
    if not isinstance(payload["model"], str) or payload["model"] not in MODEL_NAMES:
        raise _bad(path, "model", f"{payload['model']!r:.40} is not one of {list(MODEL_NAMES)}")
    try:
        check_int("num_classes", payload["num_classes"], 2)
    except UserError as err:
        raise _bad(path, "num_classes", str(err)) from None
    if not isinstance(payload["quant"], dict):
        raise _bad(
            path, "quant", f"a {_type_name(payload['quant'])}, expected a dict (ResolvedQuant.to_dict())"
        )
    source = payload.get("quant_source")
    if source is not None:
        if not isinstance(source, dict):
            raise _bad(path, "quant_source", f"a {_type_name(source)}, expected a dict or None")
        try:
            config_from_dict(source, source=f"{path} (quant_source)")
        except UserError as err:
            raise _bad(path, "quant_source", f"not a loadable quantization config ({err})") from None
    try:
        Normalization.from_dict(payload["normalization"])
    except UserError as err:
        raise _bad(path, "normalization", str(err)) from None
    state = payload["state_dict"]
    if not isinstance(state, dict) or not state:
        raise _bad(path, "state_dict", f"a {_type_name(state)}, expected a non-empty dict of tensors")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise _bad(
                path, "state_dict", f"entry {key!r:.60} is a {_type_name(value)}, expected a named tensor"
            )
    if "epoch" in payload:
        try:
            check_int("epoch", payload["epoch"], 0)
        except UserError as err:
            raise _bad(path, "epoch", str(err)) from None
    if "best_top1" in payload:
        try:
            check_float("best_top1", payload["best_top1"], -1.0, 100.0)
        except UserError as err:
            raise _bad(path, "best_top1", str(err)) from None
    metrics = payload.get("metrics", [])
    if not isinstance(metrics, list) or not all(isinstance(row, dict) for row in metrics):
        raise _bad(path, "metrics", "expected a list of per-epoch dicts (the rows of metrics.csv)")
    for i, row in enumerate(metrics):
        absent = [k for k in REQUIRED_METRIC_FIELDS if k not in row]
        if absent:
            raise _bad(
                path,
                "metrics",
                f"row {i} lacks {absent}; expected the columns {list(METRIC_FIELDS)} "
                f"({', '.join(VALIDATION_FIELDS)} only with a validation split)",
            )
    if "train_args" in payload:
        try:
            TrainConfig.from_dict(payload["train_args"])
        except UserError as err:
            raise _bad(path, "train_args", str(err)) from None
    for key in ("optimizer", "scheduler"):
        value = payload.get(key)
        if value is not None and not isinstance(value, dict):
            raise _bad(path, key, f"a {_type_name(value)}, expected a state_dict (dict) or None")
    for key in ("data", "init", "torch_version"):
        value = payload.get(key)
        if value is not None and not isinstance(value, str):
            raise _bad(path, key, f"a {_type_name(value)}, expected a string or None")


def check_resumable(payload: dict[str, Any], path: str | Path) -> TrainConfig:
    """The run's :class:`TrainConfig` if ``payload`` holds what ``--resume`` continues from, else a
    :class:`CheckpointError` saying what is missing and what to pass instead."""
    instead = (
        f"--resume continues a run from the checkpoint.pt that `qat train` writes every epoch; to start "
        f"a new run from these weights, pass --init {path} with a new --out"
    )
    for key in ("epoch", "best_top1", "metrics", "train_args", "optimizer", "scheduler"):
        if payload.get(key) is None:
            what = (
                "no optimizer state (it is a best.pt, or was written as one)"
                if key == "optimizer"
                else "no " + key
            )
            raise _bad(path, key, f"{what}, so the run cannot be resumed", instead)
    cfg = TrainConfig.from_dict(payload["train_args"])
    epoch = payload["epoch"]
    if epoch > cfg.epochs:
        raise _bad(path, "epoch", f"{epoch} is past the run's {cfg.epochs} epochs (train_args)", instead)
    if len(payload["metrics"]) != epoch:
        raise _bad(path, "metrics", f"{len(payload['metrics'])} rows for {epoch} completed epochs", instead)
    return cfg


def load_training_state(
    optimizer: torch.optim.Optimizer, scheduler: Any, payload: dict[str, Any], path: str | Path
) -> None:
    """``--resume``: restore the optimizer's and the scheduler's state, checked against fresh ones.

    The saved states must have the structure of those built for the model now (the same parameter
    groups and sizes, momentum buffers of each parameter's shape, the same scheduler fields).
    """
    fix = f"the file does not match the run it claims to be; start a new run with --init {path}"
    saved, fresh = payload["optimizer"], optimizer.state_dict()
    groups = saved.get("param_groups")
    if (
        not isinstance(groups, list)
        or not isinstance(saved.get("state"), dict)
        or len(groups) != len(fresh["param_groups"])
        or any(
            not isinstance(g, dict)
            or not isinstance(g.get("params"), list)
            or len(g["params"]) != len(f["params"])
            or not isinstance(g.get("lr"), (int, float))
            for g, f in zip(groups, fresh["param_groups"], strict=False)
        )
    ):
        raise _bad(path, "optimizer", "its parameter groups do not match the model's", fix)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    ids = [i for g in groups for i in g["params"]]
    for index, entry in saved["state"].items():
        if index not in ids or not isinstance(entry, dict):
            raise _bad(path, "optimizer", f"state entry {index!r:.40} names no parameter", fix)
        buffer = entry.get("momentum_buffer")
        shape = tuple(params[ids.index(index)].shape)
        if buffer is not None and (not isinstance(buffer, torch.Tensor) or tuple(buffer.shape) != shape):
            raise _bad(
                path,
                "optimizer",
                f"the momentum buffer of parameter {index} is "
                f"{list(buffer.shape) if isinstance(buffer, torch.Tensor) else _type_name(buffer)}, "
                f"expected a tensor of shape {list(shape)}",
                fix,
            )
    sched, fresh_sched = payload["scheduler"], scheduler.state_dict()
    absent = [k for k in ("last_epoch", "base_lrs") if k not in sched]
    wrong = [
        k for k, v in fresh_sched.items() if k in sched and v is not None and type(sched[k]) is not type(v)
    ]
    if absent or wrong or len(sched["base_lrs"]) != len(fresh_sched["base_lrs"]):
        raise _bad(
            path,
            "scheduler",
            f"fields missing {absent} or of the wrong type {wrong}; expected those of "
            f"{type(scheduler).__name__}.state_dict()",
            fix,
        )
    if sched["last_epoch"] != payload["epoch"]:
        raise _bad(
            path, "scheduler", f"last_epoch {sched['last_epoch']} differs from epoch {payload['epoch']}", fix
        )
    try:
        optimizer.load_state_dict(saved)
        scheduler.load_state_dict(sched)
    except (ValueError, KeyError, TypeError, RuntimeError) as err:
        raise _bad(path, "optimizer", f"not loadable ({type(err).__name__}: {str(err)[:200]})", fix) from None


def model_from_payload(payload: dict[str, Any], source: str) -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights (on CPU).

    Every tensor of ``state_dict`` must be one of the model's with the model's shape.
    """
    try:
        qconfig = config_from_dict(payload["quant"], source=f"{source} (quant)")
    except UserError as err:
        raise _bad(source, "quant", f"not a loadable quantization record ({err})") from None
    normalization = Normalization.from_dict(payload["normalization"])
    try:
        model = build_model(
            payload["model"], qconfig, num_classes=int(payload["num_classes"]), normalization=normalization
        )
    except ConfigError as err:
        raise _bad(source, "quant", f"the quantization record does not fit the model ({err})") from None
    target = model.state_dict()
    state = payload["state_dict"]
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    if missing or unexpected:
        raise _bad(
            source,
            "state_dict",
            f"does not match model {payload['model']} (missing {missing[:5]}, unexpected {unexpected[:5]})",
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(target[key].shape):
            raise _bad(
                source,
                "state_dict",
                f"tensor {key} has shape {list(value.shape)}, the model's is {list(target[key].shape)} "
                f"({payload['model']} with num_classes {payload['num_classes']})",
            )
    model.load_state_dict(state, strict=True)
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
    model_from_payload(payload, str(path))  # the file's tensors fit the model it describes
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
