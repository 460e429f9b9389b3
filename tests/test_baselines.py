"""Stage baselines: the `trackers` package's ByteTrack / OC-SORT / SORT on given boxes, scored by the
real TrackEval path; the detector's AP50 / precision / recall by hand; the real detector path end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.data.reader import DatasetReader
from pipeline.data.synthetic import generate
from pipeline.evaluation import trackeval_runner as evaluate
from pipeline.evaluation.detection_metrics import detection_metrics
from pipeline.formats import motchallenge as mot
from pipeline.params import ParamsError, load_params
from pipeline.steps import baselines
from pipeline.steps.convert import convert_split
from pipeline.steps.pseudo_labels.sources import gt_source

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "synthetic.sequences={val: 2}",
    "synthetic.frames=30",
    "synthetic.width=192",
    "synthetic.height=128",
    "data.eval_size=64",
    "data.eval_max_size=96",
    "pseudo_labels.workers=1",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A converted 2-sequence × 30-frame synthetic val split (crossing look-alike targets)."""
    root = tmp_path_factory.mktemp("baselines")
    params = load_params(REPO / "params.yaml", TINY)
    generate(params.synthetic, root / "raw", progress=False)
    convert_split(root / "raw", "val", "synthetic", root / "clips" / "val", dataset="synthetic",
                  row_group_frames=8, lenient=False, progress=False)  # fmt: skip
    return root


def _params(*extra):
    return load_params(REPO / "params.yaml", TINY + list(extra))


def _truth_with_scores(tiny, score_of_frame) -> dict:
    truth = gt_source(DatasetReader(tiny / "clips" / "val"))
    return {
        key: (boxes, np.full(len(boxes), score_of_frame(key[1]), np.float32))
        for key, (boxes, _) in truth.items()
    }


def _run(tiny, tmp_path, dets, *extra):
    return baselines.run(
        _params(*extra),
        tiny / "clips" / "val",
        results_root=tmp_path / "results",
        metrics_dir=tmp_path / "metrics",
        dets=dets,
        progress=False,
    )


def test_trackers_on_perfect_detections_score_high_through_trackeval(tiny, tmp_path):
    summary = _run(tiny, tmp_path, _truth_with_scores(tiny, lambda frame: 0.9))
    print({name: round(values["HOTA"], 1) for name, values in summary.items() if name != "detector"})
    assert summary["bytetrack"]["HOTA"] > 80.0
    assert min(summary[name]["HOTA"] for name in ("ocsort", "sort")) > 60.0
    # metrics/<tracker>.json: the same keys as the MOTR rows' (evaluate.write_metrics_json)
    keys = set(json.loads((tmp_path / "metrics" / "bytetrack.json").read_text()))
    assert set(evaluate.HEADLINE_KEYS) <= keys and {"DetA", "AssA", "MODA", "IDF1"} <= keys
    # result files: valid MOTChallenge rows (the project's validator), identities ≥ 1, boxes positive
    lengths = {
        s: e["last_frame"] for s, e in DatasetReader(tiny / "clips" / "val").manifest["sequences"].items()
    }
    for sequence, length in lengths.items():
        path = tmp_path / "results" / "bytetrack" / "val" / f"{sequence}.txt"
        rows = mot.read_results(path, length)
        assert len(rows) > 0 and (rows[:, 1] >= 1).all() and (rows[:, 4:6] > 0).all()
        assert all(len(line.split(",")) == 10 for line in path.read_text().splitlines())
    info = json.loads((tmp_path / "results" / "sort" / "val" / baselines.INFO_FILE).read_text())
    assert info["package"] == "trackers" and info["settings"][sequence]["frame_rate"] == 20.0
    # the detector's own quality on the same boxes: perfect
    detector = json.loads((tmp_path / "metrics" / "detector.json").read_text())
    assert detector["AP50"] == pytest.approx(100.0) and detector["recall"] == pytest.approx(100.0)
    assert detector["precision"] == pytest.approx(100.0) and detector["DetA"] > 95.0


def test_bytetrack_keeps_tracks_through_low_score_boxes(tiny, tmp_path):
    """Every other frame all boxes score 0.3: ByteTrack's second association takes them, OC-SORT
    (high_conf_det_threshold 0.6) drops them, so the confidences must reach the trackers."""
    dets = _truth_with_scores(tiny, lambda frame: 0.9 if frame % 2 else 0.3)
    summary = _run(tiny, tmp_path, dets, "baselines.trackers=[bytetrack, ocsort]")
    assert summary["bytetrack"]["DetA"] > summary["ocsort"]["DetA"] + 20.0
    # below baselines.det_threshold the boxes never reach any tracker
    summary = _run(tiny, tmp_path, dets, "baselines.trackers=[bytetrack]", "baselines.det_threshold=0.5")
    assert summary["bytetrack"]["DetA"] < 60.0


def test_tracker_args_override_defaults_and_bad_names_are_errors(tiny, tmp_path):
    settings = baselines.tracker_settings("bytetrack", {"track_activation_threshold": 0.4}, 20.0)
    assert settings["track_activation_threshold"] == 0.4 and settings["high_conf_det_threshold"] == 0.6
    with pytest.raises(
        ValueError, match=r"baselines.tracker_args.bytetrack: unknown keyword\(s\) \['speed'\]"
    ):
        baselines.tracker_settings("bytetrack", {"speed": 1}, 20.0)
    with pytest.raises(ParamsError, match=r"baselines.tracker_args"):
        load_params(REPO / "params.yaml", ["baselines.tracker_args={deepsort: {delta_t: 2}}"])


