"""Duplicate boxes among a tracker's false positives: a diagnostic beside TrackEval's metrics, not a metric.

On the embedded benchmark most of MOTR's and MOTRv3's false positives are a second reported box on
a target another track already covers (README, "Where the false positives come from"), and they
score like the true tracks, so no threshold separates them. This module counts them per sequence.

Per frame, reported boxes are matched one-to-one to the ground truth by Hungarian matching on IoU
(scipy's `linear_sum_assignment`, pairs with IoU ≥ 0.5 kept). A box left unmatched that matches a
distractor row of MOT16/17/20 is set aside, as TrackEval's preprocessing removes it; zero-consider
rows are no ground truth (TrackEval drops them from the gt and scores a box on them as a false
positive). An unmatched box is a false positive; it is a **duplicate** when it overlaps another
reported box of the frame by IoU ≥ 0.5. Each track's *own target* is the gt identity it was matched to most often in the sequence. A duplicate is a
**twin** when its track has no own target or the same own target as the box it overlaps most (two
tracks on one target), else a **drift** (a track that left its own target for another one).

Per-frame matching ignores TrackEval's identity continuity, so `FP` here can differ slightly from
TrackEval's `CLR_FP`; the counts are for telling kinds of false positives apart.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline.evaluation.benchmarks import get_benchmark
from pipeline.evaluation.trackeval_runner import Evaluation, discover_sequences, load_results
from pipeline.formats import motchallenge as mot

MATCH_IOU = 0.5
OVERLAP_IOU = 0.5
# TrackEval's MOT16/17/20 distractors: person on vehicle, static person, distractor, reflection.
MOT_DISTRACTOR_CLASSES = (2, 7, 8, 12)


@dataclass
class DuplicateCounts:
    """Counts of one sequence (or summed over sequences); scores kept for the medians."""

    reported: int = 0  # reported boxes, those on a distractor left out
    matched: int = 0
    false_positives: int = 0
    twins: int = 0
    drifts: int = 0
    duplicate_tracks: int = 0
    matched_scores: list[float] = field(default_factory=list)
    duplicate_scores: list[float] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        return self.twins + self.drifts

    def __add__(self, other: DuplicateCounts) -> DuplicateCounts:
        return DuplicateCounts(
            self.reported + other.reported,
            self.matched + other.matched,
            self.false_positives + other.false_positives,
            self.twins + other.twins,
            self.drifts + other.drifts,
            self.duplicate_tracks + other.duplicate_tracks,
            self.matched_scores + other.matched_scores,
            self.duplicate_scores + other.duplicate_scores,
        )

    def as_metrics(self) -> dict[str, float | int | None]:
        """`DupFP` duplicates (`DupTwin` + `DupDrift`), `DupTracks` tracks reporting one, `DupShare` the
        duplicates in % of the reported boxes, `ScoreTP` / `ScoreDup` the median score of matched
        boxes / duplicates (None when there are none: JSON null, not logged to MLflow)."""

        def median(values: list[float]) -> float | None:
            return float(np.median(values)) if values else None

        return {
            "DupFP": self.duplicates,
            "DupTwin": self.twins,
            "DupDrift": self.drifts,
            "DupTracks": self.duplicate_tracks,
            "DupShare": 100.0 * self.duplicates / self.reported if self.reported else 0.0,
            "ScoreTP": median(self.matched_scores),
            "ScoreDup": median(self.duplicate_scores),
        }


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of x, y, w, h boxes [A, 4] × [B, 4]. NumPy, not torchvision's `box_iou`: the evaluate step
    starts without importing torch (tests/test_architecture.py)."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    a_lo, a_hi, b_lo, b_hi = (
        a[:, None, :2],
        (a[:, 2:] + a[:, :2])[:, None],
        b[None, :, :2],
        (b[:, 2:] + b[:, :2])[None],
    )
    overlap = np.clip(np.minimum(a_hi, b_hi) - np.maximum(a_lo, b_lo), 0.0, None).prod(-1)
    union = a[:, None, 2:].prod(-1) + b[None, :, 2:].prod(-1) - overlap
    return overlap / np.maximum(union, 1e-12)


def _match(iou: np.ndarray) -> list[tuple[int, int]]:
    """One-to-one pairs (row, column) of the largest total IoU, each with IoU ≥ MATCH_IOU."""
    if not iou.size:
        return []
    rows, cols = linear_sum_assignment(-np.where(iou >= MATCH_IOU, iou, 0.0))
    return [(r, c) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= MATCH_IOU]


def count_sequence(
    gt: np.ndarray, counted: np.ndarray, ignore: np.ndarray, results: np.ndarray
) -> DuplicateCounts:
    """One sequence: `gt` [G, ≥ 6] (frame, id, x, y, w, h, …), `counted` [G] bool (the benchmark's
    targets), `ignore` [G] bool (ignore regions; a row in neither is not ground truth at all),
    `results` [R, ≥ 7] (frame, id, x, y, w, h, score, …)."""
    out = DuplicateCounts()
    own: dict[int, Counter] = {}
    pending: list[tuple[int, int, float]] = []  # (track, partner track, score) of each duplicate
    for frame in np.unique(results[:, 0]):
        boxes = results[results[:, 0] == frame]
        in_frame = gt[:, 0] == frame
        targets, ignored = gt[in_frame & counted], gt[in_frame & ignore]
        matched = np.zeros(len(boxes), bool)
        for r, c in _match(_iou(boxes[:, 2:6], targets[:, 2:6])):
            matched[r] = True
            own.setdefault(int(boxes[r, 1]), Counter())[int(targets[c, 1])] += 1
            out.matched_scores.append(float(boxes[r, 6]))
        # What is left unmatched on an ignore region is set aside: no ground truth, no false positive.
        keep = np.ones(len(boxes), bool)
        free = np.flatnonzero(~matched)
        for r, _ in _match(_iou(boxes[free, 2:6], ignored[:, 2:6])):
            keep[free[r]] = False
        boxes, matched = boxes[keep], matched[keep]
        out.reported += len(boxes)
        out.matched += int(matched.sum())
        out.false_positives += int((~matched).sum())
        overlap = _iou(boxes[:, 2:6], boxes[:, 2:6])
        np.fill_diagonal(overlap, 0.0)
        for r in np.flatnonzero(~matched):
            if overlap.shape[1] and overlap[r].max() >= OVERLAP_IOU:
                pending.append((int(boxes[r, 1]), int(boxes[overlap[r].argmax(), 1]), float(boxes[r, 6])))

    def own_target(track: int) -> int | None:
        return own[track].most_common(1)[0][0] if track in own else None

    for track, partner, score in pending:
        mine = own_target(track)
        if mine is None or mine == own_target(partner):
            out.twins += 1
        else:
            out.drifts += 1
        out.duplicate_scores.append(score)
    out.duplicate_tracks = len({track for track, _, _ in pending})
    return out


def count_folder(
    gt_dir: str | Path, results_dir: str | Path, benchmark: str, classes: list[int] | None = None
) -> dict[str, DuplicateCounts]:
    """Every sequence of a MOTChallenge-layout gt folder against `results_dir/<seq>.txt`.

    Targets are the rows the benchmark counts (`motchallenge.is_counted`, `classes` the gt class ids
    of a custom dataset); ignore regions are TrackEval's MOT distractor classes on MOT16/17/20. On
    the class-1-only benchmarks every other row is no ground truth: a box on it is a false positive,
    as TrackEval scores it."""
    spec = get_benchmark(benchmark)
    sequences = [s for s in discover_sequences(gt_dir) if s.gt_file is not None]
    results = load_results(results_dir, sequences)
    counts = {}
    for sequence in sequences:
        gt = mot.read_gt(sequence.gt_file, sequence.info, spec.rules, classes)
        counted = np.array(
            [mot.is_counted(spec.rules, int(row[7]), int(row[6]), classes) for row in gt], dtype=bool
        ).reshape(-1)
        ignore = np.isin(gt[:, 7], MOT_DISTRACTOR_CLASSES) & (not spec.class_one_only)
        counts[sequence.name] = count_sequence(gt, counted, ignore, results[sequence.name])
    return counts


def add_to_evaluation(
    evaluation: Evaluation, gt_dir: str | Path, results_dir: str | Path, classes: list[int] | None = None
) -> None:
    """Add `DuplicateCounts.as_metrics()` to `evaluation.overall` and to each sequence (one class
    only: several classes keep TrackEval's keys alone, since the per-class rows would lack them)."""
    if evaluation.per_class:
        return
    counts = count_folder(gt_dir, results_dir, evaluation.benchmark, classes)
    for name, sequence_counts in counts.items():
        if name in evaluation.per_sequence:
            evaluation.per_sequence[name].update(sequence_counts.as_metrics())
    evaluation.overall.update(sum(counts.values(), DuplicateCounts()).as_metrics())
