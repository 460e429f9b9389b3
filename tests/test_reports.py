"""Reports: the paper's numbers as transcribed, measured vs reported tables, figures, the tables stage."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from pipeline.params import resolve
from pipeline.reporting.figures import read_assignment_stats
from pipeline.reporting.paper_results import TABLES, reported
from pipeline.reporting.tables import (
    Comparison,
    MeasuredRow,
    ReportError,
    aggregate_seeds,
    read_metrics,
)


def _csv(path) -> list[dict[str, str]]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_paper_tables_transcribed_exactly():
    assert sorted(TABLES) == [1, 2, 3, 4, 5, 6]
    motrv3 = reported(1).row("MOTRv3")
    assert [motrv3[k] for k in ("HOTA", "AssA", "DetA", "MOTA", "IDF1")] == [70.4, 59.3, 83.8, 92.9, 72.3]
    assert reported(1).row("MOTR")["HOTA"] == 54.2 and reported(1).row("MOTR")["end_to_end"] is True
    assert reported(2).row("MOTRv2")["IDS"] is None and reported(2).row("MOTRv3")["IDS"] == 2403
    base, full = reported(3).rows[0], reported(3).rows[-1]
    assert (base["rfs"], base["pld"], base["tgd"], base["HOTA"], base["IDS"]) == (
        False,
        False,
        False,
        56.6,
        1662,
    )
    assert (full["rfs"], full["pld"], full["tgd"], full["HOTA"], full["IDS"]) == (
        True,
        True,
        True,
        63.9,
        1151,
    )
    assert reported(4).row("Ground Truth")["DetA"] == 75.6
    assert [(r["groups"], r["noise"], r["HOTA"]) for r in reported(5).rows] == [
        (None, False, 61.7), (3, False, 63.2), (4, False, 63.7), (5, False, 63.3), (4, True, 63.9)
    ]  # fmt: skip
    assert [(r["label"], r["backbone"], r["FPS"]) for r in reported(6).rows][-1] == (
        "MOTRv3",
        "ConvNeXt-B",
        9.8,
    )
    # The paper's own consistency: Table 5's last row is Table 3's MOTRv3 row, its base is row 5.
    assert {k: reported(5).rows[-1][k] for k in ("HOTA", "AssA", "IDS")} == {
        k: full[k] for k in ("HOTA", "AssA", "IDS")
    }
    assert reported(5).rows[0]["HOTA"] == reported(3).rows[4]["HOTA"]
    with pytest.raises(KeyError, match="no Table 7"):
        reported(7)


def test_aggregate_seeds_mean_and_sample_std():
    row = aggregate_seeds("r", {"rfs": True}, [{"HOTA": 60.0, "IDS": 10}, {"HOTA": 62.0, "IDS": 14}])
    assert row.metrics == {"HOTA": 61.0, "IDS": 12.0} and row.seeds == 2
    assert math.isclose(row.spread["HOTA"], math.sqrt(2.0)) and math.isclose(
        row.spread["IDS"], math.sqrt(8.0)
    )
    with pytest.raises(ReportError, match="no finished trials"):
        aggregate_seeds("r", {}, [])


def test_comparison_keeps_measured_and_reported_apart(tmp_path):
    from pipeline.reporting.tables import write_comparison

    comparison = Comparison(
        name="t3",
        title="Table 3",
        measured_context="synthetic val, profile cpu",
        columns=("rfs", "pld", "tgd"),
        metrics=("HOTA", "IDS"),
        measured=[
            MeasuredRow("ours", {"rfs": True, "pld": False, "tgd": False}, {"HOTA": 12.345, "IDS": 1234.0})
        ],
        paper=reported(3),
    )
    md, csv_path = write_comparison(comparison, tmp_path)
    text = md.read_text()
    measured, paper = text.split("## Reported in the paper (DanceTrack val; Table 3)")
    assert "## Measured here (synthetic val, profile cpu)" in measured
    assert "| ours | ✓ |  |  | 12.3 | 1,234 |" in measured and "56.6" not in measured
    assert "| 1 Base |  |  |  | 56.6 | 1,662 |" in paper and "12.3" not in paper
    with open(csv_path) as handle:
        records = list(csv.DictReader(handle))
    assert [(r["section"], r["label"], r["HOTA"]) for r in records[:2]] == [
        ("measured", "ours", "12.345"), ("reported", "1 Base", "56.6")
    ]  # fmt: skip
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_read_metrics_names_file_and_field(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"HOTA": 1.0, "AssA": "x"}))
    with pytest.raises(ReportError, match=r"m\.json: field 'AssA' must be a number"):
        read_metrics(path, ("HOTA", "AssA"))
    with pytest.raises(ReportError, match=r"m\.json: field 'DetA' missing"):
        read_metrics(path, ("HOTA", "DetA"))
    path.write_text("{bad")
    with pytest.raises(ReportError, match=r"m\.json:1: not valid JSON"):
        read_metrics(path)
    with pytest.raises(ReportError, match="missing"):
        read_metrics(tmp_path / "absent.json")


def _assignment_stats(path: Path, method: str, epochs: list[dict]) -> None:
    """The file `pipeline.steps.train` writes, built from the real `AssignmentStats` accumulator."""
    import torch

    from motrv3.stats import AssignmentStats

    entries = []
    for epoch, frame in enumerate(epochs):
        stats = AssignmentStats(num_queries=4)
        stats.update({**frame, "det_slot_matches": torch.tensor(frame["slots"])})
        entries.append({"epoch": epoch, **stats.summary(), "slot_histogram": stats.slot_histogram()})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"method": method, "epochs": entries}))


def _frame(labels, early_det, early_track, misaligned, slots):
    return {
        "frames": 1.0, "labels": float(labels), "last_det": 1.0, "last_track": float(labels - 1),
        "early_layers": 1.0, "early_labels": float(labels), "early_det": float(early_det),
        "early_track": float(early_track), "misaligned": float(misaligned),
        "misaligned_of": float(labels), "slots": slots,
    }  # fmt: skip


def test_tables_stage_writes_tables_figures_and_an_mlflow_run(tmp_path):
    import mlflow

    from stages.tables import main

    root = tmp_path
    for method, hota in (("motr", 30.0), ("motrv3", 40.0)):
        metrics = {
            "HOTA": hota,
            "AssA": hota - 5,
            "DetA": hota + 5,
            "MOTA": 50.0,
            "IDF1": 45.0,
            "IDS": 7,
            "FPS": 2.5,
        }
        (root / "metrics").mkdir(exist_ok=True)
        (root / "metrics" / f"{method}.json").write_text(json.dumps(metrics))
        fps_dir = root / "results" / method / "val"
        fps_dir.mkdir(parents=True)
        (fps_dir / "fps.json").write_text(
            json.dumps({"fps": 2.5 if method == "motr" else 3.25, "frames": 10})
        )
    detector = {"HOTA": 20.0, "DetA": 61.0, "MOTA": 10.0, "MODA": 55.5}
    (root / "metrics" / "detector.json").write_text(json.dumps(detector))
    # without RFS 4 of 10 labels go to detect queries, with RFS 7 of 10 (Fig. 2 c/d), epoch 0
    _assignment_stats(root / "models" / "motr" / "assignment_stats.json", "motr",
                      [_frame(10, 4, 6, 1, [1, 0, 0, 0]), _frame(10, 3, 7, 1, [0, 1, 0, 0])])  # fmt: skip
    _assignment_stats(root / "models" / "motrv3" / "assignment_stats.json", "motrv3",
                      [_frame(10, 7, 3, 5, [1, 1, 1, 0]), _frame(10, 5, 5, 2, [1, 1, 0, 1])])  # fmt: skip
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params_file = tmp_path / "params.yaml"
    params_file.write_text("profile: cpu\nprofiles: {cpu: {}}\n")
    main(["--params", str(params_file), "--root", str(root), "--set", f"mlflow.tracking_uri={uri}"])

    table1 = (root / "reports" / "table1.md").read_text()
    measured, paper = table1.split("## Reported in the paper (DanceTrack test; Table 1)")
    assert "## Measured here (synthetic val, profile cpu)" in measured
    assert "| MOTRv3 | ✓ | 40.0 | 35.0 | 45.0 | 50.0 | 45.0 | 7 |" in measured
    assert "| pseudo-label detector (MODA) | — | — | — | 61.0 | 55.5 | — | — |" in measured
    assert "| MOTRv3 | ✓ | 70.4 | 59.3 | 83.8 | 92.9 | 72.3 | — |" in paper  # the paper gives no IDS
    table6 = (root / "reports" / "table6.md").read_text()
    assert "| MOTRv3 | resnet50 | 40.0 | 50.0 | 45.0 | 3.25 |" in table6.split("## Reported")[0]

    shares = list(_csv(root / "reports" / "plots" / "fig2_label_shares.csv"))
    assert [(r["epoch"], r["detect_pct_without_rfs_motr"], r["detect_pct_with_rfs_motrv3"]) for r in shares] == [
        ("0", "40.0", "70.0"), ("1", "30.0", "50.0")
    ]  # fmt: skip
    activations = [r for r in _csv(root / "reports" / "plots" / "fig2_activations.csv")]
    assert [float(r["activations_with_rfs_motrv3"]) for r in activations] == [2, 2, 1, 1]
    misaligned = list(_csv(root / "reports" / "plots" / "fig6_misalignment.csv"))
    assert [float(r["misaligned_pct_with_rfs_motrv3"]) for r in misaligned] == [50.0, 20.0]
    for name in ("fig2_label_assignment.png", "fig6_misalignment.png"):
        assert (root / "reports" / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    client = mlflow.MlflowClient(uri)
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], "attributes.run_name = 'tables'"
    )
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id, "tables")}
    assert {"tables/table1.json", "tables/table6.json"} <= artifacts
    table = json.loads(Path(client.download_artifacts(runs[0].info.run_id, "tables/table1.json")).read_text())
    assert "section" in table["columns"] and "reported" in {
        row[table["columns"].index("section")] for row in table["data"]
    }


def test_assignment_stats_reader_names_the_bad_field(tmp_path):
    path = tmp_path / "assignment_stats.json"
    path.write_text(json.dumps({"epochs": [{"epoch": 0, "assign/last_det_share": 0.5}]}))
    with pytest.raises(ReportError, match=r"\[epochs\]\[0\]: field 'assign/last_track_share' missing"):
        read_assignment_stats(path)
    path.write_text(json.dumps({"epochs": []}))
    with pytest.raises(ReportError, match="non-empty list"):
        read_assignment_stats(path)


def test_figure4_plots_both_methods(tmp_path):
    from pipeline.reporting.figures import figure4

    points = [
        {"method": m, "backbone": b, "HOTA": h}
        for m, hs in (("motr", (20, 22)), ("motrv3", (25, 30)))
        for b, h in zip(("resnet18", "convnext_atto"), hs, strict=True)
    ]
    png, data = figure4(points, ["resnet18", "convnext_atto"], "test", tmp_path)
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert [(r["backbone"], r["HOTA_motr"], r["HOTA_motrv3"]) for r in _csv(data)] == [
        ("resnet18", "20", "25"), ("convnext_atto", "22", "30")
    ]  # fmt: skip


def test_params_choose_cpu_backbones_for_the_cpu_profile():
    from pipeline.params import load_params
    from pipeline.paths import REPO_ROOT
    from pipeline.studies.scaling import backbones_for

    cpu, note = backbones_for(load_params(REPO_ROOT / "params.yaml"))  # the cpu profile sets them
    assert cpu == ["resnet10t", "resnet18", "resnet26", "resnet34"] and "cpu" in note
    paper, _ = backbones_for(resolve({}))
    assert paper == ["resnet50", "convnext_tiny", "convnext_small", "convnext_base"]


def test_detector_reference_scored_from_pseudo_labels_with_trackeval(tmp_path):
    """No metrics/detector.json: the tables stage scores the detector's pseudo labels itself."""
    import numpy as np

    from pipeline.data.pseudo_label_store import write_pseudo_labels
    from pipeline.data.reader import DatasetReader, FrameIndex
    from pipeline.data.synthetic import generate
    from pipeline.steps.convert import convert_split
    from pipeline.steps.pseudo_labels.driver import to_rows
    from pipeline.steps.pseudo_labels.sources import gt_source
    from pipeline.steps.tables import ensure_detector_metrics

    params = resolve(
        {},
        ["synthetic.sequences={train: 1}", "synthetic.frames=6", "synthetic.width=96", "synthetic.height=64",
         "synthetic.min_objects=2", "synthetic.max_objects=3"],
    )  # fmt: skip
    generate(params.synthetic, tmp_path / "raw", progress=False)
    clips = tmp_path / "data" / "clips" / "train"
    convert_split(tmp_path / "raw", "train", "synthetic", clips, dataset="synthetic",
                  row_group_frames=16, lenient=False, progress=False)  # fmt: skip
    labels = tmp_path / "data" / "pseudo_labels" / "train" / "pseudo_labels.parquet"
    assert ensure_detector_metrics(params, tmp_path) is None  # nothing to score yet

    def with_score(score: float):
        truth = gt_source(DatasetReader(clips))  # a perfect detector: the ground-truth boxes
        dets = {k: (boxes, np.full(len(scores), score, np.float32)) for k, (boxes, scores) in truth.items()}
        write_pseudo_labels(list(to_rows("detector", dets, FrameIndex.load(clips))), labels)
        (tmp_path / "metrics" / "detector.json").unlink(missing_ok=True)
        return read_metrics(ensure_detector_metrics(params, tmp_path), ("DetA", "MODA", "MOTA"))

    perfect = with_score(0.9)
    assert perfect["DetA"] > 95.0 and perfect["MODA"] > 95.0
    assert perfect["MOTA"] < 50.0  # each box its own identity: every frame an identity switch
    # below tracking.new_track_score (0.5) the boxes are not the detector's output: nothing detected
    assert with_score(0.3)["DetA"] == 0.0


def test_scaling_rows_switch_the_baseline_off_per_backbone():
    from pipeline.params import load_params
    from pipeline.studies.scaling import scaling_rows

    repo_params = Path(__file__).resolve().parents[1] / "params.yaml"
    rows = scaling_rows(resolve({}), ["resnet10t", "resnet18"])
    assert [(r.method, r.settings["backbone"]) for r in rows] == [
        ("motr", "resnet10t"), ("motr", "resnet18"), ("motrv3", "resnet10t"), ("motrv3", "resnet18")
    ]  # fmt: skip
    baseline = load_params(repo_params, list(rows[1].overrides))
    assert baseline.model.backbone == "resnet18" and not (baseline.rfs.enabled or baseline.pld.enabled)
    assert load_params(repo_params, list(rows[2].overrides)).rfs.enabled
