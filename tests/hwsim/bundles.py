"""Hand-built bundles for tests and benchmarks: a small graph builder, a tiny net, a random ResNet20.

Place in the flow: stands in for ``qat export`` where a test needs a bundle it fully controls
(docs/export-format.md); every bundle it writes goes through hwsim.ir.load_bundle like any other.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.fixed import bits_for_range, quantize_multiplier
from hwsim.ir import Bundle, load_bundle, quantize_images, write_bundle_files

CIFAR_MEAN = [0.4914, 0.4822, 0.4465]
CIFAR_STD = [0.2470, 0.2435, 0.2616]


def fmt(bits: int, signed: bool, lattice: str = "full", nominal_bits: int | None = None) -> dict[str, Any]:
    """A graph.yaml integer format."""
    out: dict[str, Any] = {"bits": bits, "signed": signed}
    if nominal_bits is not None:
        out["nominal_bits"] = nominal_bits
    if lattice != "full":
        out["lattice"] = lattice
    return out


class GraphBuilder:
    """Collects tensors, nodes and arrays, then writes a bundle directory."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        input_format: dict[str, Any],
        input_scale: float,
        acc_bits: int = 32,
        mult_bits: int = 32,
        model: str = "test",
    ) -> None:
        channels = input_shape[0]
        self.graph: dict[str, Any] = {
            "format_version": 1,
            "model": model,
            "rounding": "half_up",
            "acc_bits": acc_bits,
            "mult_bits": mult_bits,
            "input": {
                "tensor": "input",
                "mean": (CIFAR_MEAN * channels)[:channels],
                "std": (CIFAR_STD * channels)[:channels],
            },
            "output": None,
            "quantization": {"source": "tests/hwsim/bundles.py"},
            "tensors": {
                "input": {
                    "shape": list(input_shape),
                    "kind": "codes",
                    "format": input_format,
                    "scale": input_scale,
                }
            },
            "nodes": [],
        }
        self.arrays: dict[str, np.ndarray] = {}

    @property
    def tensors(self) -> dict[str, Any]:
        return self.graph["tensors"]

    def shape(self, tensor: str) -> list[int]:
        return list(self.tensors[tensor]["shape"])

    def conv(
        self,
        name: str,
        x: str,
        weight: np.ndarray,
        weight_format: dict[str, Any],
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
    ) -> str:
        c, h, w = self.shape(x)
        c_out, _, kh, kw = weight.shape
        h_out = (h + 2 * padding - kh) // stride + 1
        w_out = (w + 2 * padding - kw) // stride + 1
        out = f"{name}.acc"
        self.tensors[out] = {"shape": [int(c_out), h_out, w_out], "kind": "acc"}
        self.arrays[f"{name}.weight"] = weight
        self.arrays[f"{name}.weight_scale"] = np.full(c_out, 0.05, dtype=np.float64)
        self.graph["nodes"].append(
            {
                "name": name,
                "op": "conv2d",
                "input": x,
                "output": out,
                "weight": f"{name}.weight",
                "weight_format": weight_format,
                "weight_scale": f"{name}.weight_scale",
                "stride": [stride, stride],
                "padding": [padding, padding],
                "groups": groups,
            }
        )
        return out

    def linear(self, name: str, x: str, weight: np.ndarray, weight_format: dict[str, Any]) -> str:
        out = f"{name}.acc"
        self.tensors[out] = {"shape": [int(weight.shape[0])], "kind": "acc"}
        self.arrays[f"{name}.weight"] = weight
        self.arrays[f"{name}.weight_scale"] = np.full(weight.shape[0], 0.05, dtype=np.float64)
        self.graph["nodes"].append(
            {
                "name": name,
                "op": "linear",
                "input": x,
                "output": out,
                "weight": f"{name}.weight",
                "weight_format": weight_format,
                "weight_scale": f"{name}.weight_scale",
            }
        )
        return out

    def requant(
        self,
        name: str,
        inputs: list[tuple[str, np.ndarray, np.ndarray | None]],
        shift: np.ndarray,
        out_format: dict[str, Any],
        scale: float,
        function: str = "clamp",
        offset: np.ndarray | None = None,
    ) -> str:
        """A requant node: ``inputs`` are ``(tensor, multiplier, bias or None)``, ``offset`` int64 [C]."""
        shape = self.shape(inputs[0][0])
        self.tensors[name] = {"shape": shape, "kind": "codes", "format": out_format, "scale": scale}
        items = []
        for i, (tensor, mult, bias) in enumerate(inputs):
            item = {"tensor": tensor, "multiplier": f"{name}.mult{i}"}
            self.arrays[f"{name}.mult{i}"] = np.asarray(mult, dtype=np.int64)
            if bias is not None:
                item["bias"] = f"{name}.bias{i}"
                self.arrays[f"{name}.bias{i}"] = np.asarray(bias, dtype=np.int32)
            items.append(item)
        self.arrays[f"{name}.shift"] = np.asarray(shift, dtype=np.int64)
        node: dict[str, Any] = {
            "name": name,
            "op": "requant",
            "function": function,
            "inputs": items,
            "shift": f"{name}.shift",
            "output": name,
        }
        if offset is not None:
            node["offset"] = f"{name}.offset"
            self.arrays[f"{name}.offset"] = np.asarray(offset, dtype=np.int64)
        self.graph["nodes"].append(node)
        return name

    def avgpool(self, name: str, x: str) -> str:
        c, h, w = self.shape(x)
        xf = self.tensors[x]["format"]
        lo = -(1 << (xf["bits"] - 1)) if xf["signed"] else 0
        hi = (1 << (xf["bits"] - 1)) - 1 if xf["signed"] else (1 << xf["bits"]) - 1
        bits = bits_for_range(lo * h * w, hi * h * w, xf["signed"])
        self.tensors[name] = {
            "shape": [c],
            "kind": "codes",
            "format": fmt(bits, xf["signed"]),
            "scale": self.tensors[x]["scale"] / (h * w),
        }
        self.graph["nodes"].append({"name": name, "op": "avgpool_sum", "input": x, "output": name})
        return name

    def write(self, path: Path, output: str, reference: dict[str, np.ndarray] | None = None) -> Path:
        self.graph["output"] = output
        if reference is not None:
            self.graph["reference"] = {
                "device": "cpu",
                "images": int(reference["input_codes"].shape[0]),
                "source": "tests/hwsim/bundles.py",
            }
        return write_bundle_files(path, self.graph, self.arrays, reference)


