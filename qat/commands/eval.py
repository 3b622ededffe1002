"""`qat eval`: top-1 accuracy and loss of a checkpoint on CIFAR-10 (or generated images), as JSON.

Place in the flow: after ``qat train``, beside ``qat export``; the reference accuracy that the
integer emulator's accuracy is compared with.

    qat eval runs/pact4/best.pt --data cifar-10-batches-py
    {"checkpoint": "runs/pact4/best.pt", "model": "resnet20", "split": "test", "top1": 90.12, ...}
"""

from __future__ import annotations

import argparse
import json

from hwsim.errors import UserError
from hwsim.flags import batch_int, workers_int
from qat.checkpoint import load_model
from qat.data import add_data_arguments, loader_from_arrays, make_loader, resolve_data, split_validation
from qat.train import TrainConfig, evaluate, resolve_device

HELP = "evaluate a checkpoint: top-1 and loss on the CIFAR-10 test set, printed as one JSON object"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT", help="checkpoint.pt or best.pt written by `qat train`")
    parser.add_argument(
        "--split",
        choices=("test", "train", "validation"),
        default="test",
        help="which split (default: test); validation: the images the run held out of the training "
        "split and selected best.pt on (its train_args.val_fraction), train: the whole training split",
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
    common = {"normalization": meta["normalization_obj"], "workers": args.workers}
    if args.split == "validation":
        fraction = TrainConfig.from_dict(meta["train_args"]).val_fraction if "train_args" in meta else 0.0
        if fraction == 0:
            raise UserError(
                f"{args.checkpoint}: its run held out no validation images (val_fraction 0, or a run "
                "from before the validation split); evaluate --split test or --split train instead"
            )
        images, labels = source.load("train")
        _train, val = split_validation(labels, fraction)
        loader = loader_from_arrays(images[val], labels[val], args.batch_size, train=False, **common)
    else:
        loader = make_loader(source, args.split, args.batch_size, train=False, **common)
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
