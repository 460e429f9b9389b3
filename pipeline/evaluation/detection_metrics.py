"""The detector's own quality: AP50 and precision/recall of boxes against a split's ground truth.

Used by the baselines step (the detector row under Table 1) and by the detector's learning curve
(`pipeline.steps.train.validation`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou

from pipeline.data.reader import DatasetReader
from pipeline.formats.detections import Detections, xywh_to_xyxy

PR_SCORE = 0.5  # the detector's headline operating point (MOTR's new-track score, §4.2)
EMPTY = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))


def ground_truth_boxes(reader: DatasetReader) -> tuple[Detections, Detections]:
    """(counted, ignored) ground-truth boxes per frame, xyxy pixels (ignored: the converter's `ignore`)."""
    counted: Detections = {}
    ignored: Detections = {}
    for sequence in reader.sequences:
        for frame in reader.iter_sequence(sequence):
            for target, mask in ((counted, ~frame.ignore), (ignored, frame.ignore)):
                boxes = xywh_to_xyxy(frame.boxes[mask])
                target[(sequence, frame.frame)] = (boxes, np.ones(len(boxes), np.float32))
    return counted, ignored


def detection_metrics(
    dets: Detections,
    truth: Detections,
    ignored: Detections | None = None,
    iou_threshold: float = 0.5,
    score_thresholds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """AP at IoU ≥ `iou_threshold` (AP50) and precision/recall at each score threshold.

    Matching as PASCAL VOC / COCO: per frame, detections in descending score order each take the
    unmatched ground-truth box of highest IoU ≥ the threshold (true positive), else count as false
    positives unless they overlap an ignored box that much (then they are left out). AP is the
    all-point area under the precision envelope p̂(r) = max_{r' ≥ r} p(r') (VOC 2010+). Precision and
    recall at score s are the curve's point after the last detection with score ≥ s; they are
    reported as `precision<suffix>`, `recall<suffix>` for each `{suffix: s}` of `score_thresholds`
    (default: {"": 0.5}). Percentages.
    """
    ignored = ignored or {}
    score_thresholds = {"": PR_SCORE} if score_thresholds is None else score_thresholds
    hits, scores = [], []
    n_truth = sum(len(truth.get(key, EMPTY)[0]) for key in set(truth))
    for key in sorted(set(dets) | set(truth)):
        boxes, conf = dets.get(key, EMPTY)
        if not len(boxes):
            continue
        order = np.argsort(-np.asarray(conf), kind="stable")
        boxes, conf = np.asarray(boxes, np.float32)[order], np.asarray(conf, np.float32)[order]
        gt = truth.get(key, EMPTY)[0]
        iou = box_iou(torch.from_numpy(boxes), torch.from_numpy(np.asarray(gt, np.float32))).numpy()
        ign = ignored.get(key, EMPTY)[0]
        iou_ignored = box_iou(torch.from_numpy(boxes), torch.from_numpy(np.asarray(ign, np.float32))).numpy()
        taken = np.zeros(len(gt), bool)
        for i in range(len(boxes)):
            candidates = np.where(~taken, iou[i], -1.0) if len(gt) else np.zeros(0)
            best = int(np.argmax(candidates)) if len(candidates) else -1
            if best >= 0 and candidates[best] >= iou_threshold:
                taken[best] = True
                hits.append(True)
            elif len(ign) and iou_ignored[i].max() >= iou_threshold:
                continue
            else:
                hits.append(False)
            scores.append(float(conf[i]))
    order = np.argsort(-np.asarray(scores), kind="stable")
    hit = np.asarray(hits, bool)[order]
    ranked = np.asarray(scores, np.float64)[order]
    tp, fp = np.cumsum(hit), np.cumsum(~hit)
    recall = tp / n_truth if n_truth else np.zeros(len(tp))
    precision = tp / np.maximum(tp + fp, 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    steps = np.diff(np.concatenate([[0.0], recall]))
    result: dict[str, Any] = {
        "AP50" if iou_threshold == 0.5 else f"AP{round(iou_threshold * 100)}": 100.0
        * float(np.sum(steps * envelope)),
        "ground_truth": int(n_truth),
        "detections": len(ranked),
    }
    for key, threshold in score_thresholds.items():
        count = int(np.sum(ranked >= np.float32(threshold)))
        result[f"precision{key}"] = 100.0 * float(precision[count - 1]) if count else 0.0
        result[f"recall{key}"] = 100.0 * float(recall[count - 1]) if count else 0.0
    return result
