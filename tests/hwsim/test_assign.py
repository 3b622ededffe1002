"""hwsim.assign and `hwsim assign`: the program's optimum is the brute-force one, verification measures
the whole narrowed network and rejects what breaks the floor, and the config it writes is one qat takes."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hwsim import assign as A
from hwsim.bundle import Bundle, load_bundle
from hwsim.bundle.synthetic import tiny_bundle
from hwsim.cli import main
from hwsim.emulator import EmulatorConfig, emulate
from hwsim.hwconfig import load_hw_config
from hwsim.sweep import SweepResult, narrow_tensor, sweep_bundle

ROOT = Path(__file__).resolve().parents[2]
HW = ROOT / "configs" / "hw" / "ws_8x8.yaml"
WIDTHS = [2, 3, 4]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("tiny") / "b", reference_images=24)


@pytest.fixture(scope="module")
def setup(tiny: Path) -> tuple[Bundle, SweepResult, SweepResult, A.Problem]:
    bundle = load_bundle(tiny)
    codes = bundle.reference.input_codes
    w = sweep_bundle(bundle, "w_bits", WIDTHS, codes)
    act = sweep_bundle(bundle, "act_bits", WIDTHS, codes)
    return bundle, w, act, A.build_problem(bundle, load_hw_config(HW), w, act)


def _all_widths(problem: A.Problem) -> list[dict[str, int]]:
    keys = [u.key for u in problem.units]
    return [dict(zip(keys, c, strict=True)) for c in itertools.product(*(u.choices for u in problem.units))]


@pytest.mark.parametrize("objective", list(A.METRICS))
@pytest.mark.parametrize("noise_budget", [0.0, 0.05, 0.2, math.inf])
@pytest.mark.parametrize("bound_latency", [False, True])
def test_the_optimum_is_the_brute_force_one(
    setup: tuple, objective: str, noise_budget: float, bound_latency: bool
) -> None:
    problem = setup[3]
    every = _all_widths(problem)
    assert len(every) >= 100  # the instance is not trivial
    quiet = [w for w in every if problem.predicted_noise(w) <= noise_budget * (1 + 1e-9)]
    budgets = {}
    if bound_latency:  # a bound that about half of the quiet enough choices meet
        budgets["latency"] = sorted(problem.cost(w)["latency"] for w in quiet)[len(quiet) // 2]
    fits = [w for w in quiet if problem.cost(w)["latency"] <= budgets.get("latency", math.inf)]
    best = min(problem.cost(w)[objective] for w in fits)
    found = A.solve(problem, objective, noise_budget, budgets)
    assert found is not None
    assert found in fits
    assert problem.cost(found)[objective] == pytest.approx(best, rel=1e-9)
    # the layer options priced in the table are the layer's own result at those widths
    for result, row in zip(problem.layer_results(found), problem.layers, strict=True):
        cost = row.costs[row.options.index(tuple(found[k] for k in row.units))]
        assert result.energy_nj / 1000 == cost[list(A.METRICS).index("energy")]


def test_cuts_and_an_impossible_budget(setup: tuple) -> None:
    problem = setup[3]
    first = A.solve(problem, "energy", math.inf)
    assert first is not None
    second = A.solve(problem, "energy", math.inf, cuts=[first])
    assert second is not None and second != first
    assert problem.cost(second)["energy"] >= problem.cost(first)["energy"]
    least = min(problem.cost(w)["latency"] for w in _all_widths(problem))
    assert A.solve(problem, "energy", math.inf, {"latency": least * 0.999}) is None


def test_verification_emulates_the_whole_narrowed_network(setup: tuple) -> None:
    # one unit narrowed at a time: the verification's SQNR and agreement are the sweep's for that point;
    # two units: the emulation of the bundle rewritten by hand
    bundle, w, act, problem = setup
    inputs = A.inputs_for(bundle, bundle.reference.input_codes, None, None)
    for sweep, kind in ((w, "weight"), (act, "activation")):
        for p in sweep.points:
            unit = problem.unit(f"{kind}:{p.layer}")
            if p.bits not in unit.choices or p.bits == unit.bundle_bits:
                continue
            widths = {**problem.bundle_widths(), unit.key: p.bits}
            c = A.verify(problem, inputs, "one", widths, 0.5)
            assert (c.sqnr_db, c.agreement) == (p.sqnr_db, p.agreement), p
    widths = {**problem.bundle_widths(), "activation:act1": 2, "activation:input": 3}
    by_hand = narrow_tensor(narrow_tensor(bundle, "input", 3), "act1", 2)
    logits = emulate(by_hand, inputs.codes, EmulatorConfig(), keep=False).logits
    c = A.verify(problem, inputs, "two", widths, 0.5)
    assert c.agreement == float(np.mean(np.argmax(logits, 1) == inputs.reference))


def test_verification_rejects_what_the_prediction_lets_through(setup: tuple) -> None:
    # every unit predicted free: the program narrows everything, the emulation says the floor breaks,
    # the solution is rejected and cut, and what is kept does hold the floor
    bundle, _, _, problem = setup
    blind = replace(problem, units=tuple(replace(u, noise=(0.0,) * len(u.choices)) for u in problem.units))
    inputs = A.inputs_for(bundle, bundle.reference.input_codes, None, None)
    floor = 0.95
    result = A.assign(blind, inputs, "energy", floor)
    assert not result.tries[0].passed and result.tries[0].agreement < floor
    assert all(u.choices[0] == result.tries[0].widths[u.key] for u in blind.units)
    assert result.chosen.agreement >= floor
    assert result.chosen.widths != result.tries[0].widths
    assert any("rejected" in n for n in result.notes)


def test_assign_keeps_the_floor_and_beats_or_ties_greedy(setup: tuple) -> None:
    bundle, _, _, problem = setup
    inputs = A.inputs_for(bundle, bundle.reference.input_codes, None, None)
    result = A.assign(problem, inputs, "energy", 0.9)
    assert result.chosen.passed and result.chosen.agreement >= 0.9
    labels = [b.label for b in result.baselines]
    assert labels == ["bundle", "uniform 8-bit", "uniform 6-bit", "uniform 4-bit", "greedy"]
    greedy = result.baselines[-1]
    if greedy.passed:  # both within the same predicted budget; the program's optimum is not worse
        assert result.chosen.cost["energy"] <= greedy.cost["energy"] * (1 + 1e-9)
    uniform = A.uniform(problem, 3)
    assert all(uniform[u.key] == min(3, u.bundle_bits) for u in problem.units)


def test_quant_config_is_one_qat_takes(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import yaml

    from qat.config import load_config
    from qat.models import build_model

    bundle = load_bundle(ROOT / "hwsim" / "pretrained" / "bundles" / "dorefa_a8w8")
    codes = bundle.reference.input_codes[:4]
    w = sweep_bundle(bundle, "w_bits", [5], codes, layers=["layer3.2.conv2", "fc"])
    act = sweep_bundle(bundle, "act_bits", [4], codes, layers=["input", "layer3.2.act1"])
    problem = A.build_problem(bundle, load_hw_config(HW), w, act)
    widths = {**problem.bundle_widths(), "weight:layer3.2.conv2": 5, "activation:layer3.2.act1": 4}
    widths["activation:input"] = 4
    chosen = A.verify(problem, A.inputs_for(bundle, codes, None, None), "x", widths, 0.0)
    config = A.quant_config(A.Assignment(problem, "energy", 0.0, {}, chosen, [], []))
    path = tmp_path / "assignment.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    modules = dict(build_model("resnet20", load_config(path)).named_modules())
    assert modules["layer3.2.conv2.weight_quant"].spec.bits == 4  # DoReFa: 5-bit odd codes are 4-bit weights
    assert modules["layer3.2.conv2.weight_quant"].fmt.bits == 5
    assert modules["layer3.2.act1"].spec.bits == 4
    assert modules["layer3.1.act1"].spec.bits == 8 and modules["fc.weight_quant"].spec.bits == 8
    assert config["input"]["bits"] == 4


def test_cli_runs_reuses_sweeps_and_refuses_foreign_ones(tmp_path: Path, tiny: Path, capsys) -> None:
    common = ["--images", "24", "--range", "2..4", "--no-progress", "--jobs", "1"]
    assert (
        main(
            [
                "assign",
                str(tiny),
                "--hw",
                str(HW),
                "--min-agreement",
                "0.9",
                "--report",
                str(tmp_path / "a"),
                *common,
            ]
        )
        == 0
    )
    for name in ("report.json", "assignment.yaml", "pareto.png", "units.csv", "candidates.csv"):
        assert (tmp_path / "a" / name).is_file(), name
    for what in ("w_bits", "act_bits"):
        assert main(["sweep", str(tiny), "--what", what, "--report", str(tmp_path / what), *common]) == 0
    sweeps = ["--sweeps", str(tmp_path / "w_bits"), str(tmp_path / "act_bits")]
    args = ["assign", str(tiny), "--hw", str(HW), "--min-agreement", "0.9", *sweeps, *common]
    assert main([*args, "--report", str(tmp_path / "b")]) == 0
    first, again = (json.loads((tmp_path / d / "report.json").read_text())["totals"] for d in ("a", "b"))
    assert first["candidates"] == again["candidates"]
    assert (tmp_path / "a" / "assignment.yaml").read_text() == (
        tmp_path / "b" / "assignment.yaml"
    ).read_text()
    capsys.readouterr()
    other = tiny_bundle(tmp_path / "other", seed=5, reference_images=24)
    assert (
        main(["assign", str(other), "--hw", str(HW), *sweeps, *common, "--report", str(tmp_path / "c")]) == 2
    )
    err = capsys.readouterr().err
    assert "another bundle" in err and "Traceback" not in err
    assert not (tmp_path / "c").exists()
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "assign",
                str(tiny),
                "--hw",
                str(HW),
                "--budget",
                "speed=3",
                "--report",
                str(tmp_path / "d"),
                *common,
            ]
        )
    assert exc.value.code == 2 and "METRIC=VALUE" in capsys.readouterr().err
