"""Regenerate scalesim_resnet20.csv: SCALE-Sim 3.0.0's COMPUTE_REPORT cycles for ResNet20's conv layers.

Not part of the test suite (it needs SCALE-Sim, which lives in its own virtualenv; see README.md).
Run it with that virtualenv's interpreter:

    /tmp/scalesim-venv/bin/python tests/hwsim/goldens/make_scalesim_goldens.py [--only 16x16-ws]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "scalesim_resnet20.csv"

# ResNet20 for CIFAR-10 (32x32x3 input), every conv layer, inputs pre-padded as SCALE-Sim expects:
# (name, ifmap_h, ifmap_w, filter_h, filter_w, channels, num_filters, stride). The 1x1 stride-2
# shortcut convs (option B) and the final linear layer (a 1x1 conv on a 1x1 map) are included.
TOPOLOGY = [
    ("conv1", 34, 34, 3, 3, 3, 16, 1),
    *[(f"layer1.{b}.conv{i}", 34, 34, 3, 3, 16, 16, 1) for b in range(3) for i in (1, 2)],
    ("layer2.0.conv1", 34, 34, 3, 3, 16, 32, 2),
    ("layer2.0.conv2", 18, 18, 3, 3, 32, 32, 1),
    ("layer2.0.shortcut.0", 32, 32, 1, 1, 16, 32, 2),
    *[(f"layer2.{b}.conv{i}", 18, 18, 3, 3, 32, 32, 1) for b in (1, 2) for i in (1, 2)],
    ("layer3.0.conv1", 18, 18, 3, 3, 32, 64, 2),
    ("layer3.0.conv2", 10, 10, 3, 3, 64, 64, 1),
    ("layer3.0.shortcut.0", 16, 16, 1, 1, 32, 64, 2),
    *[(f"layer3.{b}.conv{i}", 10, 10, 3, 3, 64, 64, 1) for b in (1, 2) for i in (1, 2)],
    ("fc", 1, 1, 1, 1, 64, 10, 1),
]

ARRAYS = [(8, 8), (16, 16), (32, 32), (8, 32), (32, 8)]
# SCALE-Sim 3.0.0's own dataflows (its config's "Dataflow :"), spelled out: this script runs in
# SCALE-Sim's virtualenv, without hwsim. They are also names in hwsim's registry
# (hwsim.dataflows); test_timing.py fails for a registered dataflow that has no goldens here
# unless its WITHOUT_GOLDENS lists it with the reason.
DATAFLOWS = ["os", "ws", "is"]

CONFIG = """[general]
run_name = {name}

[architecture_presets]
ArrayHeight:    {rows}
ArrayWidth:     {cols}
IfmapSramSzkB:   64
FilterSramSzkB:  64
OfmapSramSzkB:   64
IfmapOffset:    0
FilterOffset:   10000000
OfmapOffset:    20000000
Bandwidth : 10
Dataflow : {dataflow}
MemoryBanks:   1
ReadRequestBuffer: 512
WriteRequestBuffer: 512

[layout]
IfmapCustomLayout: False
FilterCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 1
IfmapSRAMBankPort: 2
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 1
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""


def write_inputs(work: Path, rows: int, cols: int, dataflow: str) -> tuple[Path, Path, Path]:
    topo = work / "resnet20.csv"
    with topo.open("w") as f:
        f.write(
            "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
            "Num Filter, Strides,\n"
        )
        for row in TOPOLOGY:
            f.write(", ".join(str(x) for x in row) + ",\n")
    layout = work / "layout.csv"
    with layout.open("w") as f:
        f.write("Layer name," + ",".join(f"p{i}" for i in range(20)) + ",\n")
        for row in TOPOLOGY:
            f.write(row[0] + "," + ",".join("1" for _ in range(20)) + ",\n")
    cfg = work / "scale.cfg"
    cfg.write_text(
        CONFIG.format(name=f"resnet20_{rows}x{cols}_{dataflow}", rows=rows, cols=cols, dataflow=dataflow)
    )
    return topo, layout, cfg


def run_one(rows: int, cols: int, dataflow: str) -> tuple[list[list[str]], float]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        topo, layout, cfg = write_inputs(work, rows, cols, dataflow)
        logs = work / "logs"
        logs.mkdir()
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "scalesim.scale",
                "-c",
                str(cfg),
                "-t",
                str(topo),
                "-l",
                str(layout),
                "-p",
                str(logs),
                "-s",
                "N",
            ],
            check=True,
            cwd=work,
            stdout=subprocess.DEVNULL,
        )
        seconds = time.perf_counter() - start
        report = next(logs.rglob("COMPUTE_REPORT.csv"))
        lines = [[c.strip() for c in line.split(",")] for line in report.read_text().splitlines()[1:]]
        return [line for line in lines if line and line[0] != ""], seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="one run, e.g. 16x16-ws (prints, does not write the CSV)")
    args = parser.parse_args()
    if args.only:
        shape, dataflow = args.only.split("-")
        rows, cols = (int(x) for x in shape.split("x"))
        lines, seconds = run_one(rows, cols, dataflow)
        for line in lines:
            print(line)
        print(f"{seconds:.1f} s")
        return 0
    out_rows = []
    for rows, cols in ARRAYS:
        for dataflow in DATAFLOWS:
            lines, seconds = run_one(rows, cols, dataflow)
            print(f"{rows}x{cols} {dataflow}: {seconds:.1f} s", flush=True)
            for (name, *_), line in zip(TOPOLOGY, lines, strict=True):
                out_rows.append(
                    {
                        "rows": rows,
                        "cols": cols,
                        "dataflow": dataflow,
                        "layer": name,
                        "total_cycles_incl_prefetch": int(float(line[1])),
                        "total_cycles": int(float(line[2])),
                        "stall_cycles": int(float(line[3])),
                        "seconds": f"{seconds:.2f}",
                    }
                )
    tmp = OUT.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(out_rows[0]))
        writer.writeheader()
        writer.writerows(out_rows)
    tmp.replace(OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
