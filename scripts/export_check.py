#!/usr/bin/env python3
"""The export acceptance experiment: train, export, emulate and compare ResNet20 for six methods.

Place in the flow: drives the real command lines end to end (``qat train`` -> ``qat train --init``
-> ``qat export --data`` -> ``hwsim compare --data``) on a CIFAR-10 directory (``--data`` or
``$CIFAR10_DIR``; the project's subset has 1,017 test images) and prints one table row per method:

* top-1 of the PyTorch QAT model and of the emulator on the whole test split, and their agreement;
* propagated (``hwsim compare``: the emulator runs on its own codes, differences propagate): the
  fraction of requant-output elements of the reference batch within 1 LSB, and the max error;
* isolated (``hwsim compare`` again: every layer fed the PyTorch model's own input codes): the
  same two numbers, i.e. what the bundle's constants alone do, and the layer with the most mismatches.

    .venv/bin/python scripts/export_check.py --out runs/export_check [--init runs/pretrained/float/best.pt]

``--init`` starts every method's QAT from that float checkpoint instead of pre-training one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
METHODS: dict[str, str] = {
    "DoReFa a8w8": "configs/quant/dorefa_a8w8.yaml",
    "DoReFa a4w4": "configs/quant/dorefa_a4w4.yaml",
    "PACT a4w4": "configs/quant/pact_a4w4.yaml",
    "XNOR": "configs/quant/xnor.yaml",
    "ternary (a8)": "configs/quant/ternary.yaml",
    "LSQ a2w2": "configs/quant/lsq_a2w2.yaml",
}


def sh(*args: str) -> str:
    """Run a project command line; echo it; fail loudly with its output."""
    print("$", " ".join(args), flush=True)
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"command failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def lsb_stats(diffs: list[np.ndarray]) -> tuple[float, int, dict[int, int]]:
    """Fraction of elements with |err| <= 1 LSB, the max |err|, and the |err| histogram."""
    flat = np.concatenate([np.abs(d).reshape(-1) for d in diffs])
    values, counts = np.unique(flat, return_counts=True)
    return (
        float(np.mean(flat <= 1)),
        int(flat.max()),
        dict(zip(values.tolist(), counts.tolist(), strict=True)),
    )


def check(report_dir: Path) -> dict[str, object]:
    """The propagated and isolated numbers of ``hwsim compare``'s report.json."""
    doc = json.loads((report_dir / "report.json").read_text())
    totals, layers = doc["totals"], [r for r in doc["layers"] if r.get("isolated_mismatch_rate") is not None]
    worst = max(layers, key=lambda r: float(r["isolated_mismatch_rate"]))
    elements = sum(int(r["elements"]) for r in layers)
    beyond = sum(round((1.0 - float(r["isolated_within_1lsb"])) * int(r["elements"])) for r in layers)
    return {
        "e2e": (totals["within_1lsb"], totals["max_abs_err_lsb"]),
        "isolated": (totals["isolated_within_1lsb"], totals["isolated_max_abs_err_lsb"]),
        "isolated_beyond_1lsb": (beyond, elements),
        "first_isolated_divergent_layer": totals["first_isolated_divergent_layer"],
        "worst_isolated_layer": worst["name"],
        "worst_isolated_mismatch": float(worst["isolated_mismatch_rate"]),
        "per_layer": {
            r["name"]: (
                r["isolated_mismatch_rate"],
                r["isolated_max_abs_err_lsb"],
                r["mismatch_rate"],
                r["max_abs_err_lsb"],
            )
            for r in layers
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default=os.environ.get("CIFAR10_DIR", str(REPO.parent / "shared/data/cifar-10-batches-py"))
    )
    parser.add_argument("--out", type=Path, default=REPO / "runs/export_check")
    parser.add_argument("--float-epochs", type=int, default=4)
    parser.add_argument("--qat-epochs", type=int, default=1)
    parser.add_argument(
        "--init",
        type=Path,
        default=None,
        metavar="CKPT",
        help="float checkpoint to start QAT from (skips pre-training)",
    )
    parser.add_argument(
        "--methods", nargs="*", default=list(METHODS), help="subset of: " + ", ".join(METHODS)
    )
    args = parser.parse_args()
    qat, hwsim = str(REPO / ".venv/bin/qat"), str(REPO / ".venv/bin/hwsim")
    out = args.out.resolve()
    start = time.time()
    float_ckpt = args.init.resolve() if args.init is not None else out / "float/best.pt"
    if args.init is not None and not float_ckpt.is_file():
        sys.exit(f"--init {args.init}: no such checkpoint")
    if not float_ckpt.is_file():
        sh(
            qat,
            "train",
            "--model",
            "resnet20",
            "--epochs",
            str(args.float_epochs),
            "--lr",
            "0.1",
            "--out",
            str(out / "float"),
            "--data",
            args.data,
        )
    print(f"float pre-training done ({time.time() - start:.0f} s)", flush=True)
    rows = []
    for label in args.methods:
        tag = label.split()[0].lower() + "_" + "".join(c for c in label.split()[-1] if c.isalnum())
        run_dir, bundle_dir, report_dir = out / tag, out / f"{tag}.bundle", out / f"{tag}.report"
        sh(
            qat,
            "train",
            "--model",
            "resnet20",
            "--quant",
            METHODS[label],
            "--init",
            str(float_ckpt),
            "--epochs",
            str(args.qat_epochs),
            "--out",
            str(run_dir),
            "--data",
            args.data,
        )
        print(
            sh(
                qat, "export", str(run_dir / "best.pt"), "--out", str(bundle_dir), "--data", args.data
            ).splitlines()[-1]
        )
        print(
            sh(
                hwsim, "compare", str(bundle_dir), "--report", str(report_dir), "--data", args.data
            ).splitlines()[-3]
        )
        totals = json.loads((report_dir / "report.json").read_text())["totals"]
        stats = check(report_dir)
        rows.append((label, totals, stats))
        print(f"{label}: {stats} ({time.time() - start:.0f} s)", flush=True)

    print(
        "\n| method | top-1 PyTorch | top-1 emulator | agreement (test set) | propagated: within 1 LSB | "
        "propagated: max err | isolated: within 1 LSB | isolated: max err | "
        "isolated: worst layer (mismatch) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for label, t, s in rows:
        e2e, iso = s["e2e"], s["isolated"]
        print(
            f"| {label} | {100 * t['top1_reference']:.2f}% | {100 * t['top1_emulator']:.2f}% | "
            f"{100 * t['top1_agreement']:.2f}% ({t.get('test_set_images', '?')} images) | "
            f"{100 * e2e[0]:.3f}% | {e2e[1]} | {100 * iso[0]:.3f}% | {iso[1]} | "
            f"{s['worst_isolated_layer']} ({100 * s['worst_isolated_mismatch']:.2f}%) |"
        )
    for label, _t, s in rows:
        print(
            f"{label}: isolated > 1 LSB {s['isolated_beyond_1lsb']}, "
            f"first {s['first_isolated_divergent_layer']}"
        )
        print(
            "  per layer (isolated mismatch, isolated max, propagated mismatch, propagated max): "
            f"{s['per_layer']}"
        )
    print(f"total {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
