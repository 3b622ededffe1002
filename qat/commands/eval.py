"""`qat eval`: top-1 accuracy and loss of a checkpoint on CIFAR-10 (or generated images), as JSON.

Place in the flow: after ``qat train``, beside ``qat export``; the reference accuracy that the
integer emulator's accuracy is compared with.

    qat eval runs/pact4/best.pt --data cifar-10-batches-py
    {"checkpoint": "runs/pact4/best.pt", "model": "resnet20", "split": "test", "top1": 90.12, ...}
"""

from __future__ import annotations

import argparse
import json

from hwsim.flags import batch_int, workers_int
from qat.checkpoint import load_model
from qat.data import add_data_arguments, make_loader, resolve_data
from qat.train import evaluate, resolve_device

HELP = "evaluate a checkpoint: top-1 and loss on the CIFAR-10 test set, printed as one JSON object"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT", help="checkpoint.pt or best.pt written by `qat train`")
    parser.add_argument(
        "--split", choices=("test", "train"), default="test", help="which split (default: test)"
    )
    parser.add_argument("--batch-size", type=batch_int, default=256, help="batch size (default: 256)")
    parser.add_argument(
        "--workers", type=workers_int, default=0, help="data-loader worker processes (default: 0)"
    )
    add_data_arguments(parser)


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    source = resolve_data(args)
    model, meta = load_model(args.checkpoint, device)
    loader = make_loader(
        source,
        args.split,
        args.batch_size,
        train=False,
        normalization=meta["normalization_obj"],
        workers=args.workers,
    )
    result = evaluate(model, loader, device)
    print(
        json.dumps(
            {
                "checkpoint": args.checkpoint,
                "model": meta["model"],
                "split": args.split,
                "data": source.describe(),
                "images": result.images,
                "top1": round(result.top1, 4),
                "loss": round(result.loss, 6),
                "device": device.type,
            }
        )
    )
    return 0
