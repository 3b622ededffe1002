"""The emulator's fast paths (float GEMMs and requantizers, images split across threads) equal its int64 path.

Every tensor, the logits, the predictions and every layer's statistics (overflow counts included)
must be equal (``==``) for any number of threads and tile size, in both overflow modes, at
accumulator widths wide enough never to overflow and narrow enough to overflow often, and for
every rounding mode of the requantizers.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from hwsim.bundle import Bundle, load_bundle
from hwsim.bundle.synthetic import random_resnet20_bundle, tiny_builder, tiny_inputs
from hwsim.emulator import (
    Emulation,
    EmulatorConfig,
    available_cores,
    default_threads,
    emulate,
    emulate_from,
    live_tensors,
)
from hwsim.errors import UserError
from hwsim.fixed import ROUNDING_MODES


def assert_same(fast: Emulation, ref: Emulation) -> None:
    assert fast.tensors.keys() == ref.tensors.keys()
    for name, value in ref.tensors.items():
        assert fast.tensors[name].dtype == np.int64
        assert np.array_equal(fast.tensors[name], value), name
    assert np.array_equal(fast.logits, ref.logits)
    assert np.array_equal(fast.predictions, ref.predictions)
    assert fast.layers == ref.layers  # elements, overflow counts, min/max/peak of the exact sums


@pytest.fixture(scope="module")
def resnets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Bundle]:
    root = tmp_path_factory.mktemp("parallel")
    # 4x4: float32 GEMMs; 8x8: some layers' bounds exceed 2**24, so float64 GEMMs
    return {
        f"{w}x{a}": load_bundle(random_resnet20_bundle(root / f"{w}x{a}", w, a, seed=3 * w + a))
        for w, a in ((4, 4), (8, 8))
    }


RESNET_CONFIGS = [
    EmulatorConfig(),
    EmulatorConfig(acc_bits=12),  # wrap, overflows in most layers
    EmulatorConfig(acc_bits=12, overflow="saturate"),
    EmulatorConfig(overflow="saturate"),  # wide: no clamp possible, the float path
    EmulatorConfig(acc_bits_per_layer={"layer1.0.relu1.conv": 10, "fc": 9}),
]


@pytest.mark.parametrize("widths", ["4x4", "8x8"])
@pytest.mark.parametrize("config", RESNET_CONFIGS, ids=lambda c: f"{c.acc_bits}-{c.overflow}")
def test_resnet20_fast_threads_equal_int64(
    resnets: dict[str, Bundle], widths: str, config: EmulatorConfig
) -> None:
    bundle = resnets[widths]
    codes = np.random.default_rng(7).integers(-127, 128, size=(5, 3, 32, 32))
    ref = emulate(bundle, codes, config, int64_only=True, threads=1)
    if config.acc_bits == 12:  # the narrow widths must really overflow, or they test nothing
        assert sum(s.overflow_count for s in ref.layers.values()) > 0
    for threads, batch in ((1, 256), (2, 2), (3, 1)):
        assert_same(emulate(bundle, codes, config, threads=threads, batch_size=batch), ref)


def test_resnet20_emulate_from_threads_equal_int64(resnets: dict[str, Bundle]) -> None:
    bundle = resnets["4x4"]
    codes = np.random.default_rng(8).integers(-127, 128, size=(4, 3, 32, 32))
    config = EmulatorConfig(acc_bits=13)
    full = emulate(bundle, codes, config, int64_only=True)
    start = "layer2.0.relu1.conv"
    given = {t: full.tensors[t] for t in live_tensors(bundle, start)}
    ref = emulate_from(bundle, start, given, config, keep=True, int64_only=True)
    for threads in (1, 2, 3):
        assert_same(emulate_from(bundle, start, given, config, keep=True, threads=threads, batch_size=1), ref)


@pytest.mark.parametrize("rounding", ROUNDING_MODES)
@pytest.mark.parametrize("acc_bits, overflow", [(32, "wrap"), (32, "saturate"), (7, "wrap"), (7, "saturate")])
def test_tiny_every_rounding_threads_equal_int64(rounding: str, acc_bits: int, overflow: str) -> None:
    bundle = tiny_builder(seed=2, rounding=rounding).build("logits")
    codes = tiny_inputs(23, seed=5)
    config = EmulatorConfig(acc_bits=acc_bits, overflow=overflow)
    ref = emulate(bundle, codes, config, int64_only=True)
    if acc_bits == 7:
        assert sum(s.overflow_count for s in ref.layers.values()) > 0
    for threads, batch in ((1, 256), (2, 3), (3, 1)):
        assert_same(emulate(bundle, codes, config, threads=threads, batch_size=batch), ref)


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_bad_thread_count_is_a_user_error(threads: object, tmp_path: Path) -> None:
    bundle = tiny_builder().build("logits")
    with pytest.raises(UserError, match="threads="):
        emulate(bundle, tiny_inputs(2), threads=threads)  # type: ignore[arg-type]


def test_default_threads_every_core_or_one_in_a_worker_process() -> None:
    assert default_threads() == available_cores() >= 1
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        assert pool.apply(default_threads) == 1  # its pool spreads the work over the cores