def reference_from_emulator(
    bundle: Bundle, input_codes: np.ndarray, labels: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """A reference.npz whose codes are the emulator's own (perturb them to test compare)."""
    from hwsim.emulator import emulate

    run = emulate(bundle, input_codes)
    n = input_codes.shape[0]
    ref: dict[str, np.ndarray] = {
        "input_codes": input_codes.astype(np.int64),
        "labels": (labels if labels is not None else np.full(n, -1)).astype(np.int64),
        "device": np.array("cpu"),
    }
    for name, spec in bundle.tensors.items():
        if spec.kind == "codes" and name != bundle.meta.input_tensor:
            ref[f"codes/{name}"] = run.tensors[name]
            ref[f"float/{name}"] = run.tensors[name].astype(np.float32) * np.float32(spec.scale)
    return ref


# ----------------------------------------------------------------------------------------------
# The tiny net of the integer-exact tests
# ----------------------------------------------------------------------------------------------

TINY_INPUT_SHAPE = (2, 4, 4)


def tiny_builder(seed: int = 0, acc_bits: int = 32) -> GraphBuilder:
    """input int4 [2,4,4] -> conv1 3x3 p1 (2->3) -> act1 (clamp int4 signed) -> conv2 3x3 p1 depthwise
    -> act2 = clamp_uint4(conv2 + act1 residual) -> pool (avgpool_sum) -> fc (3->4) -> logits int8;
    plus a side branch sgn = sign(conv2). Shifts 0, 1 and 2 make ties (``.5``) frequent, including
    negative ones; the clamps saturate; small ``acc_bits`` at run time make the accumulators wrap."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(TINY_INPUT_SHAPE, fmt(4, True), 0.25, acc_bits=acc_bits, model="tiny")
    w1 = rng.integers(-7, 8, size=(3, 2, 3, 3))
    a1 = b.conv("conv1", "input", w1, fmt(4, True, "narrow"), padding=1)
    act1 = b.requant(
        "act1", [(a1, np.array([1, 3, -2]), np.array([1, -2, 0]))], np.array([1, 2, 0]), fmt(4, True), 0.5
    )
    w2 = rng.integers(-1, 2, size=(3, 1, 3, 3))
    a2 = b.conv("conv2", act1, w2, fmt(2, True, "ternary"), padding=1, groups=3)
    act2 = b.requant(
        "act2",
        [(a2, np.array([5, 1, 2]), np.array([3, 0, -1])), (act1, np.array([2, 1, 1]), None)],
        np.array([2, 1, 1]),
        fmt(4, False),
        0.5,
    )
    b.requant(
        "sgn",
        [(a2, np.array([1, 1, 1]), np.array([0, 1, -1]))],
        np.array([1, 1, 1]),
        fmt(2, True, "binary"),
        1.0,
        function="sign",
    )
    pool = b.avgpool("pool", act2)
    wf = rng.integers(-3, 4, size=(4, 3))
    af = b.linear("fc", pool, wf, fmt(3, True, "narrow"))
    b.requant(
        "logits",
        [(af, np.array([3, 1, 2, 1]), np.array([0, 5, -5, 2]))],
        np.array([2, 0, 1, 1]),
        fmt(8, True),
        0.1,
    )
    return b


def tiny_bundle(path: Path, seed: int = 0, acc_bits: int = 32, reference_images: int = 0) -> Path:
    """Write the tiny net (see :func:`tiny_builder`), optionally with a reference from the emulator."""
    b = tiny_builder(seed, acc_bits)
    b.write(path, "logits")
    if reference_images:
        bundle = load_bundle(path)
        codes = tiny_inputs(reference_images, seed)
        labels = np.random.default_rng(seed + 1).integers(0, 4, size=reference_images)
        b.write(path, "logits", reference_from_emulator(bundle, codes, labels))
    return path


def tiny_inputs(n: int, seed: int = 0) -> np.ndarray:
    """Random int4 input codes ``[n, 2, 4, 4]`` covering the whole range [-8, 7]."""
    return np.random.default_rng(seed + 100).integers(-8, 8, size=(n, *TINY_INPUT_SHAPE)).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# A random ResNet20-shaped bundle (CIFAR-10: 3x32x32 -> 10 classes)
# ----------------------------------------------------------------------------------------------


def _weights(rng: np.random.Generator, shape: tuple[int, ...], w_bits: int) -> np.ndarray:
    if w_bits == 1:
        return rng.choice(np.array([-1, 1]), size=shape)
    wmax = (1 << (w_bits - 1)) - 1
    return rng.integers(-wmax, wmax + 1, size=shape)


def _w_format(w_bits: int) -> dict[str, Any]:
    return fmt(2, True, "binary", nominal_bits=1) if w_bits == 1 else fmt(w_bits, True, "narrow")


def _multipliers(reals: list[np.ndarray], mult_bits: int = 32) -> tuple[list[np.ndarray], np.ndarray]:
    """Per-channel mantissas for several inputs sharing one shift per channel (as the export would)."""
    stacked = np.abs(np.stack(reals))
    shifts = np.array([quantize_multiplier(float(r), mult_bits).shift for r in stacked.max(axis=0)])
    mants = [np.floor(r * 2.0**shifts + 0.5).astype(np.int64) for r in reals]
    return mants, shifts.astype(np.int64)


def random_resnet20_bundle(
    path: Path,
    w_bits: int = 4,
    a_bits: int = 4,
    seed: int = 0,
    reference_images: int = 0,
    acc_bits: int = 32,
) -> Path:
    """Write a ResNet20-shaped bundle with random codes of the given widths (valid, but untrained).

    Shapes follow ResNet20 for CIFAR-10: conv1 3->16, three stages of three basic blocks (16, 32, 64
    channels; stride 2 and a 1x1 conv shortcut at the first block of stages 2 and 3), global average
    pool, fc 64->10; activations unsigned ``a_bits`` after each ReLU, input int8 (narrow), logits
    int16. Multipliers are set so that accumulators map to a few dozen percent of the activation
    range (the distribution of a trained net is not the point; the shapes and widths are).
    With ``reference_images``, a reference.npz is added from random images (its codes are the
    emulator's own).
    """
    rng = np.random.default_rng(seed)
    amax = (1 << a_bits) - 1
    wrms = max(1.0, ((1 << (w_bits - 1)) - 1) / math.sqrt(3))
    in_scale = 2.2 / 127
    b = GraphBuilder(
        (3, 32, 32), fmt(8, True, "narrow"), in_scale, acc_bits=acc_bits, model="resnet20-random"
    )
    b.graph["quantization"] = {"w_bits": w_bits, "a_bits": a_bits, "source": "random_resnet20_bundle"}
    act_fmt = fmt(a_bits, False)

    def conv_requant(
        name: str,
        x: str,
        c_out: int,
        stride: int,
        a_rms: float,
        residual: list[tuple[str, float]] | None = None,
    ) -> str:
        c_in = b.shape(x)[0]
        acc = b.conv(
            f"{name}.conv",
            x,
            _weights(rng, (c_out, c_in, 3, 3), w_bits),
            _w_format(w_bits),
            stride=stride,
            padding=1,
        )
        acc_std = math.sqrt(c_in * 9) * wrms * a_rms
        reals = [(amax / 3) / acc_std * rng.uniform(0.8, 1.25, size=c_out)]
        tensors = [acc]
        biases = [np.round(rng.normal(0, 0.3 * acc_std, size=c_out)).astype(np.int64)]
        for tensor, res_real in residual or []:
            reals.append(np.broadcast_to(res_real, (c_out,)))
            tensors.append(tensor)
            biases.append(None)
        mants, shift = _multipliers(reals)
        inputs = list(zip(tensors, mants, biases, strict=True))
        return b.requant(name, inputs, shift, act_fmt, 0.1)

    x = conv_requant("conv1", "input", 16, 1, a_rms=127 / 3)
    a_rms = amax / 2.5
    for stage, channels in enumerate((16, 32, 64), start=1):
        for block in range(3):
            name = f"layer{stage}.{block}"
            stride = 2 if stage > 1 and block == 0 else 1
            h = conv_requant(f"{name}.relu1", x, channels, stride, a_rms)
            if stride == 1:
                shortcut = [(x, 0.5)]
            else:
                c_in = b.shape(x)[0]
                sc = b.conv(
                    f"{name}.shortcut",
                    x,
                    _weights(rng, (channels, c_in, 1, 1), w_bits),
                    _w_format(w_bits),
                    stride=2,
                )
                sc_real = 0.5 * (amax / 3) / (math.sqrt(c_in) * wrms * a_rms)
                shortcut = [(sc, sc_real)]
            x = conv_requant(f"{name}.relu2", h, channels, 1, a_rms, residual=shortcut)
    pool = b.avgpool("avgpool", x)
    fc = b.linear("fc", pool, _weights(rng, (10, 64), w_bits), _w_format(w_bits))
    fc_std = math.sqrt(64) * wrms * a_rms * 64
    mants, shift = _multipliers([2000.0 / fc_std * rng.uniform(0.8, 1.25, size=10)])
    b.requant("logits", [(fc, mants[0], np.zeros(10, dtype=np.int64))], shift, fmt(16, True), 0.01)
    b.write(path, "logits")
    if reference_images:
        bundle = load_bundle(path)
        images = np.random.default_rng(seed + 7).integers(
            0, 256, size=(reference_images, 32, 32, 3), dtype=np.uint8
        )
        labels = np.random.default_rng(seed + 8).integers(0, 10, size=reference_images)
        b.write(path, "logits", reference_from_emulator(bundle, quantize_images(images, bundle), labels))
    return path
