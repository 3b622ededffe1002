"""A complete ResNet20 stage-1 3x3 conv at a4w4 through the RTL, fold by fold: codes and cycles equal hwsim's.

The layer (``layer1.0.relu1.conv``: M = 32*32 = 1024 output pixels, K = 16*3*3 = 144, N = 16) comes
from a random but valid ResNet20-shaped bundle (hwsim.bundle.synthetic) run by the emulator on one
random image. array_top (8x8, acc24 wrap, configs/hw/ws_8x8.yaml) computes its accumulators from
the im2col'd input codes in 2 N-folds x 18 K-folds; they must equal hwsim's array model and the emulator's
accumulators, the RTL cycle counter must equal hwsim's cycle count, and requant.v must turn the
RTL's accumulators into exactly the emulator's output codes of ``layer1.0.relu1``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import HW_DIR, assert_passed, require_simulator

from hwsim.bundle import Conv2dNode, RequantNode, load_bundle
from hwsim.bundle.synthetic import random_resnet20_bundle
from hwsim.emulator import EmulatorConfig, emulate
from hwsim.fixed import IntFormat
from hwsim.gemm import im2col, weight_matrix
from hwsim.hwconfig import load_hw_config, requant_parameters
from hwsim.vectors import make_vector_set, write_vectors
from rtl_models.sim import run_testbench

pytestmark = pytest.mark.rtl

CONV = "layer1.0.relu1.conv"
HW = "ws_8x8.yaml"


@pytest.fixture(scope="module")
def layer(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The layer's GEMM, the emulator's accumulators and codes, and its requantizer constants."""
    where = tmp_path_factory.mktemp("resnet20")
    bundle = load_bundle(random_resnet20_bundle(where / "bundle", w_bits=4, a_bits=4, seed=3))
    hw = load_hw_config(HW_DIR / HW)
    image = np.random.default_rng(5).integers(-127, 128, size=(1, 3, 32, 32))
    run = emulate(bundle, image, EmulatorConfig(acc_bits=hw.pe.acc_bits, overflow=hw.pe.overflow))
    conv = bundle.node(CONV)
    requant = next(
        n
        for n in bundle.nodes
        if isinstance(n, RequantNode) and [i.tensor for i in n.inputs] == [conv.output]
    )
    assert isinstance(conv, Conv2dNode)
    a = im2col(run.tensors[conv.input], conv)[0]
    w = weight_matrix(conv)[0]
    acc = run.tensors[conv.output][0]  # [N=16, 32, 32]
    codes = run.tensors[requant.output][0]
    in_fmt = bundle.tensors[conv.input].fmt.int_format
    out_fmt = bundle.tensors[requant.output].fmt.int_format
    assert a.shape == (1024, 144) and w.shape == (144, 16)
    return {
        "a": a,
        "w": w,
        "acc": acc.reshape(16, -1).T,
        "codes": codes.reshape(16, -1).T,
        "hw": hw,
        "a_fmt": in_fmt,
        "w_fmt": IntFormat(conv.weight_format.bits, True),
        "out_fmt": out_fmt,
        "mult_bits": bundle.meta.mult_bits,
        "requant": requant,
    }


# Icarus needs about a minute for the 37,656 cycles plus buffer loading (the other Icarus tests
# cover every testbench); Verilator runs it in seconds in the default suite.
@pytest.mark.parametrize("sim", [pytest.param("icarus", marks=pytest.mark.slow), "verilator"])
def test_resnet20_stage1_conv(sim: str, layer: dict, tmp_path: Path) -> None:
    require_simulator(sim)
    vs = make_vector_set(
        layer["a"], layer["w"], layer["hw"], a_fmt=layer["a_fmt"], w_fmt=layer["w_fmt"], name=CONV
    )
    assert np.array_equal(vs.expected, layer["acc"]), "hwsim's array model and the emulator disagree"
    vectors = write_vectors(vs, tmp_path / "vectors")
    params = {**vs.parameters, "ADDR_BITS": vs.addr_bits}
    result = run_testbench(
        "array_top",
        sim,
        params,
        "tb_array_top",
        config={"vectors": [str(vectors)], "dump": str(tmp_path)},
        testcase="array_top_vectors",
        name="layer",
    )
    assert_passed(result)
    rtl_acc = np.load(tmp_path / f"{CONV}.rtl_y.npy")
    assert np.array_equal(rtl_acc, layer["acc"])

    # The requantizer stage on the RTL's accumulators: codes must be the emulator's.
    rq = layer["requant"]
    n = rtl_acc.shape[1]
    channel = np.tile(np.arange(n), rtl_acc.shape[0])
    item = rq.inputs[0]
    zeros = np.zeros(rtl_acc.size, dtype=np.int64)
    stimulus = tmp_path / "requant.npz"
    np.savez(
        stimulus,
        x0=rtl_acc.reshape(-1),
        b0=item.bias[channel],
        m0=item.multiplier[channel],
        x1=zeros,
        b1=zeros,
        m1=zeros,
        shift=rq.shift[channel],
        func_sign=zeros,
        expected=layer["codes"].reshape(-1),
    )
    rq_params = requant_parameters(layer["out_fmt"], rq.rounding, x_bits=32, mult_bits=layer["mult_bits"])
    result = run_testbench(
        "requant",
        sim,
        rq_params,
        "tb_requant",
        config={"stimulus": str(stimulus)},
        testcase="requant_stimulus_file",
        name="layer",
    )
    assert_passed(result)
