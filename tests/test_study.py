"""The strategies study (pipeline/studies/study.py): its rows resolve to params, its figure reads the trials."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from pipeline.params import load_params
from pipeline.studies.study import DEFAULT_ROWS, STRATEGY_STUDY, parse_row
from pipeline.studies.sweep import SweepError
from pipeline.studies.trial_outputs import dynamics_figure

REPO = Path(__file__).resolve().parents[1]


def test_every_study_row_is_valid_params_on_top_of_all_strategies_off():
    for label in STRATEGY_STUDY:
        params = load_params(REPO / "params.yaml", list(parse_row(label).overrides))
        switched = {name for name in ("rfs", "pld", "tgd") if getattr(params, name).enabled}
        named = {o.split(".")[0] for o in STRATEGY_STUDY[label] if o.endswith(".enabled=true")}
        assert switched == named, label
    params = load_params(REPO / "params.yaml", list(parse_row("RFS literal").overrides))
    assert params.rfs.reading == "literal" and not params.pld.enabled
    assert set(DEFAULT_ROWS) <= set(STRATEGY_STUDY)
    # the `consistent` full row is the cpu profile's MOTRv3 itself; the `track_aware` one differs
    # from it in PLD's reading only
    profile = load_params(REPO / "params.yaml")
    full = load_params(REPO / "params.yaml", list(parse_row("MOTRv3 consistent").overrides))
    assert (full.rfs, full.pld, full.tgd) == (profile.rfs, profile.pld, profile.tgd)
    aware = load_params(REPO / "params.yaml", list(parse_row("MOTRv3 detfile").overrides))
    assert aware.pld.reading == "track_aware" and aware.pld != profile.pld
    assert (aware.rfs, aware.tgd) == (profile.rfs, profile.tgd)
    assert aware.pld.model_copy(update={"reading": profile.pld.reading}) == profile.pld
    # the default rows are Table 3's six, each strategy at the profile's own reading
    assert len(DEFAULT_ROWS) == 6 and DEFAULT_ROWS[-1] == "MOTRv3 consistent"
    for label in DEFAULT_ROWS:
        row = load_params(REPO / "params.yaml", list(parse_row(label).overrides))
        for name in ("rfs", "pld", "tgd"):
            if getattr(row, name).enabled:
                assert getattr(row, name) == getattr(profile, name), (label, name)


def test_a_custom_row_and_an_unknown_label():
    row = parse_row("mine=rfs.enabled=true, rfs.layers=[0]")
    assert row.label == "mine" and row.overrides[-2:] == ("rfs.enabled=true", "rfs.layers=[0]")
    assert load_params(REPO / "params.yaml", list(row.overrides)).rfs.layers == [0]
    with pytest.raises(SweepError, match="not a study row"):
        parse_row("no such row")


def test_dynamics_figure_averages_the_seeds_of_each_row(tmp_path):
    rows_dir = tmp_path / "rows"
    for seed, share in ((0, [0.1, 0.3]), (1, [0.3, 0.5])):
        model = rows_dir / f"rfs-literal-s{seed}-0123456789" / "model"
        model.mkdir(parents=True)
        epochs = [
            {"epoch": e, "assign/early_track_share": v, "assign/misaligned_share": 0.5}
            for e, v in enumerate(share)
        ]
        (model / "assignment_stats.json").write_text(json.dumps({"method": "motrv3", "epochs": epochs}))
    written = dynamics_figure([parse_row("RFS literal"), parse_row("PLD")], rows_dir, tmp_path / "dyn.png")
    assert [p.name for p in written] == ["dyn.png", "dyn.csv"] and written[0].stat().st_size > 0
    table = list(csv.DictReader(written[1].open()))
    shares = [
        (r["epoch"], float(r["mean"]), r["seeds"]) for r in table if r["statistic"] == "early_track_share"
    ]
    assert shares == [("1", pytest.approx(0.2), "2"), ("2", pytest.approx(0.4), "2")]
    assert {r["row"] for r in table} == {"RFS literal"}  # PLD has no finished trial
    assert dynamics_figure([parse_row("PLD")], rows_dir, tmp_path / "none.png") == []
