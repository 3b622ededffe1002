"""hwsim.compare and the compare/emulate commands, on hand-built bundles whose reference.npz is
perturbed by known amounts (so mismatch rates, LSB errors, SQNR and agreement are predictable,
both propagated and isolated)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from hwsim.bundle import load_bundle, quantize_images
from hwsim.bundle.synthetic import builder, fmt, reference_from_emulator, tiny_bundle, tiny_inputs
from hwsim.cli import main as hwsim_main
from hwsim.compare import compare_bundle, sqnr_db
from hwsim.emulator import EmulatorConfig, emulate
from hwsim.fixed import requantize_sum, sign


def perturbed_tiny(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """Tiny bundle, 10 images; act2 codes: 7 elements +1 LSB, 3 elements -3 LSB; 2 images' top class moved."""
    path = tiny_bundle(tmp_path / "tiny", reference_images=10)
    with np.load(path / "reference.npz") as f:
        ref = {k: f[k] for k in f.files}
    act2 = ref["codes/act2"].reshape(-1).copy()
    idx = np.flatnonzero((act2 >= 3) & (act2 <= 12))[:10]  # room for +1 and -3 inside uint4
    act2[idx[:7]] += 1
    act2[idx[7:]] -= 3
    ref["codes/act2"] = act2.reshape(ref["codes/act2"].shape)
    ref["float/act2"] = ref["codes/act2"].astype(np.float32) * np.float32(0.5)
    logits = ref["codes/logits"].copy()
    for n in (0, 1):  # swap the top logit with a smaller one: a different class becomes the argmax
        top = int(np.argmax(logits[n]))
        other = int(np.argmin(logits[n]))
        assert logits[n, other] < logits[n, top]
        logits[n, [top, other]] = logits[n, [other, top]]
    ref["codes/logits"] = logits
    ref["float/logits"] = logits.astype(np.float32) * np.float32(0.1)
    np.savez(path / "reference.npz", **ref)
    return path, ref


def test_known_perturbations_are_measured(tmp_path: Path) -> None:
    path, ref = perturbed_tiny(tmp_path)
    bundle = load_bundle(path)
    result = compare_bundle(bundle)
    rows = {r.name: r for r in result.layers}
    assert list(rows) == ["act1", "act2", "sgn", "logits"]
    size = ref["codes/act2"].size
    act2 = rows["act2"]
    assert act2.mismatch_rate == pytest.approx(10 / size)
    assert act2.exact_match_rate == pytest.approx(1 - 10 / size)
    assert act2.max_abs_err_lsb == 3
    assert act2.mean_abs_err_lsb == pytest.approx((7 * 1 + 3 * 3) / size)
    emu = result.emulation.tensors["act2"].astype(np.float64) * 0.5
    expected_sqnr = 10 * math.log10(
        np.sum((ref["codes/act2"] * 0.5) ** 2) / np.sum((emu - ref["codes/act2"] * 0.5) ** 2)
    )
    assert act2.sqnr_db == pytest.approx(expected_sqnr, rel=1e-6)
    assert rows["act1"].mismatch_rate == 0.0 and math.isinf(rows["act1"].sqnr_db)
    assert rows["act2"].type == "conv2d+add" and rows["act2"].mac_nodes == ("conv2",)
    assert rows["act1"].macs == bundle.macs("conv1") and rows["act1"].w_bits == 4
    totals = result.totals
    assert totals["first_divergent_layer"] == "act2"  # 3 LSB > 1 LSB; act1 is exact
    assert totals["top1_agreement"] == pytest.approx(8 / 10)
    labels = ref["labels"]
    assert totals["top1_reference"] == pytest.approx(np.mean(np.argmax(ref["codes/logits"], 1) == labels))
    assert totals["top1_emulator"] == pytest.approx(np.mean(result.emulation.predictions == labels))


def test_one_lsb_is_not_a_divergence(tmp_path: Path) -> None:
    path = tiny_bundle(tmp_path / "tiny", reference_images=4)
    with np.load(path / "reference.npz") as f:
        ref = {k: f[k] for k in f.files}
    logits = ref["codes/logits"]
    ref["codes/logits"] = np.where(logits < 127, logits + 1, logits - 1)  # every logit off by exactly 1 LSB
    np.savez(path / "reference.npz", **ref)
    result = compare_bundle(load_bundle(path))
    logits = result.layers[-1]
    assert logits.mismatch_rate == 1.0 and logits.max_abs_err_lsb == 1
    assert result.totals["first_divergent_layer"] is None


