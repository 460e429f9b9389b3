"""Each row of a multi-seed table against its first row, read as issue #24 reads them.

A difference counts only when it is *beyond the seed spread*: |mean difference| larger than the
larger of the two sample standard deviations. One seed has no spread, so nothing is beyond it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.reporting.tables import MeasuredRow
from pipeline.studies.rows import shown_label

VERDICT_METRICS = ("HOTA", "DetA", "AssA", "MOTA")


def beyond_spread(row: MeasuredRow, base: MeasuredRow, metric: str) -> bool | None:
    """True/False when both rows have the metric and a spread over seeds; None otherwise."""
    if row.metrics.get(metric) is None or base.metrics.get(metric) is None:
        return None
    if metric not in row.spread or metric not in base.spread:
        return None
    difference = float(row.metrics[metric]) - float(base.metrics[metric])
    return abs(difference) > max(row.spread[metric], base.spread[metric])


def verdict_lines(
    rows: Sequence[MeasuredRow],
    trials: Sequence[Mapping[str, Any]] = (),
    metrics: Sequence[str] = VERDICT_METRICS,
) -> list[str]:
    """Markdown lines: per row its HOTA per seed, and each metric's difference to the first row."""
    if len(rows) < 2:
        return []
    base = rows[0]
    lines = [
        f"Against {shown_label(base.label, base.settings)} (beyond = |Δ mean| > the larger std of the two rows):",
        "",
    ]
    for row in rows:
        seeds = sorted(
            (int(t["seed"]), float(t["HOTA"])) for t in trials if t.get("row") == row.label and "HOTA" in t
        )
        per_seed = " / ".join(f"{hota:.1f}" for _, hota in seeds)
        text = f"- {shown_label(row.label, row.settings)}: HOTA per seed {per_seed or '—'}"
        if row is not base:
            parts = []
            for metric in metrics:
                if row.metrics.get(metric) is None or base.metrics.get(metric) is None:
                    continue
                delta = float(row.metrics[metric]) - float(base.metrics[metric])
                verdict = beyond_spread(row, base, metric)
                mark = {True: "beyond", False: "within", None: "no spread"}[verdict]
                parts.append(f"{metric} {delta:+.1f} ({mark})")
            text += "; " + ", ".join(parts)
        lines.append(text)
    return lines
