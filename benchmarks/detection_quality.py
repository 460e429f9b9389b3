"""Detection quality measures used by benchmarks and tests (not by the pipeline): one-to-one
precision/recall against ground truth, and a chance baseline with the ground truth's box sizes."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torchvision.ops import box_iou

# (sequence, frame) → (boxes [K, 4] float32 xyxy pixels, scores [K] float32)
Detections = dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]


def precision_recall(
    pred: Detections, truth: Detections, iou_threshold: float = 0.5, score_threshold: float = 0.5
) -> dict[str, float]:
    """Detection precision/recall at IoU ≥ `iou_threshold` with one-to-one matching (Hungarian on IoU)."""
    tp = fp = fn = 0
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    for key in sorted(set(pred) | set(truth)):
        boxes, scores = pred.get(key, empty)
        boxes = boxes[scores >= score_threshold]
        gt = truth.get(key, empty)[0]
        matched = 0
        if len(boxes) and len(gt):
            iou = box_iou(torch.from_numpy(boxes).float(), torch.from_numpy(gt).float()).numpy()
            rows, cols = linear_sum_assignment(-iou)
            matched = int((iou[rows, cols] >= iou_threshold).sum())
        tp += matched
        fp += len(boxes) - matched
        fn += len(gt) - matched
    return {
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "true_positives": tp,
        "predictions": tp + fp,
        "ground_truth": tp + fn,
    }


def random_boxes_like(
    pred: Detections, truth: Detections, sizes: dict[str, tuple[int, int]], seed: int = 0
) -> Detections:
    """Chance baseline: per frame as many boxes as `pred` keeps, placed uniformly at random with
    widths/heights drawn from the ground truth's — what a detector that knows only box statistics gets."""
    rng = np.random.default_rng(seed)
    all_gt = np.concatenate([b for b, _ in truth.values() if len(b)] or [np.zeros((0, 4), np.float32)])
    wh = all_gt[:, 2:] - all_gt[:, :2]
    result: Detections = {}
    for key, (boxes, scores) in sorted(pred.items()):
        n = len(boxes)
        width, height = sizes[key[0]]
        if n == 0 or len(wh) == 0:
            result[key] = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
            continue
        size = wh[rng.integers(0, len(wh), n)]
        x1 = rng.uniform(0, np.maximum(width - size[:, 0], 1))
        y1 = rng.uniform(0, np.maximum(height - size[:, 1], 1))
        result[key] = (
            np.stack([x1, y1, x1 + size[:, 0], y1 + size[:, 1]], 1).astype(np.float32),
            scores.copy(),
        )
    return result