def test_overflow_shows_in_the_report(tmp_path: Path) -> None:
    path = tiny_bundle(tmp_path / "tiny", reference_images=6)
    result = compare_bundle(load_bundle(path), EmulatorConfig(acc_bits=7))
    assert result.totals["overflow_count"] == sum(s.overflow_count for s in result.emulation.layers.values())
    assert result.layers[0].overflow_count > 0 and result.layers[0].acc_bits == 7
    assert result.totals["first_divergent_layer"] == "act1"


def test_sqnr() -> None:
    assert sqnr_db(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == math.inf
    assert sqnr_db(np.array([3.0, 4.0]), np.array([3.0, 4.5])) == pytest.approx(10 * math.log10(25 / 0.25))


def test_compare_cli_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = perturbed_tiny(tmp_path)
    out = tmp_path / "report"
    assert hwsim_main(["compare", str(path), "--report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "act2" in printed and "first layer diverging by more than 1 LSB: act2" in printed
    for name in ("report.json", "layers.csv", "report.md", "report.html", "error_per_layer.png"):
        assert (out / name).is_file(), name
    doc = json.loads((out / "report.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    row = doc["layers"][1]
    for key in (
        "name",
        "type",
        "macs",
        "w_bits",
        "a_bits",
        "acc_bits",
        "overflow_count",
        "peak_acc_abs",
        "min_safe_acc_bits",
        "mismatch_rate",
        "max_abs_err_lsb",
        "sqnr_db",
    ):
        assert key in row, key
    assert "cycles" not in row  # compare runs no hardware: no cycle columns (hwsim simulate has them)
    assert doc["layers"][0]["sqnr_db"] is None  # exact layer: inf -> null
    assert doc["totals"]["top1_agreement"] == pytest.approx(0.8)


def test_cli_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tiny_bundle(tmp_path / "noref")
    assert hwsim_main(["compare", str(path), "--report", str(tmp_path / "r")]) == 2
    assert "no reference.npz" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # argparse refuses the flag's value: usage, status 2
        hwsim_main(["emulate", str(path), "--acc-bits", "99"])
    assert exit_.value.code == 2
    assert "argument --acc-bits: expected an integer in 1..64, got '99'" in capsys.readouterr().err


def test_emulate_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tiny_bundle(tmp_path / "tiny", reference_images=5)
    out = tmp_path / "run.npz"
    assert hwsim_main(["emulate", str(path), "--images", "3", "--acc-bits", "8", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "conv1" in printed and "agreement with the reference predictions" in printed
    expected = emulate(load_bundle(path), tiny_inputs(5)[:3], EmulatorConfig(acc_bits=8))
    with np.load(out) as f:
        assert np.array_equal(f["logits"], expected.logits)
        assert np.array_equal(f["tensors/act2"], expected.tensors["act2"])


def cifar_net(path: Path) -> Path:
    """3x32x32 -> conv 3x3 stride 2 -> uint4 -> avgpool_sum -> fc -> int16 logits (small, fast)."""
    rng = np.random.default_rng(5)
    b = builder((3, 32, 32), fmt(8, True, "narrow"), 2.2 / 127, model="cifar-small")
    acc = b.conv2d(
        "conv", "input", rng.integers(-7, 8, size=(8, 3, 3, 3)), fmt(4, True, "narrow"), stride=2, padding=1
    )
    b.requant(
        "act",
        [(acc, np.full(8, 3 << 20), rng.integers(-500, 500, size=8))],
        np.full(8, 30),
        fmt(4, False),
        0.1,
    )
    b.avgpool_sum("pool", "act")
    fc = b.linear("fc", "pool", rng.integers(-7, 8, size=(10, 8)), fmt(4, True, "narrow"))
    b.requant("logits", [(fc, np.full(10, 1 << 20), None)], np.full(10, 24), fmt(16, True), 0.01)
    return b.save(path, "logits")


def test_whole_test_set_agreement(tmp_path: Path, cifar10_dir: Path) -> None:
    from hwsim.cifar10 import load_cifar10

    path = cifar_net(tmp_path / "net")
    bundle = load_bundle(path)
    images, labels = load_cifar10(cifar10_dir, "test")
    own = emulate(bundle, quantize_images(images, bundle), keep=False).predictions
    flipped = own.copy()
    flipped[:25] = (flipped[:25] + 1) % 10  # 25 predictions the emulator does not make
    ref = reference_from_emulator(bundle, quantize_images(images[:8], bundle), labels[:8]).to_npz()
    ref["eval_predictions"], ref["eval_labels"] = flipped, labels
    np.savez(path / "reference.npz", **ref)
    result = compare_bundle(load_bundle(path), data_dir=cifar10_dir)
    totals = result.totals
    n = labels.shape[0]
    assert totals["test_set_images"] == n and totals["top1_source"].startswith("test set")
    assert totals["top1_agreement"] == pytest.approx((n - 25) / n)
    assert totals["top1_emulator"] == pytest.approx(np.mean(own == labels))
    assert totals["top1_reference"] == pytest.approx(np.mean(flipped == labels))


def _depthwise3x3(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Depthwise 3x3 convolution, padding 1, by explicit shifts (independent of hwsim.gemm)."""
    n, c, h, wd = x.shape
    padded = np.zeros((n, c, h + 2, wd + 2), dtype=np.int64)
    padded[:, :, 1:-1, 1:-1] = x
    out = np.zeros((n, c, h, wd), dtype=np.int64)
    for i in range(3):
        for j in range(3):
            out += padded[:, :, i : i + h, j : j + wd] * w[:, 0, i, j].reshape(1, c, 1, 1)
    return out


def test_isolated_errors_are_measured_on_the_references_own_inputs(tmp_path: Path) -> None:
    # The reference's act1 gets +1 on 40 elements. Propagated: act1 differs there (1 LSB), and
    # nothing downstream does (the emulator runs on its own act1). Isolated: act1 the same, and
    # act2 and sgn, fed the reference's act1, move by what conv2 and the requantizer make of it
    # (predicted below with numpy and hwsim.fixed); the logits read the reference's pool: exact.
    path = tiny_bundle(tmp_path / "tiny", reference_images=8)
    with np.load(path / "reference.npz") as f:
        ref = {k: f[k] for k in f.files}
    act1 = ref["codes/act1"].copy()
    flat = act1.reshape(-1)
    idx = np.flatnonzero(flat < 7)[::3][:40]
    flat[idx] += 1
    ref["codes/act1"] = act1
    ref["float/act1"] = act1.astype(np.float32) * np.float32(0.5)
    np.savez(path / "reference.npz", **ref)
    bundle = load_bundle(path)

    conv2 = _depthwise3x3(act1, bundle.node("conv2").weight.astype(np.int64))
    a2, sg = bundle.node("act2"), bundle.node("sgn")
    pred_act2 = np.clip(
        requantize_sum(
            [conv2, act1], [i.multiplier for i in a2.inputs], a2.shift, 1, [i.bias for i in a2.inputs]
        ),
        0,
        15,
    )
    pred_sgn = sign(requantize_sum([conv2], [sg.inputs[0].multiplier], sg.shift, 1, [sg.inputs[0].bias]))
    d_act2 = np.abs(pred_act2 - ref["codes/act2"])
    d_sgn = np.abs(pred_sgn - ref["codes/sgn"])
    assert d_act2.any() and d_sgn.any()  # the perturbation reaches both (else the test proves nothing)

    result = compare_bundle(bundle)
    rows = {r.name: r for r in result.layers}
    assert rows["act1"].mismatch_rate == rows["act1"].isolated_mismatch_rate == pytest.approx(40 / act1.size)
    assert rows["act1"].max_abs_err_lsb == rows["act1"].isolated_max_abs_err_lsb == 1
    assert rows["act1"].within_1lsb == rows["act1"].isolated_within_1lsb == 1.0
    for name, d in (("act2", d_act2), ("sgn", d_sgn)):
        assert rows[name].mismatch_rate == 0.0 and rows[name].within_1lsb == 1.0
        assert rows[name].isolated_mismatch_rate == pytest.approx(np.count_nonzero(d) / d.size)
        assert rows[name].isolated_max_abs_err_lsb == int(d.max())
        assert rows[name].isolated_within_1lsb == pytest.approx(np.mean(d <= 1))
    assert rows["logits"].isolated_mismatch_rate == 0.0
    totals = result.totals
    sizes = {t: ref[f"codes/{t}"].size for t in ("act1", "act2", "sgn", "logits")}
    assert totals["within_1lsb"] == 1.0 and totals["first_divergent_layer"] is None
    beyond = int(np.count_nonzero(d_act2 > 1) + np.count_nonzero(d_sgn > 1))
    assert totals["isolated_within_1lsb"] == pytest.approx(1 - beyond / sum(sizes.values()))
    assert totals["isolated_max_abs_err_lsb"] == max(int(d_act2.max()), int(d_sgn.max()))
    first = "act2" if d_act2.max() > 1 else "sgn" if d_sgn.max() > 1 else None
    assert totals["first_isolated_divergent_layer"] == first
    out = tmp_path / "report"
    assert hwsim_main(["compare", str(path), "--report", str(out)]) == 0
    markdown = (out / "report.md").read_text()
    assert "isolated_within_1lsb" in markdown and "on the reference's own input codes" in markdown
    header = (out / "layers.csv").read_text().splitlines()[0].split(",")
    assert {"isolated_mismatch_rate", "isolated_max_abs_err_lsb", "isolated_within_1lsb"} <= set(header)
    doc = json.loads((out / "report.json").read_text())
    assert doc["totals"]["first_isolated_divergent_layer"] == first
