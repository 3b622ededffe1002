"""A Brevitas ResNet trained briefly on real CIFAR-10, exported as QONNX and imported: the integer
bundle against qonnx's execution on the whole test split (top-1 agreement) and per layer (isolated)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("brevitas")
pytest.importorskip("qonnx")
pytest.importorskip("onnxruntime")

from test_qonnx_import import lsb_histograms  # noqa: E402

from hwsim.bundle import load_bundle  # noqa: E402
from hwsim.cifar10 import CIFAR10_MEAN, CIFAR10_STD, load_cifar10  # noqa: E402
from hwsim.cli import main as hwsim_main  # noqa: E402
from hwsim.compare import compare_bundle  # noqa: E402
from qat import brevitas_models  # noqa: E402

# ResNet8-shaped (one BasicBlock per stage, widths 8/16/32): 4-bit per-channel weights, 4-bit
# activations, 8-bit first conv, input and classifier; small enough to train on two cores in a minute.
MODEL = {"blocks": 1, "widths": (8, 16, 32), "bits": 4, "edge_bits": 8}
EPOCHS = 3
SEED = 0


@pytest.mark.slow
def test_trained_resnet_matches_qonnx_on_the_test_split(cifar10_dir: Path, tmp_path: Path) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        train_x, train_y = load_cifar10(cifar10_dir, "train")
        test_x, test_y = load_cifar10(cifar10_dir, "test")
        torch.manual_seed(SEED)
        model = brevitas_models.ResNet(**MODEL)  # type: ignore[arg-type]
        start = time.perf_counter()
        brevitas_models.train(
            model, train_x, train_y, mean=CIFAR10_MEAN, std=CIFAR10_STD, epochs=EPOCHS, seed=SEED
        )
        trained = time.perf_counter() - start
        brevitas_top1 = brevitas_models.accuracy(model, test_x, test_y, CIFAR10_MEAN, CIFAR10_STD)
        onnx_path = brevitas_models.export(model, tmp_path / "trained.onnx")
    finally:
        torch.set_num_threads(threads)

    bundle_dir = tmp_path / "bundle"
    mean = ",".join(str(v) for v in CIFAR10_MEAN)
    std = ",".join(str(v) for v in CIFAR10_STD)
    start = time.perf_counter()
    argv = ["import-qonnx", str(onnx_path), "--out", str(bundle_dir), "--data", str(cifar10_dir)]
    assert hwsim_main([*argv, "--mean", mean, "--std", std]) == 0
    imported = time.perf_counter() - start

    comparison = compare_bundle(load_bundle(bundle_dir), data_dir=cifar10_dir)
    totals = comparison.totals
    hist = lsb_histograms(bundle_dir)
    for name, h in hist.items():
        print(f"{name}: isolated |err| histogram {h}")
    total = sum(sum(h.values()) for h in hist.values())
    exact = sum(h.get(0, 0) for h in hist.values())
    worst = max(max(h) for h in hist.values())
    print(
        f"trained {EPOCHS} epochs on {len(train_y)} images in {trained:.1f} s; import with --data "
        f"{imported:.1f} s\n"
        f"top-1 on {totals['test_set_images']} test images: brevitas {brevitas_top1:.4f}, "
        f"qonnx {totals['test_set_top1_reference']:.4f}, bundle {totals['test_set_top1_emulator']:.4f}; "
        f"agreement bundle vs qonnx {totals['test_set_top1_agreement']:.4f}\n"
        f"isolated: {exact}/{total} activation codes exact, worst {worst} LSB; "
        f"end to end worst {totals['max_abs_err_lsb']} LSB"
    )
    assert totals["test_set_images"] == len(test_y)
    assert totals["test_set_top1_reference"] > 0.25  # clearly above chance (0.10)
    assert totals["test_set_top1_agreement"] >= 0.995
    assert totals["isolated_max_abs_err_lsb"] <= 1
    assert worst <= 1
