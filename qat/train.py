"""Training and evaluation loops: float pre-training and quantization-aware fine-tuning (SGD).

Place in the flow: ``qat train`` (qat/commands/train.py) parses flags into a :class:`TrainConfig`
and calls :func:`fit`, which writes ``checkpoint.pt`` (every epoch), ``best.pt`` (the epoch of best
validation top-1) and ``metrics.csv`` into the run directory; ``qat eval`` and ``qat export`` use
:func:`evaluate` and :func:`resolve_device`.

Recipe: SGD with momentum and weight decay (quantizer parameters such as PACT's alpha and
LSQ's step get no weight decay; their own ``regularization()`` terms are added to the loss),
a per-epoch cosine or multi-step learning-rate schedule, BN in train mode while training.
Model selection: after each epoch the model is evaluated on the validation images (held out of
the training split, :func:`qat.data.split_validation`) and on the test split; ``best.pt`` is the
epoch of best validation top-1, and the test figures are only reported. A run without a
validation split (``--val-fraction 0``, and runs from before the split existed) selects on the
test split, which makes its best top-1 optimistic.
Each epoch reseeds the shuffling and the augmentation from ``seed + epoch``, so a run resumed
from ``checkpoint.pt`` continues exactly as the uninterrupted run would have (on the same device,
with the same number of processes).

Under ``torchrun`` (:mod:`qat.distributed`) :func:`fit` trains the model in
DistributedDataParallel: each process takes its shard of every epoch's shuffled images, the
training, validation and test sums are added over the processes, and rank 0 alone saves and logs.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from hwsim.atomic import write_atomic
from hwsim.errors import UserError
from hwsim.flags import MAX_BATCH, MAX_WORKERS, SEED_RANGE, check_float, check_int
from qat.distributed import Context
from qat.quantizers import Quantizer, regularization_loss

SCHEDULES: tuple[str, ...] = ("cosine", "multistep")
MAX_EPOCHS = 1_000_000
METRIC_FIELDS: tuple[str, ...] = (
    "epoch",
    "lr",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
    "seconds",
)
# The columns of runs without a validation split (rows of older checkpoints have only these).
VALIDATION_FIELDS: tuple[str, ...] = ("val_loss", "val_acc")
REQUIRED_METRIC_FIELDS: tuple[str, ...] = tuple(f for f in METRIC_FIELDS if f not in VALIDATION_FIELDS)


def resolve_device(name: str = "auto", index: int | None = None) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cuda`` without a GPU is a user error.

    ``index`` (a torchrun process's ``LOCAL_RANK``) picks the GPU ``cuda:index``; it must exist."""
    if name not in ("auto", "cpu", "cuda"):
        raise UserError(f"--device {name!r} is not one of auto, cpu, cuda")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available to PyTorch; use --device cpu or auto")
    if index is None:
        return torch.device("cuda")
    count = torch.cuda.device_count()
    if index >= count:
        raise UserError(
            f"LOCAL_RANK={index} needs GPU cuda:{index}, but PyTorch sees {count} CUDA device(s) here; "
            f"start at most {count} processes per node (torchrun --nproc-per-node {count}), "
            "or pass --device cpu"
        )
    return torch.device("cuda", index)


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one run (stored in the checkpoint as ``train_args``)."""

    epochs: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Literal["cosine", "multistep"] = "cosine"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    batch_size: int = 128
    seed: int = 0
    workers: int = 0
    val_fraction: float = 0.1  # qat.data.VALIDATION_FRACTION; 0: select best.pt on the test split

    def __post_init__(self) -> None:
        check_int("--epochs", self.epochs, 1, MAX_EPOCHS)
        check_float("--lr", self.lr, 0.0, lo_open=True)
        check_float("--momentum", self.momentum, 0.0, 1.0, hi_open=True)
        check_float("--weight-decay", self.weight_decay, 0.0, 1.0)
        check_float("--gamma", self.gamma, 0.0, 1.0, lo_open=True)
        check_int("--batch-size", self.batch_size, 1, MAX_BATCH)
        check_int("--seed", self.seed, *SEED_RANGE)
        check_int("--workers", self.workers, 0, MAX_WORKERS)
        check_float("--val-fraction", self.val_fraction, 0.0, 1.0, hi_open=True)
        if self.schedule not in SCHEDULES:
            raise UserError(f"--schedule {self.schedule!r} is not one of {list(SCHEDULES)}")
        if not isinstance(self.milestones, tuple):
            raise UserError(f"--milestones {self.milestones!r}: expected a tuple of epochs")
        for m in self.milestones:
            check_int("--milestones", m, 1, self.epochs)
        if list(self.milestones) != sorted(set(self.milestones)):
            raise UserError(
                f"--milestones {list(self.milestones)} must be increasing epochs in 1..{self.epochs}"
            )

    def effective_milestones(self) -> tuple[int, ...]:
        """The multi-step milestones: as given, else 50% and 75% of the epochs."""
        if self.milestones:
            return self.milestones
        return tuple(sorted({max(1, self.epochs // 2), max(1, (3 * self.epochs) // 4)}))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """The config of :meth:`to_dict`; a dict with other keys or wrongly typed values is a UserError."""
        if not isinstance(d, dict):
            raise UserError(f"train_args: expected a dict of TrainConfig fields, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in d if k not in known)
        missing = sorted(k for k in ("epochs", "lr") if k not in d)
        if unknown or missing:
            raise UserError(
                f"train_args: unknown field(s) {unknown[:5]}, missing {missing}; expected the fields "
                f"{sorted(known)}"
            )
        d = dict(d)
        d.setdefault("val_fraction", 0.0)  # runs from before the validation split selected on test
        milestones = d.get("milestones", ())
        if not isinstance(milestones, (list, tuple)):
            raise UserError(f"train_args: milestones {milestones!r:.40}: expected a list of epochs")
        d["milestones"] = tuple(milestones)
        return cls(**d)


@dataclass
class EvalResult:
    """Mean loss and top-1 accuracy (in %) over ``images`` images."""

    loss: float
    top1: float
    images: int
    predictions: torch.Tensor | None = field(default=None, repr=False)


def quantizer_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters owned by quantizers (PACT alpha, LSQ step sizes, ...)."""
    params: dict[int, nn.Parameter] = {}
    for module in model.modules():
        if isinstance(module, Quantizer):
            for p in module.parameters():
                params[id(p)] = p
    return list(params.values())


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD; weight decay on the network's weights, none on quantizer parameters."""
    qparams = {id(p) for p in quantizer_parameters(model)}
    decay = [p for p in model.parameters() if p.requires_grad and id(p) not in qparams]
    no_decay = [p for p in model.parameters() if p.requires_grad and id(p) in qparams]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch schedule: cosine to 0 over ``epochs``, or x``gamma`` at each milestone."""
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    return torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(cfg.effective_milestones()), gamma=cfg.gamma
    )


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    description: str = "train",
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: bool = True,
) -> tuple[float, float]:
    """One pass over ``loader`` in train mode; returns ``(mean loss, top-1 %)`` of the training batches.

    ``reduce`` sums ``[loss sum, correct, images]`` over processes (:meth:`Context.sum`), so the
    result is that of every process's batches; ``progress`` False hides the progress bar."""
    model.train()
    criterion = nn.CrossEntropyLoss()
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    non_blocking = device.type == "cuda"
    shown = None if progress else True  # tqdm: None = only on a terminal
    with tqdm(loader, desc=description, leave=False, dynamic_ncols=True, disable=shown) as bar:
        for images, labels in bar:
            images = images.to(device, non_blocking=non_blocking)
            labels = labels.to(device, non_blocking=non_blocking)
            logits = model(images)
            loss = criterion(logits, labels)
            reg = regularization_loss(model)
            objective = loss if reg is None else loss + reg
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            optimizer.step()
            n = labels.shape[0]
            total_loss += loss.detach().double() * n
            correct += (logits.detach().argmax(dim=1) == labels).sum()
            seen += n
    total_loss, correct, seen = _summed(total_loss, correct, seen, reduce)
    mean_loss = float(total_loss.item() / max(seen, 1))
    if not math.isfinite(mean_loss):
        raise UserError(
            f"the training loss became {mean_loss} in {description}; lower --lr "
            "(QAT fine-tuning from a float checkpoint usually needs 0.01 or less)"
        )
    return mean_loss, 100.0 * float(correct.item()) / max(seen, 1)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    keep_predictions: bool = False,
    description: str = "eval",
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: bool = True,
) -> EvalResult:
    """Mean cross-entropy and top-1 (%) in eval mode; optionally the predictions in loader order.

    With ``reduce`` (:meth:`Context.sum`) each process evaluates its shard of the images and the
    result is that of all of them (``images`` counts each once); predictions are not kept then."""
    if keep_predictions and reduce is not None:
        raise ValueError("evaluate: keep_predictions holds one process's images; not with reduce")
    model.eval()
    criterion = nn.CrossEntropyLoss(reduction="sum")
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    preds: list[torch.Tensor] = []
    shown = None if progress else True
    with tqdm(loader, desc=description, leave=False, dynamic_ncols=True, disable=shown) as bar:
        for images, labels in bar:
            images = images.to(device)
            labels = labels.to(device)
            logits = model(images)
            total_loss += criterion(logits, labels).double()
            pred = logits.argmax(dim=1)
            correct += (pred == labels).sum()
            seen += labels.shape[0]
            if keep_predictions:
                preds.append(pred.cpu())
    total_loss, correct, seen = _summed(total_loss, correct, seen, reduce)
    if seen == 0:
        raise UserError("evaluation got no images")
    return EvalResult(
        loss=float(total_loss.item() / seen),
        top1=100.0 * float(correct.item()) / seen,
        images=seen,
        predictions=torch.cat(preds) if keep_predictions else None,
    )


