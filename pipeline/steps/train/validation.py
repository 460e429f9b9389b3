"""Validation during training: the points of the learning curves (val split, rank 0, per epoch).

A tracker (MOTR, MOTRv3) tracks the eval split with the current weights and is scored by the same
TrackEval path as the evaluate step (`pipeline.evaluation`: HOTA, DetA, AssA, MOTA, IDF1); the PLD
detector by AP50 and precision/recall at score ≥ 0.5 (`pipeline.evaluation.detection_metrics`). The metrics
land in MLflow (`val/<key>`) and in `models/<method>/learning_curve.csv`, which `dvc plots` draws.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np
import torch

import motrv3
from pipeline.data.reader import DatasetReader, export_motchallenge_gt, iter_frames, list_sequences
from pipeline.evaluation.benchmarks import benchmark_of
from pipeline.evaluation.detection_metrics import detection_metrics, ground_truth_boxes
from pipeline.evaluation.trackeval_runner import evaluate_folder
from pipeline.formats.motchallenge import write_results
from pipeline.inference.split_tracking import run_online
from pipeline.params import Params

TRACKING_KEYS = ("HOTA", "DetA", "AssA", "MOTA", "IDF1")
DETECTOR_KEYS = ("AP50", "precision", "recall")


def split_dir(params: Params, clips_dir: str | Path) -> Path:
    return Path(clips_dir) / params.dataset.eval_split


def can_validate(params: Params, clips_dir: str | Path) -> bool:
    """A labelled eval split exists (a custom dataset may have none)."""
    directory = split_dir(params, clips_dir)
    return directory.is_dir() and bool(list_sequences(directory))


@torch.no_grad()
def tracking_metrics(model: torch.nn.Module, params: Params, clips_dir: str | Path) -> dict[str, float]:
    """Track every eval-split sequence from its first frame and score the results with TrackEval."""
    directory = split_dir(params, clips_dir)
    tracker = motrv3.Tracker(
        copy.deepcopy(model).cpu().eval(),
        params.tracking.to_config(),
        params.data.eval_size,
        params.data.eval_max_size,
        "cpu",
    )
    classes = params.dataset.classes
    with tempfile.TemporaryDirectory(prefix="motrv3-val-") as tmp:
        results, gt = Path(tmp) / "results", Path(tmp) / "gt"
        results.mkdir()
        for sequence in list_sequences(directory):
            frames = ((frame, image) for frame, image, _ in iter_frames(directory, sequence))
            rows, *_ = run_online(tracker, frames, classes=classes)
            write_results(results / f"{sequence}.txt", rows)
        export_motchallenge_gt(directory, gt)
        overall = evaluate_folder(gt, results, benchmark_of(params), classes=classes).overall
    return {key: float(overall[key]) for key in TRACKING_KEYS}


@torch.no_grad()
def detector_metrics(model: torch.nn.Module, params: Params, clips_dir: str | Path) -> dict[str, float]:
    """AP50 and precision/recall (score ≥ 0.5) of the detect queries on the eval split."""
    directory = split_dir(params, clips_dir)
    inference = copy.deepcopy(model).cpu().eval()
    detections = {}
    for sequence in list_sequences(directory):
        for frame, image, _ in iter_frames(directory, sequence):
            boxes, scores = motrv3.detect(inference, image, params.data.eval_size, params.data.eval_max_size)
            detections[(sequence, frame)] = (boxes.numpy(), scores.numpy().astype(np.float32))
    truth, ignored = ground_truth_boxes(DatasetReader(directory))
    metrics = detection_metrics(detections, truth, ignored)
    return {key: float(metrics[key]) for key in DETECTOR_KEYS}


def validate(model: torch.nn.Module, params: Params, clips_dir: str | Path, detection_only: bool) -> dict:
    """The learning-curve point of this model: detector or tracker metrics (percentages)."""
    was_training = model.training
    try:
        if detection_only:
            return detector_metrics(model, params, clips_dir)
        return tracking_metrics(model, params, clips_dir)
    finally:
        model.train(was_training)
