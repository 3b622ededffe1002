"""`hwsim import-qonnx` on Brevitas models exported as QONNX: every layer, fed qonnx's own input codes,
within 1 LSB of qonnx's codes (identical on the power-of-two-scale model); the CLI's refusals."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qonnx")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from hwsim.bundle import BundleBuilder, RequantNode, load_bundle  # noqa: E402
from hwsim.cli import main as hwsim_main  # noqa: E402
from hwsim.compare import compare_bundle, isolated_codes  # noqa: E402
from hwsim.interop import IMPORTERS  # noqa: E402
from hwsim.interop.qonnx_import import QonnxImportError, import_qonnx  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
KINDS = ["resnet20", "pow2", "residual8", "binary", "biasquant", "biasquant_pc"]


def lsb_histograms(bundle_path: Path) -> dict[str, dict[int, int]]:
    """Per requant node: ``{|isolated error| in LSBs: count}`` against qonnx's codes."""
    bundle = load_bundle(bundle_path)
    ref = bundle.reference
    assert ref is not None
    alone = isolated_codes(bundle)
    out = {}
    for node in bundle.nodes:
        if isinstance(node, RequantNode):
            codes = alone[node.output]
            assert codes is not None, node.name
            diff = np.abs(codes.astype(np.int64) - ref.codes[node.output].astype(np.int64)).reshape(-1)
            counts = np.bincount(diff)
            out[node.name] = {i: int(c) for i, c in enumerate(counts) if c}
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_import_matches_qonnx_per_layer(
    kind: str, qonnx_model: Callable[[str], Path], tmp_path: Path
) -> None:
    if kind == "binary" and not hasattr(BundleBuilder, "maxpool"):
        pytest.skip("the bundle has no maxpool op yet")
    report = import_qonnx(qonnx_model(kind), tmp_path / "bundle", images=8)
    print("\n".join(report.lines()))
    hist = lsb_histograms(tmp_path / "bundle")
    for name, h in hist.items():
        print(f"{kind} {name}: |err| histogram {h}")
    worst = max(max(h) for h in hist.values())
    total = sum(sum(h.values()) for h in hist.values())
    exact = sum(h.get(0, 0) for h in hist.values())
    print(f"{kind}: {exact}/{total} elements exact, worst {worst} LSB")
    assert worst <= 1
    assert exact / total >= 0.999
    if kind == "pow2":  # power-of-two scales, no BN: the integers are exact
        assert worst == 0
    comparison = compare_bundle(load_bundle(tmp_path / "bundle"))
    totals = comparison.totals
    assert totals["isolated_max_abs_err_lsb"] <= 1
    assert totals["top1_agreement"] >= 0.875
    if kind == "pow2":
        assert totals["max_abs_err_lsb"] == 0 and totals["top1_agreement"] == 1.0


def test_bundle_structure(qonnx_model: Callable[[str], Path], tmp_path: Path) -> None:
    import_qonnx(qonnx_model("resnet20"), tmp_path / "b", images=2)
    bundle = load_bundle(tmp_path / "b")
    ops = [n.op for n in bundle.nodes]
    assert ops.count("conv2d") == 21 and ops.count("linear") == 1 and ops.count("avgpool_sum") == 1
    first = bundle.nodes[0]
    assert first.op == "conv2d" and first.weight_format.bits == 8 and first.weight_format.lattice == "narrow"
    assert bundle.nodes[2].weight_format.bits == 4
    adds = [n for n in bundle.nodes if isinstance(n, RequantNode) and len(n.inputs) == 2]
    assert len(adds) == 9  # every residual add is one two-input requantizer
    assert {n.rounding for n in bundle.nodes if isinstance(n, RequantNode)} == {"half_even"}
    assert bundle.output_spec.fmt is not None and bundle.output_spec.fmt.bits == 32
    assert bundle.meta.input_mean == (0.0, 0.0, 0.0) and bundle.meta.input_std == (1.0, 1.0, 1.0)
    assert np.unique(bundle.nodes[0].weight_scale).size > 1  # per-channel weight scales


