#!/usr/bin/env python3
"""The export acceptance experiment: train, export, emulate and compare ResNet20 for six methods.

Place in the flow: drives the real command lines end to end (``qat train`` -> ``qat train --init``
-> ``qat export --data`` -> ``hwsim compare --data``) on a CIFAR-10 directory (``--data`` or
``$CIFAR10_DIR``; the project's subset has 1,017 test images) and prints one table row per method:

* top-1 of the PyTorch QAT model and of the emulator on the whole test split, and their agreement;
* end to end (``hwsim compare``: the emulator runs on its own codes, differences propagate): the
  fraction of requant-output elements of the reference batch within 1 LSB, and the max error;
* isolated (``qat.export.isolated_codes``: every node fed the PyTorch model's own input codes):
  the same two numbers, i.e. what the bundle's constants alone do.

    .venv/bin/python scripts/export_check.py --out runs/export_check
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

from hwsim.emulator import emulate
from hwsim.ir import RequantNode, load_bundle
from qat.export import isolated_codes

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


def check(bundle_dir: Path) -> dict[str, object]:
    bundle = load_bundle(bundle_dir)
    ref = bundle.reference
    assert ref is not None
    names = [n.output for n in bundle.nodes if isinstance(n, RequantNode)]
    run = emulate(bundle, ref.input_codes)
    e2e = lsb_stats([run.tensors[t] - ref.codes[t] for t in names])
    alone = isolated_codes(bundle)
    iso = lsb_stats([alone[t] - ref.codes[t] for t in names])
    worst = max(names, key=lambda t: float(np.mean(alone[t] != ref.codes[t])))
    return {
        "e2e": e2e,
        "isolated": iso,
        "worst_isolated_layer": worst,
        "worst_isolated_mismatch": float(np.mean(alone[worst] != ref.codes[worst])),
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
        "--methods", nargs="*", default=list(METHODS), help="subset of: " + ", ".join(METHODS)
    )
    args = parser.parse_args()
    qat, hwsim = str(REPO / ".venv/bin/qat"), str(REPO / ".venv/bin/hwsim")
    out = args.out.resolve()
    start = time.time()
    float_ckpt = out / "float/best.pt"
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
        stats = check(bundle_dir)
        rows.append((label, totals, stats))
        print(f"{label}: {stats} ({time.time() - start:.0f} s)", flush=True)

    print(
        "\n| method | top-1 PyTorch | top-1 emulator | agreement (test set) | e2e: elements within 1 LSB | "
        "e2e: max err | isolated: within 1 LSB | isolated: max err | isolated: worst layer (mismatch) |"
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
        print(f"{label}: |err| histogram end to end {s['e2e'][2]}; isolated {s['isolated'][2]}")
    print(f"total {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
