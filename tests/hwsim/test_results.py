"""hwsim.results: the columns come from the fields; one join between MAC layers and requantizers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from hwsim.bundle import load_bundle
from hwsim.bundle.synthetic import tiny_bundle
from hwsim.compare import compare_bundle
from hwsim.demo import reports_readme
from hwsim.hwconfig import HardwareConfig
from hwsim.results import JoinedLayer, MacLayerResult, RequantResult, join_layers, table, with_errors
from hwsim.simulate import simulate_bundle


def test_columns_joins_and_tables(tmp_path: Path) -> None:
    bundle = load_bundle(tiny_bundle(tmp_path / "tiny", reference_images=4))
    hw = HardwareConfig()
    sim = simulate_bundle(bundle, hw, bundle.reference.input_codes[:2])
    cmp = compare_bundle(bundle)
    # every field with help is a column, in field order; help carries the unit
    names = [f.name for f in dataclasses.fields(MacLayerResult) if f.name != "compared"]
    assert [c.name for c in MacLayerResult.columns()][: len(names)] == names
    rows, help_ = table(cmp.layers)
    assert list(rows[0]) == [
        c.name for c in RequantResult.columns() if any(r.get(c.name) is not None for r in rows)
    ]
    assert "min_acc_bits" not in rows[0]  # empty in every row: left out
    assert help_["sqnr_db"].endswith("(dB)")
    # MAC -> requantizer: conv2 feeds act2 and sgn (the last one named wins), fc feeds logits
    joined = {r.name: r for r in with_errors(sim.rows, cmp.layers)}
    assert joined["fc"].compared.name == "logits"
    assert joined["fc"].row()["mismatch_rate"] == cmp.layers[-1].mismatch_rate
    # requantizer -> MAC: a residual block's cost is the sum of its MAC nodes'
    layers = join_layers(
        cmp.layers, [sim.rows, sim.rows], [("a", hw.array.pes), ("b", 64)], [n.name for n in bundle.nodes]
    )
    act1 = next(j for j in layers if j.name == "act1").row()
    conv1 = joined["conv1"]
    assert act1["cycles"] == conv1.cycles and act1["energy_nj"] == conv1.energy_nj
    assert act1["energy_nj@b"] == conv1.energy_nj and act1["utilization@b"] == conv1.macs / (
        conv1.cycles * 64
    )
    assert {c.name for c in JoinedLayer.columns(["a", "b"])} >= {"energy_nj@b", "latency_us@b"}
    # a result survives the journal's plain data
    assert MacLayerResult.from_data(dataclasses.asdict(joined["fc"])) == joined["fc"]
    # reports/README.md lists every column of both granularities
    readme = reports_readme()
    assert all(f"`{c.name}`" in readme for c in [*MacLayerResult.columns(), *RequantResult.columns()])
