"""Custom data of several classes scored with TrackEval's MOTChallenge dataset, which scores one class
(pedestrian): one TrackEval run per class on that class's gt rows (relabelled class 1) and result
rows, then the classes combined by TrackEval's own metric code (`combine_classes_det_averaged`,
`combine_classes_class_averaged`), as its evaluator combines the classes of multi-class datasets.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.datasets import DEFAULT_CLASSES


def check_classes(benchmark: str, classes: dict[int, str] | None) -> dict[int, str] | None:
    """`classes` unless they are the default single class (then None: scored as today); classes
    other than MOTChallenge's class 1 are custom data's only (`dataset.classes`)."""
    if classes is None or dict(classes) == DEFAULT_CLASSES:
        return None
    if benchmark != "custom":
        raise ValueError(
            f"benchmark {benchmark} scores class 1 (pedestrian) only; "
            f"classes {dict(classes)} need the custom benchmark"
        )
    return dict(classes)


def class_subset(rows: np.ndarray, cls: int) -> np.ndarray:
    """The gt rows (`GT_FIELDS` order) of gt class `cls`, relabelled class 1: one class as a
    pedestrian benchmark."""
    subset = rows[rows[:, 7] == cls].copy()
    subset[:, 7] = 1
    return subset


def combine(metrics: dict[str, Any], by_class: dict[str, dict[str, Any]], average: bool) -> dict[str, Any]:
    """One result (metric name → TrackEval's fields) of per-class results (class → metric name →
    fields), detection-averaged (`average` False) or the mean over classes."""
    combined = {}
    for name, metric in metrics.items():
        parts = {cls: res[name] for cls, res in by_class.items()}
        if average:
            combined[name] = metric.combine_classes_class_averaged(parts)
        else:
            combined[name] = metric.combine_classes_det_averaged(parts)
    # TrackEval sums CLR_Frames over classes: a frame counts once, and FP per frame is per video.
    clear = combined["CLEAR"]
    clear["CLR_Frames"] = next(iter(by_class.values()))["CLEAR"]["CLR_Frames"]
    if not average:
        clear["FP_per_frame"] = clear["CLR_FP"] / max(1.0, clear["CLR_Frames"])
    return combined
