"""`qat train`: float pre-training, or quantization-aware fine-tuning from a float checkpoint.

Place in the flow: the first step. Writes ``OUT/checkpoint.pt`` (every epoch; what
``--resume`` reads), ``OUT/best.pt`` (the model at the best validation top-1, without optimizer
state; the validation images are ``--val-fraction`` of the training split, held out of training)
and ``OUT/metrics.csv``; ``qat eval`` and ``qat export`` read the checkpoints.

    qat train --model resnet20 --epochs 200 --out runs/float --data cifar-10-batches-py
    qat train --model resnet20 --quant configs/quant/pact_a4w4.yaml --init runs/float/best.pt \\
              --epochs 60 --out runs/pact4 --data cifar-10-batches-py
    qat train --out runs/pact4 --resume --epochs 60 --data cifar-10-batches-py

Under ``torchrun`` (``torchrun --nproc-per-node N -m qat train ...``, no extra flag) every
process trains a replica in DistributedDataParallel (:mod:`qat.distributed`); ``--batch-size``
is per process, the learning rate is not scaled, rank 0 alone writes and prints, and the files
are those of a single-process run.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hwsim.errors import UserError
from hwsim.flags import batch_int, finite_float, int_in, seed_int, workers_int
from hwsim.output import TRAINING_RUN, Output, claim, prepare_directory, writing_into
from qat.checkpoint import (
    check_resumable,
    load_matching_weights,
    load_training_state,
    make_payload,
    model_from_payload,
    read_checkpoint,
    save_checkpoint,
)
from qat.config import QuantConfig, load_config
from qat.data import (
    VALIDATION_FRACTION,
    DataSource,
    Normalization,
    add_data_arguments,
    loader_from_arrays,
    make_loader,
    resolve_data,
    split_validation,
)
from qat.distributed import Context, launch_from_environment, started
from qat.models import MODEL_NAMES, build_model
from qat.train import (
    MAX_EPOCHS,
    SCHEDULES,
    RunState,
    TrainConfig,
    fit,
    make_optimizer,
    make_scheduler,
    resolve_device,
    write_metrics_csv,
)

HELP = "train a CIFAR-10 model: float pre-training, or QAT fine-tuning from a float checkpoint (--init)"
DEFAULT_MODEL = "resnet20"
FLOAT_LR = 0.1
FINETUNE_LR = 0.01


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", choices=MODEL_NAMES, default=None, help=f"network (default: {DEFAULT_MODEL})"
    )
    parser.add_argument(
        "--quant", metavar="CFG.yaml", help="quantization config (configs/quant/); default: float"
    )
    parser.add_argument(
        "--init", metavar="CKPT", help="start from this checkpoint's weights (e.g. the float best.pt)"
    )
    parser.add_argument(
        "--epochs",
        type=int_in(1, MAX_EPOCHS),
        required=True,
        help="number of epochs (the total, also with --resume)",
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="run directory for checkpoints and metrics.csv"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its checkpoint.pt"
    )
    parser.add_argument(
        "--lr",
        type=finite_float(0.0, lo_open=True),
        default=None,
        help=f"initial learning rate (default: {FLOAT_LR}, or {FINETUNE_LR} with --init)",
    )
    parser.add_argument(
        "--momentum",
        type=finite_float(0.0, 1.0, hi_open=True),
        default=0.9,
        help="SGD momentum (default: 0.9)",
    )
    parser.add_argument(
        "--weight-decay", type=finite_float(0.0, 1.0), default=5e-4, help="SGD weight decay (default: 5e-4)"
    )
    parser.add_argument("--schedule", choices=SCHEDULES, default="cosine", help="learning-rate schedule")
    parser.add_argument(
        "--milestones",
        type=int_in(1, MAX_EPOCHS),
        nargs="+",
        default=(),
        metavar="EPOCH",
        help="multistep: epochs where the lr is multiplied by --gamma (default: 50%% and 75%%)",
    )
    parser.add_argument(
        "--gamma",
        type=finite_float(0.0, 1.0, lo_open=True),
        default=0.1,
        help="multistep decay factor (default: 0.1)",
    )
    parser.add_argument(
        "--batch-size",
        type=batch_int,
        default=128,
        help="images per step and process (default: 128); under torchrun with N processes a step "
        "takes N x this many, and --lr is not scaled",
    )
    parser.add_argument(
        "--seed", type=seed_int, default=0, help="seed of initialization, shuffling, augmentation"
    )
    parser.add_argument(
        "--val-fraction",
        type=finite_float(0.0, 1.0, hi_open=True),
        default=VALIDATION_FRACTION,
        metavar="F",
        help=f"share of the training images held out (stratified, fixed) to select best.pt on "
        f"(default: {VALIDATION_FRACTION}); 0: no validation split, best.pt then follows the test "
        "top-1 (optimistic)",
    )
    parser.add_argument(
        "--workers", type=workers_int, default=0, help="data-loader worker processes (default: 0)"
    )
    add_data_arguments(parser)


@dataclass
class Job:
    """Everything a run needs once the flags, data and checkpoint have been checked."""

    model: torch.nn.Module
    cfg: TrainConfig
    state: RunState
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    train_loader: torch.utils.data.DataLoader
    val_loader: torch.utils.data.DataLoader | None
    test_loader: torch.utils.data.DataLoader
    source: DataSource
    normalization: Normalization
    quant_source: dict | None
    init: str | None
    out: Path
    run_dir: Output | None  # rank 0's claim on --out; None on the other ranks


def run(args: argparse.Namespace) -> int:
    launch = launch_from_environment()
    device = resolve_device(args.device, None if launch is None else launch.local_rank)
    with started(launch, device) as ctx:
        with ctx.agreeing():  # no rank trains while another has failed its checks
            job = prepare(args, ctx)
        if job is None:
            return 0
        with ctx.agreeing():  # rank 0 creates --out once every rank is ready (and may fail to)
            if job.run_dir is not None:
                prepare_directory(job.run_dir)
        with ctx.reported_by_main():
            state = fit(
                job.model,
                job.train_loader,
                job.val_loader,
                job.test_loader,
                job.cfg,
                device,
                job.optimizer,
                job.scheduler,
                job.state,
                lambda st, is_best: save(job, st, is_best),
                context=ctx,
            )
        ctx.log(
            json.dumps(
                {
                    "out": str(job.out),
                    "epochs": state.epoch,
                    "best_top1": state.best_top1,
                    "selected_on": "validation" if job.val_loader is not None else "test",
                    "best_test_top1": best_test_top1(state),
                    "last_top1": state.metrics[-1]["test_acc"],
                    "device": device.type,
                }
            )
        )
    return 0


def prepare(args: argparse.Namespace, ctx: Context) -> Job | None:
    """Check the flags, read the data and the checkpoints, build model, optimizer and loaders (on
    every rank); rank 0 claims ``--out``. None when a resumed run has no epoch left."""
    device = ctx.device
    source = resolve_data(args)
    out = Path(args.out)
    ckpt_path = out / "checkpoint.pt"
    if args.resume and not ckpt_path.is_file():
        raise UserError(
            f"--resume: {ckpt_path} does not exist; there is no run to continue in {out}; pass the "
            "--out of the run (the directory holding its checkpoint.pt), or start a new run without --resume"
        )
    run_dir = (
        claim(out, TRAINING_RUN, inputs=(args.init, args.quant, source.directory)) if ctx.is_main else None
    )

    if args.resume:
        if args.quant or args.init:
            raise UserError(
                "--resume takes the model and quantization from OUT/checkpoint.pt; drop --quant/--init"
            )
        payload = read_checkpoint(ckpt_path)
        if args.model is not None and args.model != payload["model"]:
            raise UserError(f"--resume: {ckpt_path} is a {payload['model']} run, not --model {args.model}")
        cfg = check_resumable(payload, ckpt_path)
        model = model_from_payload(payload, str(ckpt_path))
        if args.epochs != cfg.epochs:
            raise UserError(
                f"--resume: the run was started with --epochs {cfg.epochs} (its {cfg.schedule} schedule "
                f"spans them); pass --epochs {cfg.epochs}"
            )
        normalization = Normalization.from_dict(payload["normalization"])
        quant_source = payload.get("quant_source")
        init = payload.get("init")
        state = RunState(payload["epoch"], payload["best_top1"], list(payload["metrics"]))
        if state.epoch >= cfg.epochs:
            ctx.log(f"{ckpt_path}: all {cfg.epochs} epochs are done; nothing to resume")
            return None
    else:
        if ckpt_path.exists():
            raise UserError(
                f"{ckpt_path} exists; pass --resume to continue that run, or choose another --out"
            )
        qconfig = load_config(args.quant) if args.quant else QuantConfig()
        cfg = TrainConfig(
            epochs=args.epochs,
            lr=args.lr if args.lr is not None else (FINETUNE_LR if args.init else FLOAT_LR),
            momentum=args.momentum,
            weight_decay=args.weight_decay,
            schedule=args.schedule,
            milestones=tuple(args.milestones),
            gamma=args.gamma,
            batch_size=args.batch_size,
            seed=args.seed,
            workers=args.workers,
            val_fraction=args.val_fraction,
        )
        normalization = Normalization()
        torch.manual_seed(cfg.seed)
        model = build_model(args.model or DEFAULT_MODEL, qconfig, normalization=normalization)
        quant_source = qconfig.to_dict() if args.quant else None
        init = str(args.init) if args.init else None
        if args.init:
            loaded, kept = load_matching_weights(model, args.init)
            ctx.log(
                f"--init {args.init}: loaded {len(loaded)} tensors; initialized here: {len(kept)} "
                f"(quantizer state{': ' + ', '.join(kept[:4]) + ' ...' if kept else ''})"
            )
        state = RunState()

    model.to(device)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    if args.resume:
        load_training_state(optimizer, scheduler, payload, ckpt_path)

    pin = device.type == "cuda"
    images, labels = source.load("train")
    train_idx, val_idx = split_validation(labels, cfg.val_fraction)
    common: dict[str, Any] = {
        "normalization": normalization,
        "workers": cfg.workers,
        "pin_memory": pin,
        "shard": ctx.shard,
    }
    train_loader = loader_from_arrays(
        images[train_idx], labels[train_idx], cfg.batch_size, train=True, seed=cfg.seed, **common
    )
    val_loader = (
        loader_from_arrays(images[val_idx], labels[val_idx], cfg.batch_size, train=False, **common)
        if val_idx.size
        else None
    )
    test_loader = make_loader(source, "test", cfg.batch_size, train=False, **common)
    processes = (
        f" x {ctx.world_size} processes ({ctx.backend}, batch {cfg.batch_size} per process)"
        if ctx.distributed
        else ""
    )
    ctx.log(
        f"training {model.model_name} on {source.describe()}, {device.type}{processes}: "
        f"{len(train_loader.dataset)} train / {len(val_idx)} validation / {len(test_loader.dataset)} "
        f"test images{'' if val_loader else ' (no validation split: best.pt follows the test top-1)'}, "
        f"epochs {state.epoch + 1}..{cfg.epochs}, lr {cfg.lr} ({cfg.schedule}), out {out}"
    )
    return Job(
        model=model,
        cfg=cfg,
        state=state,
        optimizer=optimizer,
        scheduler=scheduler,
        train_loader=train_loader,
        val_loader=val_loader,
        test_loader=test_loader,
        source=source,
        normalization=normalization,
        quant_source=quant_source,
        init=init,
        out=out,
        run_dir=run_dir,
    )


def best_test_top1(state: RunState) -> float | None:
    """The test top-1 of ``best.pt``'s epoch: the first to reach the best selection score (as fit keeps)."""
    column = "val_acc" if state.metrics and "val_acc" in state.metrics[-1] else "test_acc"
    rows = [r for r in state.metrics if r.get(column) == round(state.best_top1, 4)]
    return rows[0]["test_acc"] if rows else None


def save(job: Job, st: RunState, is_best: bool) -> None:
    """Rank 0's files after an epoch: ``checkpoint.pt``, ``best.pt`` when ``is_best``, ``metrics.csv``."""
    assert job.run_dir is not None, "only rank 0 saves"
    payload = make_payload(
        job.model,
        normalization=job.normalization,
        quant_source=job.quant_source,
        epoch=st.epoch,
        best_top1=st.best_top1,
        metrics=st.metrics,
        train_args=job.cfg.to_dict(),
        optimizer=job.optimizer,
        scheduler=job.scheduler,
        data=job.source.describe(),
        init=job.init,
    )
    with writing_into(job.run_dir):
        save_checkpoint(job.out / "checkpoint.pt", payload)
        if is_best:  # the model only: --resume reads checkpoint.pt, so best.pt leaves out the optimizer
            save_checkpoint(job.out / "best.pt", {**payload, "optimizer": None, "scheduler": None})
        write_metrics_csv(job.out / "metrics.csv", st.metrics)