def _summed(
    loss: torch.Tensor,
    correct: torch.Tensor,
    seen: int,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(loss sum, correct, images)`` added over the processes by ``reduce`` (as they are without)."""
    if reduce is None:
        return loss, correct, seen
    images = torch.tensor(seen, dtype=torch.float64, device=loss.device)
    sums = reduce(torch.stack([loss, correct.double(), images]))
    return sums[0], sums[1].round().long(), int(sums[2].round().item())


def write_metrics_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """All epochs so far, written to a temporary file and renamed (never half-written)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(METRIC_FIELDS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in METRIC_FIELDS})  # "": no validation split
    write_atomic(path, buf.getvalue().encode())


@dataclass
class RunState:
    """What :func:`fit` carries between epochs (and restores on resume)."""

    epoch: int = 0  # completed epochs
    best_top1: float = -1.0  # best.pt's validation top-1 (test top-1 without a validation split)
    metrics: list[dict[str, Any]] = field(default_factory=list)


def seed_epoch(loader: DataLoader, seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> None:
    """Make epoch ``epoch``'s shuffling and augmentation a function of ``(seed, epoch)`` only.

    With several processes the shuffle is shared (a :class:`DistributedSampler` seeded with ``seed``
    at epoch ``epoch``; each rank takes its share) and the augmentation differs per ``rank``."""
    stream = seed * 100_003 + epoch
    if world_size > 1:
        stream = (stream * world_size + rank) % (1 << 64)
    torch.manual_seed(stream)
    if loader.generator is not None:
        loader.generator.manual_seed(stream)
    sampler = getattr(loader.sampler, "sampler", None)  # the indices under the BatchSampler
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader | None,
    test_loader: DataLoader,
    cfg: TrainConfig,
    device: torch.device,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: RunState,
    save: Callable[[RunState, bool], None],
    log: Callable[[str], None] = print,
    context: Context | None = None,
) -> RunState:
    """Train from ``state.epoch`` to ``cfg.epochs``; after each epoch call ``save(state, is_best)``.

    ``is_best``: the best validation top-1 so far (``val_loader`` None: the best test top-1).

    With a distributed ``context`` (its loaders built with ``shard=context.shard``) the model
    trains in DistributedDataParallel, every rank gets rank 0's model before the test, the
    metrics are those of all processes, and only rank 0 calls ``save`` and ``log``."""
    ctx = context or Context(device=device)
    net = ctx.wrap(model, optimizer)
    reduce = ctx.sum if ctx.distributed else None
    for epoch in range(state.epoch + 1, cfg.epochs + 1):
        start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        seed_epoch(train_loader, cfg.seed, epoch, ctx.rank, ctx.world_size)
        train_loss, train_acc = train_one_epoch(
            net,
            train_loader,
            optimizer,
            device,
            description=f"epoch {epoch}/{cfg.epochs}",
            reduce=reduce,
            progress=ctx.is_main,
        )
        scheduler.step()
        ctx.sync_model(model)
        val = None
        if val_loader is not None:
            val = evaluate(
                model,
                val_loader,
                device,
                description=f"validation {epoch}/{cfg.epochs}",
                reduce=reduce,
                progress=ctx.is_main,
            )
        result = evaluate(
            model,
            test_loader,
            device,
            description=f"test {epoch}/{cfg.epochs}",
            reduce=reduce,
            progress=ctx.is_main,
        )
        row: dict[str, Any] = {
            "epoch": epoch,
            "lr": lr,
            "train_loss": round(train_loss, 6),
            "train_acc": round(train_acc, 4),
        }
        if val is not None:
            row.update(val_loss=round(val.loss, 6), val_acc=round(val.top1, 4))
        row.update(
            test_loss=round(result.loss, 6),
            test_acc=round(result.top1, 4),
            seconds=round(time.perf_counter() - start, 3),
        )
        state.metrics.append(row)
        state.epoch = epoch
        selected = (val or result).top1
        is_best = selected > state.best_top1
        if is_best:
            state.best_top1 = selected
        if not ctx.is_main:
            continue
        save(state, is_best)
        shown_val = "" if val is None else f"val loss {val.loss:.4f} acc {val.top1:.2f}%  "
        log(
            f"epoch {epoch}/{cfg.epochs}  lr {lr:.5g}  train loss {train_loss:.4f} acc {train_acc:.2f}%  "
            f"{shown_val}test loss {result.loss:.4f} acc {result.top1:.2f}%  ({row['seconds']:.1f} s)"
            + ("  *best" if is_best else "")
        )
    return state
