"""Scoring against a converted split (`data/clips/<split>/`): its ground truth exported for TrackEval.

`score_split` scores a tracker's result folder (or packages a submission archive for a split
without labels); `score_detections` scores per-frame boxes as a tracker whose every box is its own
identity, the detection reference of Table 1 (only DetA / MODA mean anything there).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from pipeline.data.parquet_io import read_manifest
from pipeline.data.reader import export_motchallenge_gt, list_sequences
from pipeline.datasets import class_map
from pipeline.evaluation import submission
from pipeline.evaluation.benchmarks import benchmark_of
from pipeline.evaluation.trackeval_runner import (
    Evaluation,
    GroundTruthSequence,
    evaluate_folder,
    write_metrics_json,
    write_per_class_csv,
    write_per_sequence_csv,
)
from pipeline.formats import motchallenge as mot
from pipeline.formats.detections import Detections
from pipeline.paths import FPS_FILE, METRICS_DIR


def score_split(
    params,
    results: str | Path,
    dataset_dir: str | Path,
    metrics_dir: str | Path = METRICS_DIR,
    stem: str = "metrics",
    benchmark: str | None = None,
    submission_archive: str | Path | None = None,
) -> Evaluation | Path:
    """Score `results/<seq>.txt` against the converted split's ground truth (exported for TrackEval).

    Labelled: writes `<metrics_dir>/<stem>.json` (+ FPS from the track step's fps.json) and
    `<stem>_per_sequence.csv` (+ `<stem>_per_class.csv` when the split has several classes, its
    manifest's `classes`), returns the `Evaluation`. Unlabelled (a test split): validates and
    packages the results as `submission_archive` for the benchmark's server and returns its path.
    """
    results, dataset_dir = Path(results), Path(dataset_dir)
    benchmark = benchmark or benchmark_of(params)
    with tempfile.TemporaryDirectory(prefix="motrv3-gt-") as gt_dir:
        labelled = export_motchallenge_gt(dataset_dir, gt_dir)
        if not labelled:
            if submission_archive is None:
                raise FileNotFoundError(f"{dataset_dir}: no ground truth and no submission archive named")
            entries = read_manifest(dataset_dir)["sequences"]
            sequences = [
                GroundTruthSequence(name, mot.SeqInfo(name, entries[name]["last_frame"]), None)
                for name in list_sequences(dataset_dir)
            ]
            submission.make_submission(results, sequences, benchmark, submission_archive)
            return Path(submission_archive)
        unlabelled = sorted(set(list_sequences(dataset_dir)) - set(labelled))
        if unlabelled:
            raise FileNotFoundError(f"{dataset_dir}: sequences {unlabelled} have no ground truth, others do")
        # The classes the split was converted with (dataset.classes then): what its gt rows mean.
        classes = class_map(read_manifest(dataset_dir).get("classes"))
        evaluation = evaluate_folder(gt_dir, results, benchmark, classes=classes)
    extra = {}
    fps_file = results / FPS_FILE
    if fps_file.is_file():
        extra["FPS"] = float(json.loads(fps_file.read_text())["fps"])
    metrics_dir = Path(metrics_dir)
    write_metrics_json(evaluation, metrics_dir / f"{stem}.json", **extra)
    write_per_sequence_csv(evaluation, metrics_dir / f"{stem}_per_sequence.csv")
    if evaluation.per_class:
        write_per_class_csv(evaluation, metrics_dir / f"{stem}_per_class.csv")
    return evaluation


def detections_as_tracks(
    dets: Detections, sequences: list[str], threshold: float | None, out_dir: Path
) -> None:
    """Result files where every box (score ≥ threshold; None: all) is its own identity."""
    next_id = 1
    for sequence in sequences:
        rows = []
        for (seq, frame), (boxes, scores) in sorted(dets.items()):
            if seq != sequence:
                continue
            for (x1, y1, x2, y2), score in zip(np.asarray(boxes), np.asarray(scores), strict=True):
                if threshold is None or score >= np.float32(threshold):
                    rows.append((frame, next_id, x1, y1, x2 - x1, y2 - y1, score))
                    next_id += 1
        mot.write_results(out_dir / f"{sequence}.txt", np.asarray(rows, np.float64).reshape(-1, 7))


def score_detections(
    dets: Detections, dataset_dir: str | Path, benchmark: str, threshold: float | None = None
) -> Evaluation:
    """Per-frame boxes scored like a tracker's results against the split's ground truth."""
    with tempfile.TemporaryDirectory(prefix="motrv3-detref-") as tmp_name:
        gt, results = Path(tmp_name) / "gt", Path(tmp_name) / "results"
        sequences = export_motchallenge_gt(Path(dataset_dir), gt)
        detections_as_tracks(dets, sequences, threshold, results)
        return evaluate_folder(gt, results, benchmark)