def test_ap50_precision_recall_hand_case():
    """3 ground-truth boxes, one ignored region; ranked: TP .9, FP .8, TP .7, duplicate FP .6, ignored .4.

    recall 1/3, 1/3, 2/3, 2/3; precision 1, 1/2, 2/3, 1/2; envelope 1, 2/3, 2/3, 1/2
    → AP = 1/3·1 + 1/3·2/3 = 5/9. At score ≥ 0.5: 2 TP of 4 kept, 2 of 3 found; at ≥ 0.75: 1 of 2, 1 of 3.
    """
    truth = {
        ("s", 1): (np.asarray([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], np.float32), np.ones(3))
    }
    ignored = {("s", 1): (np.asarray([[80, 80, 90, 90]], np.float32), np.ones(1))}
    boxes = [[0, 0, 10, 11], [60, 60, 70, 70], [20, 20, 30, 30], [0, 1, 10, 10], [80, 80, 90, 91]]
    dets = {("s", 1): (np.asarray(boxes, np.float32), np.asarray([0.9, 0.8, 0.7, 0.6, 0.4], np.float32))}
    result = detection_metrics(dets, truth, ignored, 0.5, {"": 0.5, "_high": 0.75})
    assert result["AP50"] == pytest.approx(100 * 5 / 9)
    assert result["precision"] == pytest.approx(50.0) and result["recall"] == pytest.approx(100 * 2 / 3)
    assert result["precision_high"] == pytest.approx(50.0) and result["recall_high"] == pytest.approx(100 / 3)
    assert (result["detections"], result["ground_truth"]) == (4, 3)  # the ignored one left out
    # without the ignored region the .4 box is one more false positive: AP unchanged, more detections
    assert detection_metrics(dets, truth)["detections"] == 5


def test_missing_detector_checkpoint_names_the_file(tiny, tmp_path):
    from stages.baselines import main

    missing = tmp_path / "nowhere" / "checkpoint.pt"
    args = ["--params", str(REPO / "params.yaml"), "--clips-dir", str(tiny / "clips"), "--no-progress",
            "--results", str(tmp_path / "results"), "--metrics-dir", str(tmp_path / "metrics")]  # fmt: skip
    with pytest.raises(SystemExit, match=f"error: {missing}: no detector checkpoint"):
        main(args + [f"--set={o}" for o in TINY] + ["--checkpoint", str(missing)])
    assert not (tmp_path / "metrics").exists()


def test_stage_runs_our_detector_end_to_end(tiny, tmp_path, capsys):
    """A random tiny detector (scores ≈ 0.27) through the real predictor path: every output written."""
    from stages.baselines import main
    from tests.test_pseudo_labels import _tiny_detector

    checkpoint = tmp_path / "detector.pt"
    _tiny_detector(checkpoint)
    clips = tmp_path / "data" / "clips"
    shutil.copytree(tiny / "clips", clips)
    args = ["--params", str(REPO / "params.yaml"), "--clips-dir", str(clips), "--no-progress",
            "--results", str(tmp_path / "results"), "--metrics-dir", str(tmp_path / "metrics")]  # fmt: skip
    main(args + [f"--set={o}" for o in TINY] + [f"--set=pseudo_labels.detector_checkpoint={checkpoint}"])
    out = capsys.readouterr().out
    assert "ByteTrack: HOTA" in out and "detector: AP50" in out
    for name in ("bytetrack", "ocsort", "sort"):
        assert set(evaluate.HEADLINE_KEYS) <= set(
            json.loads((tmp_path / "metrics" / f"{name}.json").read_text())
        )
        assert sorted(p.name for p in (tmp_path / "results" / name / "val").iterdir()) == [
            "syn-val-01.txt", "syn-val-02.txt", baselines.INFO_FILE
        ]  # fmt: skip
    detector = json.loads((tmp_path / "metrics" / "detector.json").read_text())
    assert detector["detections"] > 0 and 0.0 <= detector["AP50"] <= 100.0 and detector["split"] == "val"
    info = json.loads((tmp_path / "results" / "bytetrack" / "val" / baselines.INFO_FILE).read_text())
    assert info["detector_checkpoint"] == str(checkpoint) and len(info["detector_sha256"]) == 64


def test_table1_shows_tracking_by_detection_rows_and_the_detector_line(tmp_path):
    from pipeline.params import resolve
    from pipeline.steps.tables import table1

    metrics = tmp_path / "metrics"
    metrics.mkdir()
    for name, hota in (("motr", 30.0), ("motrv3", 40.0), ("bytetrack", 55.0)):  # no OC-SORT / SORT run
        values = {"HOTA": hota, "AssA": hota - 5, "DetA": hota + 5, "MOTA": 50.0, "IDF1": 45.0, "IDS": 7}
        (metrics / f"{name}.json").write_text(json.dumps(values))
    detector = {"AP50": 71.25, "precision": 80.0, "recall": 60.0, "recall_at_det_threshold": 75.0,
                "det_threshold": 0.1, "DetA": 61.0, "MODA": 55.5, "split": "val"}  # fmt: skip
    (metrics / "detector.json").write_text(json.dumps(detector))
    text = table1(resolve({}), tmp_path).markdown()
    measured = text.split("## Reported in the paper")[0]
    assert "| ByteTrack (our detector) |  | 55.0 | 50.0 | 60.0 | 50.0 | 45.0 | 7 |" in measured
    assert "MOTRv3 here: RFS on, PLD on, TGD on" in measured  # the schema: the paper's MOTRv3
    assert "start a track at score ≥ 0.5" in measured
    assert "OC-SORT (our detector)" not in measured
    assert (
        "Detector (val split, IoU 0.5): AP50 71.2; precision / recall at score ≥ 0.5: 80.0 / 60.0" in measured
    )
    assert "`trackers` package" in text and "score ≥ 0.1" in text