def test_pow2_trunc_and_half_up(qonnx_model: Callable[[str], Path], tmp_path: Path) -> None:
    import_qonnx(qonnx_model("pow2"), tmp_path / "b", images=4, rounding="half_up")
    bundle = load_bundle(tmp_path / "b")
    act = bundle.node("Quant_11")
    assert isinstance(act, RequantNode) and act.rounding == "half_up"
    trunc = bundle.node("Trunc_0")  # a Trunc keeps its own rounding_mode (it is no activation quantizer)
    assert isinstance(trunc, RequantNode) and trunc.rounding == "half_even"
    hist = lsb_histograms(tmp_path / "b")
    assert max(max(h) for h in hist.values()) <= 1  # ties may now round the other way


def test_pow2_trunc_rounding_as_exported(qonnx_model: Callable[[str], Path], tmp_path: Path) -> None:
    import_qonnx(qonnx_model("pow2"), tmp_path / "b", images=2)
    trunc = load_bundle(tmp_path / "b").node("Trunc_0")
    assert isinstance(trunc, RequantNode) and trunc.rounding == "half_even"  # Trunc's ROUND
    assert trunc.inputs[0].multiplier[0] == 1 << 30 and trunc.shift[0] == 34  # exactly 1/16


def test_biasquant_logits_are_integer(qonnx_model: Callable[[str], Path], tmp_path: Path) -> None:
    import_qonnx(qonnx_model("biasquant"), tmp_path / "b", images=8)
    bundle = load_bundle(tmp_path / "b")
    ref = bundle.reference
    assert ref is not None
    node = bundle.node("logits")
    assert isinstance(node, RequantNode)
    # per-tensor weight scale: the logits are acc + bias exactly (multiplier 1)
    assert np.all(node.inputs[0].multiplier == np.left_shift(1, node.shift))
    scale = bundle.output_spec.scale
    assert np.allclose(ref.codes["logits"] * scale, ref.floats["logits"], rtol=1e-5, atol=scale)


def test_mean_std_from_metadata(qonnx_model: Callable[[str], Path], tmp_path: Path) -> None:
    model = onnx.load(str(qonnx_model("residual8")))
    helper.set_model_props(model, {"mean": "0.5,0.5,0.5", "std": "[0.25, 0.25, 0.25]"})
    path = tmp_path / "meta.onnx"
    onnx.save(model, str(path))
    report = import_qonnx(path, tmp_path / "b", images=2)
    bundle = load_bundle(tmp_path / "b")
    assert bundle.meta.input_mean == (0.5, 0.5, 0.5) and bundle.meta.input_std == (0.25, 0.25, 0.25)
    assert any("metadata_props" in n for n in report.notes)


def test_registry() -> None:
    assert IMPORTERS["qonnx"] is import_qonnx


def test_real_data(qonnx_model: Callable[[str], Path], tmp_path: Path, cifar10_dir: Path) -> None:
    report = import_qonnx(
        qonnx_model("residual8"),
        tmp_path / "b",
        data=cifar10_dir,
        images=16,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.247, 0.2435, 0.2616),
    )
    assert report.source == "cifar10-test" and report.eval_images > 0
    bundle = load_bundle(tmp_path / "b")
    assert bundle.reference is not None and bundle.reference.eval_predictions is not None
    comparison = compare_bundle(bundle, data_dir=cifar10_dir)
    totals = comparison.totals
    print({k: totals[k] for k in ("test_set_top1_agreement", "isolated_max_abs_err_lsb", "max_abs_err_lsb")})
    assert totals["isolated_max_abs_err_lsb"] <= 1
    assert totals["test_set_top1_agreement"] >= 0.99


# -- the command line ---------------------------------------------------------------------------


