"""The numbers the MOTRv3 paper reports (Tables 1-6), transcribed once, here.

Reports print these beside what this repository measures, always in a separate, labelled
section: they were measured by the authors on DanceTrack/MOT17 with the paper's models, never
on the configured dataset. Metrics are percentages except IDS (a count) and FPS; a value the
paper leaves out ("-") is None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

METRICS = ("HOTA", "AssA", "DetA", "MOTA", "IDF1", "IDS")  # the order of the paper's columns
LOWER_IS_BETTER = frozenset({"IDS"})


@dataclass(frozen=True)
class ReportedTable:
    """One table of the paper: `rows` hold a `label`, setting keys (`columns`) and metric values."""

    number: int
    caption: str
    benchmark: str  # where the authors measured it
    columns: tuple[str, ...]  # setting columns shown before the metrics
    metrics: tuple[str, ...]
    rows: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def row(self, label: str) -> dict[str, Any]:
        for item in self.rows:
            if item["label"] == label:
                return item
        raise KeyError(
            f"paper Table {self.number} has no row {label!r}; rows: {[r['label'] for r in self.rows]}"
        )


def _rows(keys: tuple[str, ...], *values: tuple) -> tuple[dict[str, Any], ...]:
    return tuple(dict(zip(keys, item, strict=True)) for item in values)


_T1 = ("label", "end_to_end", "family", "HOTA", "AssA", "DetA", "MOTA", "IDF1")
TABLE1 = ReportedTable(
    number=1,
    caption="Tracking results on DanceTrack test set.",
    benchmark="DanceTrack test",
    columns=("end_to_end", "family"),
    metrics=("HOTA", "AssA", "DetA", "MOTA", "IDF1"),
    rows=_rows(
        _T1,
        ("QDTrack", False, "CNN", 54.2, 36.8, 80.1, 87.7, 50.4),
        ("FairMOT", False, "CNN", 59.3, 58.0, 60.9, 73.7, 72.3),
        ("CenterTrack", False, "CNN", 41.8, 22.6, 78.1, 86.8, 35.7),
        ("ByteTrack", False, "CNN", 47.7, 32.1, 71.0, 89.6, 53.9),
        ("OC-SORT", False, "CNN", 55.1, 38.3, 80.3, 92.0, 54.6),
        ("TransTrack", False, "Transformer", 45.5, 27.5, 75.9, 88.4, 45.2),
        ("MOTR", True, "Transformer", 54.2, 40.2, 73.5, 79.7, 51.5),
        ("MOTRv2", False, "Transformer", 69.9, 59.0, 83.0, 91.9, 71.7),
        ("MOTRv3", True, "Transformer", 70.4, 59.3, 83.8, 92.9, 72.3),
    ),
)

_T2 = ("label", "end_to_end", "family", *METRICS)
TABLE2 = ReportedTable(
    number=2,
    caption="Tracking results on the MOT17 test set (MOTRv2* = MOTRv2 without post-processing).",
    benchmark="MOT17 test",
    columns=("end_to_end", "family"),
    metrics=METRICS,
    rows=_rows(
        _T2,
        ("QDTrack", False, "CNN", 53.9, 52.7, 55.6, 68.7, 66.3, 3378),
        ("FairMOT", False, "CNN", 59.3, 58.0, 60.9, 73.7, 72.3, 3303),
        ("CenterTrack", False, "CNN", 52.2, 51.0, 53.8, 67.8, 64.7, 3039),
        ("ByteTrack", False, "CNN", 63.1, 62.0, 64.5, 80.3, 77.3, 2196),
        ("TransTrack", False, "Transformer", 54.1, 47.9, 61.6, 74.5, 63.9, 3663),
        ("MOTR", True, "Transformer", 57.8, 55.7, 60.3, 73.4, 68.6, 2439),
        ("MOTRv2", False, "Transformer", 62.0, 60.6, 63.8, 78.6, 75.0, None),
        ("MOTRv2*", False, "Transformer", 57.6, 57.5, 58.1, 70.1, 70.3, 3225),
        ("MOTRv3", True, "Transformer", 60.2, 58.7, 62.1, 75.9, 72.4, 2403),
    ),
)

_T3 = ("label", "rfs", "pld", "tgd", *METRICS)
TABLE3 = ReportedTable(
    number=3,
    caption="Overall ablation study of the proposed strategies.",
    benchmark="DanceTrack val",
    columns=("rfs", "pld", "tgd"),
    metrics=METRICS,
    rows=_rows(
        _T3,
        ("1 Base", False, False, False, 56.6, 47.0, 68.4, 75.3, 60.0, 1662),
        ("2", True, False, False, 60.9, 49.4, 75.8, 85.5, 63.7, 1139),
        ("3", False, True, False, 59.2, 46.5, 75.5, 84.9, 61.7, 1284),
        ("4", False, False, True, 59.6, 49.7, 71.9, 80.0, 62.1, 1804),
        ("5", True, True, False, 61.7, 50.0, 76.3, 86.0, 64.8, 1350),
        ("6 MOTRv3", True, True, True, 63.9, 53.5, 76.7, 86.8, 67.2, 1151),
    ),
)

_T4 = ("label", "source", *METRICS)
TABLE4 = ReportedTable(
    number=4,
    caption="The tracking results of using different pseudo label generation strategies.",
    benchmark="DanceTrack val",
    columns=("source",),
    metrics=METRICS,
    rows=_rows(
        _T4,
        ("YOLOX", "YOLOX", 61.6, 49.8, 76.4, 86.1, 63.4, 1408),
        ("Sparse RCNN", "Sparse RCNN", 61.7, 50.0, 76.3, 86.0, 64.8, 1350),
        ("Parallel (YOLOX & Sparse RCNN)", "YOLOX+Sparse RCNN", 60.4, 47.4, 77.1, 86.7, 62.5, 1551),
        ("Ground Truth", "gt", 60.3, 48.3, 75.6, 85.6, 63.5, 1411),
    ),
)

_T5 = ("label", "groups", "noise", *METRICS)
TABLE5 = ReportedTable(
    number=5,
    caption="Ablation study on how TGD affects the tracking performance.",
    benchmark="DanceTrack val",
    columns=("groups", "noise"),
    metrics=METRICS,
    rows=_rows(
        _T5,
        ("base", None, False, 61.7, 50.0, 76.3, 86.0, 64.8, 1350),
        ("+ track query group", 3, False, 63.2, 52.4, 76.6, 86.1, 65.9, 1116),
        ("+ track query group", 4, False, 63.7, 53.3, 76.8, 86.7, 66.6, 1027),
        ("+ track query group", 5, False, 63.3, 52.6, 76.6, 86.3, 66.5, 1106),
        ("+ reference point noise", 4, True, 63.9, 53.5, 76.7, 86.8, 67.2, 1151),
    ),
)

_T6 = ("label", "backbone", "HOTA", "MOTA", "IDF1", "FPS")
TABLE6 = ReportedTable(
    number=6,
    caption="Inference speed comparison on DanceTrack test set among MOTR series.",
    benchmark="DanceTrack test",
    columns=("backbone",),
    metrics=("HOTA", "MOTA", "IDF1", "FPS"),
    rows=_rows(
        _T6,
        ("MOTR", "ResNet-50", 54.2, 79.7, 51.5, 9.5),
        ("MOTRv2", "ResNet-50", 69.9, 91.9, 71.7, 6.9),
        ("MOTRv3", "ResNet-50", 68.3, 91.7, 70.1, 10.6),
        ("MOTRv3", "ConvNeXt-B", 70.4, 92.9, 72.3, 9.8),
    ),
)

TABLES: dict[int, ReportedTable] = {t.number: t for t in (TABLE1, TABLE2, TABLE3, TABLE4, TABLE5, TABLE6)}

# Fig. 4 is a plot without printed values; only its axes are known.
FIG4_BACKBONES = ("Res50", "Conv-T", "Conv-S", "Conv-B")


def reported(number: int) -> ReportedTable:
    if number not in TABLES:
        raise KeyError(f"the paper has no Table {number}; tables: {sorted(TABLES)}")
    return TABLES[number]
