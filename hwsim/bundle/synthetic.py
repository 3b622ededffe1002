"""Synthetic bundles for tests and benchmarks: a tiny net with every op, and a random ResNet20.

Place in the flow: stands in for ``qat export`` where a test or a benchmark needs a bundle it fully
controls. Everything is built through :class:`hwsim.bundle.build.BundleBuilder`, so each bundle
obeys docs/export-format.md like an exported one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hwsim.bundle.build import BundleBuilder, save_bundle
from hwsim.bundle.graph import Bundle, Reference, quantize_images
from hwsim.bundle.load import load_bundle
from hwsim.cifar10 import CIFAR10_MEAN, CIFAR10_STD
from hwsim.fixed import CodeFormat, quantize_multiplier

SOURCE = "hwsim.bundle.synthetic"


def fmt(bits: int, signed: bool, lattice: str = "full", nominal_bits: int | None = None) -> CodeFormat:
    """A code format, positionally: ``fmt(4, True, "narrow")``."""
    return CodeFormat(bits, signed, nominal_bits, lattice)


def builder(
    input_shape: tuple[int, int, int],
    input_format: CodeFormat,
    input_scale: float,
    acc_bits: int | None = 32,
    mult_bits: int = 32,
    model: str = "test",
    rounding: str = "half_up",
) -> BundleBuilder:
    """A :class:`BundleBuilder` with its input declared (CIFAR-10 mean and std, cycled over the channels)."""
    b = BundleBuilder(
        model=model,
        mult_bits=mult_bits,
        acc_bits=acc_bits,
        rounding=rounding,
        quantization={"source": SOURCE},
    )
    channels = input_shape[0]
    b.input(
        input_format,
        input_scale,
        input_shape,
        (CIFAR10_MEAN * channels)[:channels],
        (CIFAR10_STD * channels)[:channels],
    )
    return b


def reference_from_emulator(
    bundle: Bundle, input_codes: np.ndarray, labels: np.ndarray | None = None
) -> Reference:
    """A reference batch whose codes are the emulator's own (perturb them to test compare)."""
    from hwsim.emulator import emulate

    run = emulate(bundle, input_codes)
    n = input_codes.shape[0]
    codes, floats = {}, {}
    for name, spec in bundle.tensors.items():
        if spec.kind == "codes" and name != bundle.meta.input_tensor:
            codes[name] = run.tensors[name]
            floats[name] = run.tensors[name].astype(np.float32) * np.float32(spec.scale)
    labels = (labels if labels is not None else np.full(n, -1)).astype(np.int64)
    return Reference(input_codes.astype(np.int64), labels, codes, floats, device="cpu")


def with_reference(bundle: Bundle, reference: Reference) -> Bundle:
    """``bundle`` with ``reference`` and graph.yaml's ``reference`` record."""
    from dataclasses import replace

    info = {"device": reference.device, "images": reference.images, "source": SOURCE}
    return replace(bundle, meta=replace(bundle.meta, reference=info), reference=reference)


# ----------------------------------------------------------------------------------------------
# The tiny net of the integer-exact tests
# ----------------------------------------------------------------------------------------------

TINY_INPUT_SHAPE = (2, 4, 4)


def tiny_builder(
    seed: int = 0, acc_bits: int = 32, rounding: str | Mapping[str, str] = "half_up"
) -> BundleBuilder:
    """input int4 [2,4,4] -> conv1 3x3 p1 (2->3) -> act1 (clamp int4 signed) -> conv2 3x3 p1 depthwise
    -> act2 = clamp_uint4(conv2 + act1 residual) -> pool (avgpool_sum) -> fc (3->4) -> logits int8;
    plus a side branch sgn = sign(conv2). Shifts 0, 1 and 2 make ties (``.5``) frequent, including
    negative ones; the clamps saturate; small ``acc_bits`` at run time make the accumulators wrap.
    Accumulators are named ``<node>.acc``; ``rounding`` is every requantizer's mode, or a mode per
    requantizer name (``act1``, ``act2``, ``sgn``, ``logits``; the others ``half_up``)."""
    rng = np.random.default_rng(seed)
    modes = {} if isinstance(rounding, str) else dict(rounding)
    default = rounding if isinstance(rounding, str) else "half_up"
    b = builder(TINY_INPUT_SHAPE, fmt(4, True), 0.25, acc_bits=acc_bits, model="tiny", rounding=default)
    w1 = rng.integers(-7, 8, size=(3, 2, 3, 3))
    a1 = b.conv2d("conv1", "input", w1, fmt(4, True, "narrow"), 0.05, padding=1, output="conv1.acc")
    act1 = b.requant(
        "act1",
        [(a1, np.array([1, 3, -2]), np.array([1, -2, 0]))],
        np.array([1, 2, 0]),
        fmt(4, True),
        0.5,
        rounding=modes.get("act1"),
    )
    w2 = rng.integers(-1, 2, size=(3, 1, 3, 3))
    a2 = b.conv2d("conv2", act1, w2, fmt(2, True, "ternary"), 0.05, padding=1, groups=3, output="conv2.acc")
    act2 = b.requant(
        "act2",
        [(a2, np.array([5, 1, 2]), np.array([3, 0, -1])), (act1, np.array([2, 1, 1]), None)],
        np.array([2, 1, 1]),
        fmt(4, False),
        0.5,
        rounding=modes.get("act2"),
    )
    b.requant(
        "sgn",
        [(a2, np.array([1, 1, 1]), np.array([0, 1, -1]))],
        np.array([1, 1, 1]),
        fmt(2, True, "binary"),
        1.0,
        function="sign",
        rounding=modes.get("sgn"),
    )
    pool = b.avgpool_sum("pool", act2)
    wf = rng.integers(-3, 4, size=(4, 3))
    af = b.linear("fc", pool, wf, fmt(3, True, "narrow"), 0.05, output="fc.acc")
    b.requant(
        "logits",
        [(af, np.array([3, 1, 2, 1]), np.array([0, 5, -5, 2]))],
        np.array([2, 0, 1, 1]),
        fmt(8, True),
        0.1,
        rounding=modes.get("logits"),
    )
    return b