def test_cli_import_then_hwsim_commands(
    qonnx_model: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "b"
    assert (
        hwsim_main(["import-qonnx", str(qonnx_model("residual8")), "--out", str(bundle), "--images", "4"])
        == 0
    )
    out = capsys.readouterr().out
    assert "wrote" in out and "reference: 4 images" in out
    hw = str(REPO / "configs" / "hw" / "ws_8x8.yaml")
    assert hwsim_main(["compare", str(bundle), "--report", str(tmp_path / "cmp")]) == 0
    assert (
        hwsim_main(
            [
                "simulate",
                str(bundle),
                "--hw",
                hw,
                "--images",
                "2",
                "--report",
                str(tmp_path / "sim"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert (
        hwsim_main(
            [
                "sweep",
                str(bundle),
                "--what",
                "acc_bits",
                "--range",
                "16..20",
                "--images",
                "2",
                "--report",
                str(tmp_path / "sweep"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert (
        hwsim_main(["vectors", str(bundle), "--layer", "Conv_1", "--hw", hw, "--out", str(tmp_path / "vec")])
        == 0
    )
    assert (tmp_path / "vec").is_dir()


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hwsim.cli", *args], capture_output=True, text=True, timeout=300, cwd=REPO
    )


def _quant(
    name: str, x: str, scale: float, bits: int, signed: int, zero: float = 0.0, narrow: int = 0
) -> tuple[object, list[object]]:
    inits = [
        numpy_helper.from_array(np.array(scale, dtype=np.float32), f"{name}_s"),
        numpy_helper.from_array(np.array(zero, dtype=np.float32), f"{name}_z"),
        numpy_helper.from_array(np.array(float(bits), dtype=np.float32), f"{name}_b"),
    ]
    node = helper.make_node(
        "Quant",
        [x, f"{name}_s", f"{name}_z", f"{name}_b"],
        [name],
        name=name,
        domain="qonnx.custom_op.general",
        signed=signed,
        narrow=narrow,
        rounding_mode="ROUND",
    )
    return node, inits


def tiny_qonnx(
    path: Path,
    *,
    act_zero: float = 0.0,
    middle: str = "Relu",
    bn_after: bool = False,
    dims: tuple[object, ...] = (1, 3, 8, 8),
) -> Path:
    """input -> Quant -> Conv(Quant weights) -> ``middle`` -> Quant [-> BN] -> GAP -> Flatten -> Gemm."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    n, i = _quant("qin", "x", 1 / 64, 8, 1)
    nodes.append(n)
    inits += i
    inits.append(numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w1"))
    n, i = _quant("qw1", "w1", 0.25, 4, 1, narrow=1)
    nodes.append(n)
    inits += i
    nodes.append(helper.make_node("Conv", ["qin", "qw1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]))
    nodes.append(helper.make_node(middle, ["c1"], ["m1"], name="mid1"))
    n, i = _quant("qa1", "m1", 0.1, 4, 0, zero=act_zero)
    nodes.append(n)
    inits += i
    last = "qa1"
    if bn_after:
        for k, v in (("g", 1.5), ("b", 0.1), ("mu", 0.2), ("var", 2.0)):
            inits.append(numpy_helper.from_array(np.full(4, v, dtype=np.float32), f"bn_{k}"))
        nodes.append(
            helper.make_node(
                "BatchNormalization",
                ["qa1", "bn_g", "bn_b", "bn_mu", "bn_var"],
                ["bn"],
                name="bn_after_quant",
            )
        )
        last = "bn"
    nodes.append(helper.make_node("GlobalAveragePool", [last], ["p"], name="pool"))
    nodes.append(helper.make_node("Flatten", ["p"], ["f"], name="flat", axis=1))
    inits.append(numpy_helper.from_array(rng.normal(size=(10, 4)).astype(np.float32), "w2"))
    n, i = _quant("qw2", "w2", 0.1, 8, 1, narrow=1)
    nodes.append(n)
    inits += i
    nodes.append(helper.make_node("Gemm", ["f", "qw2"], ["y"], name="fc", transB=1))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [dims[0], 10])],
        initializer=inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("qonnx.custom_op.general", 1)]
    )
    onnx.save(model, str(path))
    return path


def test_tiny_hand_built_model_imports(tmp_path: Path) -> None:
    import_qonnx(tiny_qonnx(tmp_path / "t.onnx"), tmp_path / "b", images=8)
    hist = lsb_histograms(tmp_path / "b")
    assert max(max(h) for h in hist.values()) <= 1


def test_dynamic_batch_is_fixed_to_one(tmp_path: Path) -> None:
    import_qonnx(tiny_qonnx(tmp_path / "t.onnx", dims=("N", 3, 8, 8)), tmp_path / "b", images=3)
    assert load_bundle(tmp_path / "b").reference.images == 3  # type: ignore[union-attr]


def _bad_inputs(tmp_path: Path, qonnx_model: Callable[[str], Path]) -> dict[str, tuple[Path, str]]:
    good = qonnx_model("residual8").read_bytes()
    (tmp_path / "truncated.onnx").write_bytes(good[: len(good) // 3])
    (tmp_path / "random.onnx").write_bytes(np.random.default_rng(1).bytes(4096))
    plain = helper.make_model(
        helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"], name="r")],
            "plain",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
        )
    )
    onnx.save(plain, str(tmp_path / "plain.onnx"))
    return {
        "truncated": (tmp_path / "truncated.onnx", "not a readable ONNX model"),
        "random": (tmp_path / "random.onnx", "not a readable ONNX model"),
        "plain": (tmp_path / "plain.onnx", "without QONNX quantizers"),
        "unsupported": (
            tiny_qonnx(tmp_path / "sig.onnx", middle="Sigmoid"),
            "(Sigmoid): this op type has no bundle operation",
        ),
        "dynamic": (tiny_qonnx(tmp_path / "dyn.onnx", dims=("N", 3, "H", "W")), "dynamic channel/spatial"),
        "zero_point": (tiny_qonnx(tmp_path / "zp.onnx", act_zero=3.0), "(Quant): zero point [3.0] is not 0"),
        "float_bn": (
            tiny_qonnx(tmp_path / "bn.onnx", bn_after=True),
            "(BatchNormalization): BatchNormalization does not follow a Conv/Gemm",
        ),
        "missing": (tmp_path / "nope.onnx", "no such file"),
    }


@pytest.mark.parametrize(
    "case", ["truncated", "random", "plain", "unsupported", "dynamic", "zero_point", "float_bn", "missing"]
)
def test_cli_refuses_bad_inputs(case: str, qonnx_model: Callable[[str], Path], tmp_path: Path) -> None:
    path, expected = _bad_inputs(tmp_path, qonnx_model)[case]
    out = tmp_path / "bundle"
    proc = _run_cli("import-qonnx", str(path), "--out", str(out), "--images", "2")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("hwsim import-qonnx: error:") and expected in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle") or "staging" in p.name]


def test_missing_packages_exit_2(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['qonnx'] = None; from hwsim.cli import main; "
        f"sys.exit(main(['import-qonnx', 'x.onnx', '--out', {str(tmp_path / 'b')!r}]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2
    assert "pip install -e .[onnx]" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_options(tmp_path: Path) -> None:
    path = tiny_qonnx(tmp_path / "t.onnx")
    with pytest.raises(QonnxImportError, match="--rounding"):
        import_qonnx(path, tmp_path / "b", rounding="half_down")
    with pytest.raises(QonnxImportError, match="3 input channels"):
        import_qonnx(path, tmp_path / "b", mean=(0.1, 0.2), std=(1.0,))
    with pytest.raises(QonnxImportError, match="--images"):
        import_qonnx(path, tmp_path / "b", images=0)
    assert not (tmp_path / "b").exists()
