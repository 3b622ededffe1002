"""hwsim.plots.png_bytes, the one PNG renderer: it measures the tight box itself and draws each
figure once, and its bytes equal matplotlib's own ``savefig(bbox_inches="tight")`` (which draws
twice) for every plot the commands make: the demo's, ``hwsim simulate``'s (a grid too),
``hwsim sweep``'s, ``hwsim assign``'s and the learning curves."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from hwsim import plots
from hwsim.bundle.synthetic import tiny_bundle
from hwsim.cli import main
from hwsim.pretrained import curves

REPO = Path(__file__).resolve().parents[2]
HW = REPO / "configs" / "hw" / "ws_16x16.yaml"

Pair = tuple[bytes, bytes]  # (matplotlib's tight savefig, png_bytes)


@pytest.fixture
def rendered(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Pair]]:
    """Every figure a command renders, both ways (no data set: the demo runs on the reference images)."""
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    pairs: list[Pair] = []
    real: Callable[..., bytes] = plots.png_bytes

    def both(fig: Figure, dpi: int = 110, metadata: dict[str, str] | None = None) -> bytes:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata=metadata)
        got = real(fig, dpi, metadata)
        pairs.append((buf.getvalue(), got))
        return got

    monkeypatch.setattr(plots, "png_bytes", both)
    yield pairs


def test_every_plot_of_the_commands_is_the_bytes_of_a_tight_savefig(
    rendered: list[Pair], tmp_path: Path
) -> None:
    b = str(tiny_bundle(tmp_path / "in" / "b", reference_images=8))
    tiny_bundle(tmp_path / "in" / "bundles" / "tiny", reference_images=8)
    quiet = ["--no-progress"]
    runs = {
        "demo": [
            *("demo", "--bundles", str(tmp_path / "in" / "bundles"), "--out", str(tmp_path / "demo")),
            *("--jobs", "1", "--sim-images", "1", "--sweep-images", "4", "--precision-sweep", "all", *quiet),
        ],
        "simulate": [
            "simulate",
            b,
            "--hw",
            str(HW),
            "--images",
            "2",
            "--report",
            str(tmp_path / "sim"),
            *quiet,
        ],
        "grid": [
            *("simulate", b, "--hw", str(HW), "--grid", "rows=4,8", "--images", "1"),
            *("--jobs", "1", "--report", str(tmp_path / "grid"), *quiet),
        ],
        "sweep": [
            *("sweep", b, "--what", "acc_bits", "--range", "6..9", "--images", "4", "--jobs", "1"),
            *("--report", str(tmp_path / "sweep"), *quiet),
        ],
        "assign": [
            *("assign", b, "--hw", str(HW), "--range", "3..8", "--images", "4", "--jobs", "1"),
            *("--report", str(tmp_path / "assign"), *quiet),
        ],
    }
    counts = {}
    for name, argv in runs.items():
        before = len(rendered)
        assert main(argv) == 0, name
        counts[name] = len(rendered) - before
    before = len(rendered)
    assert curves.main(["--out", str(tmp_path / "curves.png")]) == 0
    counts["curves"] = len(rendered) - before
    assert all(counts.values()), counts  # every command drew through png_bytes
    different = [i for i, (want, got) in enumerate(rendered) if want != got]
    assert not different, f"{len(different)} of {len(rendered)} PNGs differ from a tight savefig"


NO_MATPLOTLIB_UNTIL_A_PLOT = """
import importlib, pkgutil, sys
import hwsim
from hwsim.cli import build_parser
from hwsim.plots import pyplot
build_parser()
for m in pkgutil.walk_packages(hwsim.__path__, "hwsim."):
    importlib.import_module(m.name)
print("before", any(m.split(".")[0] == "matplotlib" for m in sys.modules))
pyplot()
print("after", "matplotlib.pyplot" in sys.modules, sys.modules["matplotlib"].get_backend())
"""


def test_matplotlib_is_imported_by_the_first_plot_not_by_hwsim() -> None:
    # it is most of a command's start-up: `hwsim --help` took 1.6 s with it, 0.7 s without
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    run = subprocess.run(
        [sys.executable, "-c", NO_MATPLOTLIB_UNTIL_A_PLOT],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["before", "False", "after", "True", "Agg"], run.stdout