def tiny_bundle(
    path: Path,
    seed: int = 0,
    acc_bits: int = 32,
    reference_images: int = 0,
    rounding: str | Mapping[str, str] = "half_up",
) -> Path:
    """Write the tiny net (see :func:`tiny_builder`), optionally with a reference from the emulator."""
    bundle = tiny_builder(seed, acc_bits, rounding).build("logits")
    if reference_images:
        codes = tiny_inputs(reference_images, seed)
        labels = np.random.default_rng(seed + 1).integers(0, 4, size=reference_images)
        bundle = with_reference(bundle, reference_from_emulator(bundle, codes, labels))
    return save_bundle(bundle, path)


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


def _w_format(w_bits: int) -> CodeFormat:
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
    ``acc_bits`` is graph.yaml's (at least the weights' worst case). With
    ``reference_images``, a reference.npz is added from random images (its codes are the
    emulator's own).
    """
    rng = np.random.default_rng(seed)
    amax = (1 << a_bits) - 1
    wrms = max(1.0, ((1 << (w_bits - 1)) - 1) / math.sqrt(3))
    in_scale = 2.2 / 127
    b = builder((3, 32, 32), fmt(8, True, "narrow"), in_scale, acc_bits=acc_bits, model="resnet20-random")
    b.quantization = {"w_bits": w_bits, "a_bits": a_bits, "source": "random_resnet20_bundle"}
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
        acc = b.conv2d(
            f"{name}.conv",
            x,
            _weights(rng, (c_out, c_in, 3, 3), w_bits),
            _w_format(w_bits),
            0.05,
            stride=stride,
            padding=1,
            output=f"{name}.conv.acc",
        )
        acc_std = math.sqrt(c_in * 9) * wrms * a_rms
        reals = [(amax / 3) / acc_std * rng.uniform(0.8, 1.25, size=c_out)]
        tensors = [acc]
        biases: list[np.ndarray | None] = [
            np.round(rng.normal(0, 0.3 * acc_std, size=c_out)).astype(np.int64)
        ]
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
                sc = b.conv2d(
                    f"{name}.shortcut",
                    x,
                    _weights(rng, (channels, c_in, 1, 1), w_bits),
                    _w_format(w_bits),
                    0.05,
                    stride=2,
                    output=f"{name}.shortcut.acc",
                )
                sc_real = 0.5 * (amax / 3) / (math.sqrt(c_in) * wrms * a_rms)
                shortcut = [(sc, sc_real)]
            x = conv_requant(f"{name}.relu2", h, channels, 1, a_rms, residual=shortcut)
    pool = b.avgpool_sum("avgpool", x)
    fc = b.linear("fc", pool, _weights(rng, (10, 64), w_bits), _w_format(w_bits), 0.05, output="fc.acc")
    fc_std = math.sqrt(64) * wrms * a_rms * 64
    mants, shift = _multipliers([2000.0 / fc_std * rng.uniform(0.8, 1.25, size=10)])
    b.requant("logits", [(fc, mants[0], np.zeros(10, dtype=np.int64))], shift, fmt(16, True), 0.01)
    bundle = b.build("logits")
    if reference_images:
        images = np.random.default_rng(seed + 7).integers(
            0, 256, size=(reference_images, 32, 32, 3), dtype=np.uint8
        )
        labels = np.random.default_rng(seed + 8).integers(0, 10, size=reference_images)
        bundle = with_reference(
            bundle, reference_from_emulator(bundle, quantize_images(images, bundle), labels)
        )
    return save_bundle(bundle, path)


__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "TINY_INPUT_SHAPE",
    "builder",
    "fmt",
    "load_bundle",
    "random_resnet20_bundle",
    "reference_from_emulator",
    "tiny_builder",
    "tiny_bundle",
    "tiny_inputs",
    "with_reference",
]
