"""The baselines step: Table 1's tracking-by-detection rows on our own detector's boxes.

Our detection-only Deformable-DETR (`pseudo_labels.detector_checkpoint`, the PLD detector) runs over
every frame of the eval split (`motrv3.detect` through `pipeline.inference.detectors`, Ray Data or
in process); boxes with score ≥ `baselines.det_threshold` go, frame by frame, to the trackers of
`pipeline.baseline_trackers` (roboflow's `trackers` package: ByteTrack, OC-SORT, SORT; their own
defaults unless `baselines.tracker_args` says otherwise). Their results are written as MOTChallenge
files (`results/<tracker>/<split>/<seq>.txt`) and scored by the same TrackEval path as MOTR's
(`pipeline.evaluation.split.score_split`) into `metrics/<tracker>.json`.

With several classes (the split's `dataset.classes`) each box carries the class the detector scored
and every tracker runs once per class, as class-agnostic trackers are run on multi-class data:
a class's boxes go to that class's tracker instance. Result rows carry the gt class id in column 8
(-1 with one class, as our tracker's files), so trackers and the detector row are scored per class.

The same boxes give the detector's own quality, `metrics/detector.json`: AP50 and precision/recall
at IoU 0.5, and the TrackEval detection reference (every box its own identity, DetA and MODA) that
Table 1's detector row shows.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.baseline_trackers import BaselineTracker, get_tracker, make_tracker, tracker_settings
from pipeline.data.parquet_io import read_manifest, sha256_file
from pipeline.data.reader import DEFAULT_FRAME_RATE, DatasetReader, FrameIndex
from pipeline.datasets import class_ids
from pipeline.evaluation.benchmarks import benchmark_of
from pipeline.evaluation.detection_metrics import PR_SCORE, detection_metrics, ground_truth_boxes
from pipeline.evaluation.split import score_detections, score_split, split_classes
from pipeline.evaluation.trackeval_runner import HEADLINE_KEYS
from pipeline.formats.detections import Detections, LabelledDetections, with_labels
from pipeline.formats.motchallenge import write_results
from pipeline.inference.detectors import Source, default_workers, run_model
from pipeline.paths import METRICS_DIR, RESULTS_DIR, atomic_path, write_text_atomic

INFO_FILE = "tracker.json"  # results/<tracker>/<split>/: package, version, settings of the run
DETECTOR_METRICS = "detector"  # metrics/detector.json


# ---------------------------------------------------------------------------------------------
# The trackers (pipeline.baseline_trackers) over a split


EMPTY = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


def track_detections(
    trackers: list[BaselineTracker],
    frames: np.ndarray,
    dets: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> np.ndarray:
    """Feed one sequence's boxes frame by frame, a box of label c to `trackers[c]` (one instance per
    class) → result rows [N, 8] (frame, id, left, top, w, h, score, label).

    Identities: the class tracker's id × C + c + 1, unique across the C classes (one class: the
    tracker's id + 1, MOTChallenge identities starting at 1). Boxes a tracker leaves without identity
    (`tracker_id` −1: unconfirmed or unmatched) are not reported, as the package's own MOT
    evaluation does.
    """
    import supervision as sv

    for tracker in trackers:
        tracker.reset()
    rows = []
    for frame in frames:
        boxes, scores, labels = dets.get(int(frame), EMPTY)
        boxes, scores = np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32)
        for label, tracker in enumerate(trackers):
            mine = np.asarray(labels) == label
            # Every frame, boxes or none: a class's tracker ages its tracks on frames without it.
            out = tracker.update(sv.Detections(xyxy=boxes[mine], confidence=scores[mine]))
            if len(out) == 0:
                continue
            keep = np.asarray(out.tracker_id) >= 0
            xyxy = np.asarray(out.xyxy, np.float64)[keep]
            score = np.asarray(out.confidence, np.float64)[keep]
            ids = np.asarray(out.tracker_id)[keep] * len(trackers) + label + 1
            for (x1, y1, x2, y2), identity, s in zip(xyxy, ids, score, strict=True):
                rows.append([int(frame), int(identity), x1, y1, x2 - x1, y2 - y1, s, label])
    return np.asarray(rows, np.float64).reshape(-1, 8)


def run_tracker(
    name: str,
    dets: LabelledDetections,
    index: FrameIndex,
    frame_rates: dict[str, float],
    out_dir: str | Path,
    overrides: dict[str, float | int] | None = None,
    info: dict[str, Any] | None = None,
    classes: dict[int, str] | None = None,
) -> dict[str, Any]:
    """One tracker over every sequence of `index` → `<out_dir>/<seq>.txt` + `tracker.json` (folder
    replaced atomically); one instance per class of `classes` (None: one class), column 8 of a
    row its gt class id with several (`class_ids`), else -1."""
    by_sequence: dict[str, dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for (sequence, frame), value in dets.items():
        by_sequence.setdefault(sequence, {})[int(frame)] = value
    ids = class_ids(classes)
    results, settings, seconds, frames = {}, {}, 0.0, 0
    for sequence, sequence_frames in index.frames.items():
        settings[sequence] = tracker_settings(name, overrides or {}, frame_rates[sequence])
        trackers = [make_tracker(name, settings[sequence]) for _ in range(len(classes or [None]))]
        start = time.perf_counter()
        rows = track_detections(trackers, np.sort(sequence_frames), by_sequence.get(sequence, {}))
        seconds += time.perf_counter() - start
        rows[:, 7] = np.asarray(ids)[rows[:, 7].astype(int)] if ids else -1
        results[sequence] = rows
        frames += len(sequence_frames)
    spec = get_tracker(name)
    summary = {
        "tracker": name,
        "package": spec.package,
        "package_version": spec.package_version(),
        "class": spec.class_name,
        "settings": settings,
        "frames": frames,
        "tracker_fps": frames / seconds if seconds > 0 else 0.0,  # association only, detector excluded
        **(info or {}),
    }
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        for sequence, rows in results.items():
            write_results(tmp / f"{sequence}.txt", rows)
        (tmp / INFO_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


# ---------------------------------------------------------------------------------------------
# The detector's own quality


def detector_report(
    params, dets: LabelledDetections, dataset_dir: Path, det_threshold: float
) -> dict[str, Any]:
    """`metrics/detector.json`: AP50, precision/recall at 0.5 and at `det_threshold` (class-agnostic),
    TrackEval DetA/MODA (per class with several, as the trackers')."""
    truth, ignored = ground_truth_boxes(DatasetReader(dataset_dir))
    boxes: Detections = {key: (b, s) for key, (b, s, _) in dets.items()}
    report = detection_metrics(boxes, truth, ignored, 0.5, {"": PR_SCORE, "_at_det_threshold": det_threshold})
    reference_score = params.tracking.new_track_score
    scored = score_detections(dets, dataset_dir, benchmark_of(params), reference_score)
    reference = {
        key: scored.overall[key] for key in ("DetA", "DetRe", "DetPr", "LocA", "MODA", "CLR_Re", "CLR_Pr")
    }
    return {**report, **reference, "det_threshold": det_threshold, "reference_score": reference_score}


# ---------------------------------------------------------------------------------------------
# The step


def frame_rates_of(dataset_dir: Path) -> dict[str, float]:
    rates = {}
    for name, entry in read_manifest(dataset_dir)["sequences"].items():
        rate = entry.get("frame_rate")
        rates[name] = float(rate) if isinstance(rate, int | float) and rate > 0 else DEFAULT_FRAME_RATE
    return rates


def detect_split(
    params, dataset_dir: Path, checkpoint: Path, threshold: float, progress: bool
) -> LabelledDetections:
    """Our detector over every frame of the split, boxes with score ≥ threshold (xyxy pixels) and
    the class each scored."""
    if not checkpoint.is_file():
        raise FileNotFoundError(
            f"{checkpoint}: no detector checkpoint; run `python -m stages.train_detector` first"
        )
    spec = {
        "checkpoint": str(checkpoint),
        "size": params.data.eval_size,
        "max_size": params.data.eval_max_size,
        "classes": split_classes(dataset_dir),  # checked against the detector's
    }
    dets = run_model(
        Source("detector", "detector", spec),
        dataset_dir,
        FrameIndex.load(dataset_dir),
        threshold,
        params.pseudo_labels.workers or default_workers(),
        params.pseudo_labels.batch_size,
        params.ray.address,
        progress,
    )
    return above(dets, threshold)


def above(dets: LabelledDetections, threshold: float) -> LabelledDetections:
    """The boxes (and their scores, labels) with score ≥ threshold."""
    cut = np.float32(threshold)
    return {key: tuple(v[value[1] >= cut] for v in value) for key, value in dets.items()}


def score_trackers(
    params, names: list[str], dataset_dir: Path, split: str, results_root: Path, metrics_dir: Path
) -> dict[str, dict[str, Any]]:
    """`metrics/<tracker>.json` (+ per-sequence CSV) for each tracker's results, as the evaluate step's."""
    scored = {}
    for name in names:
        outcome = score_split(params, results_root / name / split, dataset_dir, metrics_dir, name)
        scored[name] = outcome.overall
    return scored


def run(
    params,
    dataset_dir: str | Path,
    checkpoint: str | Path | None = None,
    split: str | None = None,
    results_root: str | Path = RESULTS_DIR,
    metrics_dir: str | Path = METRICS_DIR,
    dets: Detections | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Detector → trackers → TrackEval on one split; returns {tracker: headline metrics, "detector": ...}.

    `dets` (boxes, scores and optionally labels per (sequence, frame); no labels: label 0) replaces
    the detector run, e.g. in tests.
    """
    dataset_dir = Path(dataset_dir)
    split = split or params.dataset.eval_split
    config = params.baselines
    checkpoint = Path(checkpoint or params.pseudo_labels.detector_checkpoint)
    info: dict[str, Any] = {"split": split, "det_threshold": config.det_threshold}
    if dets is None:
        dets = detect_split(params, dataset_dir, checkpoint, config.det_threshold, progress)
        info.update(detector_checkpoint=str(checkpoint), detector_sha256=sha256_file(checkpoint))
    else:
        dets = above(with_labels(dets), config.det_threshold)
    index = FrameIndex.load(dataset_dir)
    rates = frame_rates_of(dataset_dir)
    classes = split_classes(dataset_dir)
    results_root, metrics_dir = Path(results_root), Path(metrics_dir)
    for name in config.trackers:
        out_dir = results_root / name / split
        run_tracker(name, dets, index, rates, out_dir, config.tracker_args.get(name), info, classes)
    scored = score_trackers(params, list(config.trackers), dataset_dir, split, results_root, metrics_dir)
    detector = detector_report(params, dets, dataset_dir, config.det_threshold)
    write_text_atomic(
        metrics_dir / f"{DETECTOR_METRICS}.json", json.dumps({**detector, "split": split}, indent=2) + "\n"
    )
    summary = {name: {k: values[k] for k in HEADLINE_KEYS} for name, values in scored.items()}
    summary["detector"] = detector
    return summary
