"""The shared grid of birth thresholds: the moved thresholds, the per-row table and figure."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from pipeline.params import load_params
from pipeline.studies.operating_points import (
    at_birth_threshold,
    operating_points_figure,
    operating_points_section,
    points_as_metrics,
)

REPO = Path(__file__).resolve().parents[1]


def test_the_keep_threshold_moves_with_the_birth_threshold():
    params = load_params(
        REPO / "params.yaml", ["tracking.new_track_score=0.4", "tracking.keep_track_score=0.35"]
    )
    moved = at_birth_threshold(params, 0.3)
    assert moved.tracking.new_track_score == pytest.approx(0.3)
    assert moved.tracking.keep_track_score == pytest.approx(0.25)  # the profile's gap of 0.05 kept
    assert params.tracking.new_track_score == pytest.approx(0.4)  # the original is untouched
    assert at_birth_threshold(params, 0.02).tracking.keep_track_score == 0.0  # never below zero


def write_points(rows_dir: Path, slug: str, seed: int, points: dict[str, dict[str, float]]) -> None:
    trial = rows_dir / f"{slug}-s{seed}-0123456789"
    trial.mkdir(parents=True)
    (trial / "operating_points.json").write_text(json.dumps(points))


def test_section_gives_mean_std_per_threshold_and_the_best_point(tmp_path):
    rows = tmp_path / "rows"
    write_points(rows, "base", 0, {"0.30": {"HOTA": 40.0}, "0.40": {"HOTA": 46.0}})
    write_points(rows, "base", 1, {"0.30": {"HOTA": 42.0}, "0.40": {"HOTA": 44.0}})
    write_points(rows, "motrv3", 0, {"0.30": {"HOTA": 50.0}, "0.40": {"HOTA": 45.0}})
    lines = operating_points_section(["Base", "MOTRv3", "never ran"], rows)
    assert lines[2] == "|  | birth 0.30 | birth 0.40 | best of the grid |"
    assert lines[4] == "| Base | 41.0 ± 1.4 | 45.0 ± 1.4 | 45.0 ± 1.4 at 0.40 |"
    assert lines[5] == "| MOTRv3 | 50.0 | 45.0 | 50.0 at 0.30 |"  # one seed: no spread
    assert lines[6] == "| never ran | — | — | — |"
    assert operating_points_section(["Base"], tmp_path / "nothing") == []
    written = operating_points_figure(["Base", "MOTRv3"], rows, tmp_path / "points.png")
    assert [p.name for p in written] == ["points.png", "points.csv"] and written[0].stat().st_size > 0
    table = list(csv.DictReader(written[1].open()))
    assert {(r["row"], r["birth"], r["mean"]) for r in table if r["metric"] == "HOTA"} >= {
        ("Base", "0.30", "41.000")
    }


def test_points_become_flat_mlflow_metric_names():
    assert points_as_metrics({"0.30": {"HOTA": 41.0, "IDS": 2}}) == {
        "birth_0.30/HOTA": 41.0,
        "birth_0.30/IDS": 2.0,
    }


def test_a_real_track_and_score_at_each_threshold_and_only_the_missing_ones_on_rerun(tmp_path):
    """Random tiny weights: at birth 0 every detect query becomes a track (all false positives),
    at 0.99 none does."""
    from pipeline.studies.operating_points import track_operating_points
    from tests.test_track import make_checkpoint, make_synthetic_split, tiny_params

    params = tiny_params()
    _, clips = make_synthetic_split(tmp_path, params)
    checkpoint = make_checkpoint(tmp_path / "model" / "checkpoint.pt", params)
    trial = tmp_path / "trial"
    points = track_operating_points(params, checkpoint, clips, trial, [0.0, 0.99])
    assert sorted(points) == ["0.00", "0.99"]
    boxes = {key: sum(len(f.read_text().splitlines()) for f in (trial / "operating_points" / key / "results").glob("*.txt"))
             for key in points}  # fmt: skip
    assert boxes["0.00"] > 0 and boxes["0.99"] == 0
    assert points["0.00"]["MOTA"] < 0 and points["0.99"]["MOTA"] == 0  # false positives only at 0
    stored = json.loads((trial / "operating_points.json").read_text())
    assert stored == points
    (trial / "operating_points" / "0.00").rename(trial / "kept-aside")  # a rerun must not redo 0.00
    again = track_operating_points(params, checkpoint, clips, trial, [0.0, 0.99, 0.5])
    assert sorted(again) == ["0.00", "0.50", "0.99"] and again["0.00"] == points["0.00"]
    assert not (trial / "operating_points" / "0.00").exists()


def test_a_threshold_outside_0_1_is_refused_naming_the_field():
    from pipeline.params import ParamsError

    with pytest.raises(ParamsError, match="birth_thresholds"):
        load_params(REPO / "params.yaml", ["sweep.birth_thresholds=[0.4, 1.5]"])


def test_duplicates_section_reads_each_trials_metrics(tmp_path):
    from pipeline.studies.trial_reports import duplicates_section

    rows = tmp_path / "rows"
    scored = {"DetPr": 60.0, "DupShare": 20.0, "DupTwin": 10, "DupDrift": 30, "ScoreTP": 0.5, "ScoreDup": 0.4}
    for seed, share in ((0, 20.0), (1, 24.0)):
        trial = rows / f"motrv3-s{seed}-0123456789"
        trial.mkdir(parents=True)
        (trial / "metrics.json").write_text(json.dumps({**scored, "DupShare": share}))
    old = rows / "base-s0-0123456789"  # scored before the diagnostic: left out
    old.mkdir(parents=True)
    (old / "metrics.json").write_text(json.dumps({"DetPr": 70.0}))
    lines = duplicates_section(["Base", "MOTRv3"], rows)
    assert lines[2].startswith("|  | DetPr | duplicates, % of boxes |")
    assert lines[4:] == [
        "| MOTRv3 | 60.0 ± 0.0 | 22.0 ± 2.8 | 10.0 ± 0.0 | 30.0 ± 0.0 | 0.500 ± 0.000 | 0.400 ± 0.000 | 2 |"
    ]
    assert duplicates_section(["Base"], rows) == []
