"""Scoring against a converted split (`data/clips/<split>/`): its ground truth exported for TrackEval.

`score_split` scores a tracker's result folder (or packages a submission archive for a split
without labels); `score_detections` scores per-frame boxes as a tracker whose every box is its own
identity, the detection reference of Table 1 (only DetA / MODA mean anything there). Both score per
class when the split has several (its manifest's `classes`).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from pipeline.data.parquet_io import read_manifest
from pipeline.data.reader import export_motchallenge_gt, list_sequences
from pipeline.datasets import class_ids, class_map
from pipeline.evaluation import duplicates, submission
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
from pipeline.formats.detections import Detections, LabelledDetections, with_labels
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

    Labelled: writes `<metrics_dir>/<stem>.json` (TrackEval's metrics, the duplicate diagnostic of
    `pipeline.evaluation.duplicates`, FPS from the track step's fps.json) and
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
        classes = split_classes(dataset_dir)
        evaluation = evaluate_folder(gt_dir, results, benchmark, classes=classes)
        duplicates.add_to_evaluation(evaluation, gt_dir, results, list(classes) or None)
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


def split_classes(dataset_dir: str | Path) -> dict[int, str]:
    """The classes the split was converted with (dataset.classes then): what its gt rows mean."""
    return class_map(read_manifest(Path(dataset_dir)).get("classes"))


def detections_as_tracks(
    dets: Detections | LabelledDetections,
    sequences: list[str],
    threshold: float | None,
    out_dir: Path,
    classes: dict[int, str] | None = None,
) -> None:
    """Result files where every box (score ≥ threshold; None: all) is its own identity; column 8 the
    gt class id of its label with several `classes`, else -1 (as our tracker's files)."""
    ids = class_ids(classes)
    next_id = 1
    for sequence in sequences:
        rows = []
        for (seq, frame), (boxes, scores, labels) in sorted(with_labels(dets).items()):
            if seq != sequence:
                continue
            for (x1, y1, x2, y2), score, label in zip(
                np.asarray(boxes), np.asarray(scores), labels, strict=True
            ):
                if threshold is None or score >= np.float32(threshold):
                    cls = ids[label] if ids else -1
                    rows.append((frame, next_id, x1, y1, x2 - x1, y2 - y1, score, cls))
                    next_id += 1
        mot.write_results(out_dir / f"{sequence}.txt", np.asarray(rows, np.float64).reshape(-1, 8))


def score_detections(
    dets: Detections | LabelledDetections,
    dataset_dir: str | Path,
    benchmark: str,
    threshold: float | None = None,
) -> Evaluation:
    """Per-frame boxes (with labels: scored per class, as `score_split`) scored like a tracker's
    results against the split's ground truth."""
    classes = split_classes(dataset_dir)
    with tempfile.TemporaryDirectory(prefix="motrv3-detref-") as tmp_name:
        gt, results = Path(tmp_name) / "gt", Path(tmp_name) / "results"
        sequences = export_motchallenge_gt(Path(dataset_dir), gt)
        detections_as_tracks(dets, sequences, threshold, results, classes)
        return evaluate_folder(gt, results, benchmark, classes=classes)
