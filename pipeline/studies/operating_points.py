"""Every row of a table tracked at the same grid of birth thresholds, not only at the profile's one.

A MOTR-family tracker starts a track when a detect query's score passes `tracking.new_track_score`
and keeps it while above `keep_track_score`. Rows trained differently end with differently
calibrated scores (here MOTRv3's are lower than MOTR's: more precise, fewer births), so one fixed
threshold can decide a comparison. With `sweep.birth_thresholds` set, each trial also tracks and
scores its split at every threshold of that grid, keeping the profile's gap between birth and keep
(`keep = birth − (new_track_score − keep_track_score)`). The grid is one for all rows and never
tuned per row; the table reports each row's curve and its best point of the grid (optimistic for
every row alike: chosen on the split it is scored on).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline import paths
from pipeline.params import Params

POINTS_FILE = "operating_points.json"
# DupShare: duplicate false positives in % of the reported boxes (`pipeline.evaluation.duplicates`).
POINT_METRICS = ("HOTA", "AssA", "DetA", "MOTA", "IDF1", "IDS", "DetRe", "DetPr", "DupShare")


def at_birth_threshold(params: Params, birth: float) -> Params:
    """A copy of `params` whose tracker starts tracks at `birth` (keep moved by the same amount)."""
    gap = params.tracking.new_track_score - params.tracking.keep_track_score
    moved = params.model_copy(deep=True)
    moved.tracking.new_track_score = float(birth)
    moved.tracking.keep_track_score = max(0.0, float(birth) - gap)
    return moved


def point_key(birth: float) -> str:
    return f"{float(birth):.2f}"


def track_operating_points(
    params: Params, checkpoint: Path, dataset_dir: Path, out_dir: Path, thresholds: Sequence[float]
) -> dict[str, dict[str, float]]:
    """Track and score `dataset_dir` at each birth threshold; `out_dir/operating_points.json` keeps
    what is done (written after every threshold), so a rerun only adds the missing ones."""
    from pipeline.steps import evaluate, track

    points_file = out_dir / POINTS_FILE
    points: dict[str, dict[str, float]] = json.loads(points_file.read_text()) if points_file.exists() else {}
    for birth in thresholds:
        key = point_key(birth)
        if key in points:
            continue
        moved = at_birth_threshold(params, birth)
        moved.track.save_video = False
        work = out_dir / "operating_points" / key
        track.run(moved, checkpoint, dataset_dir, work / "results", progress=False)
        evaluation = evaluate.run(moved, work / "results", dataset_dir, work, "metrics")
        points[key] = {k: float(evaluation.overall[k]) for k in POINT_METRICS if k in evaluation.overall}
        paths.write_text_atomic(points_file, json.dumps(points, indent=2, sort_keys=True) + "\n")
    return points


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def row_points(label: str, rows_dir: Path) -> dict[str, list[dict[str, float]]]:
    """Birth threshold → the operating points of every finished seed of the row."""
    from pipeline.studies.trial_outputs import row_slug

    found: dict[str, list[dict[str, float]]] = {}
    for points_file in sorted(rows_dir.glob(f"{row_slug(label)}-s*/{POINTS_FILE}")):
        for key, metrics in json.loads(points_file.read_text()).items():
            found.setdefault(key, []).append(metrics)
    return dict(sorted(found.items()))


def operating_points_section(
    labels: Sequence[str], rows_dir: Path, metric: str = "HOTA", names: Mapping[str, str] = {}
) -> list[str]:
    """Markdown: `metric` (mean ± std over seeds) per row and birth threshold, and each row's best
    (`names`: how a label is shown)."""
    table = {names.get(label, label): row_points(label, rows_dir) for label in labels}
    keys = sorted({key for points in table.values() for key in points})
    if not keys:
        return []
    header = ["", *[f"birth {key}" for key in keys], "best of the grid"]
    lines = [
        f"{metric} at each birth threshold (keep = birth − the profile's gap; one grid for every row):",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    for label, points in table.items():
        cells, best = [label], None
        for key in keys:
            values = [p[metric] for p in points.get(key, []) if metric in p]
            if not values:
                cells.append("—")
                continue
            mean, std = mean_std(values)
            cells.append(f"{mean:.1f}" + (f" ± {std:.1f}" if std is not None else ""))
            if best is None or mean > best[1]:
                best = (key, mean, std)
        cells.append(
            "—"
            if best is None
            else f"{best[1]:.1f}" + (f" ± {best[2]:.1f}" if best[2] is not None else "") + f" at {best[0]}"
        )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def operating_points_figure(
    labels: Sequence[str], rows_dir: Path, path: Path, names: Mapping[str, str] = {}
) -> list[Path]:
    """HOTA, DetA and AssA against the birth threshold, one line per row (mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.reporting.figures import save_figure

    table = {names.get(label, label): row_points(label, rows_dir) for label in labels}
    if not any(table.values()):
        return []
    shown = ("HOTA", "DetA", "AssA")
    fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 3.4))
    lines = ["row,birth,metric,mean,std,seeds"]
    for axis, metric in zip(axes, shown, strict=True):
        for label, points in table.items():
            xs, ys = [], []
            for key, runs in points.items():
                values = [p[metric] for p in runs if metric in p]
                if values:
                    mean, std = mean_std(values)
                    xs.append(float(key))
                    ys.append(mean)
                    lines.append(
                        f'"{label}",{key},{metric},{mean:.3f},{"" if std is None else f"{std:.3f}"},{len(values)}'
                    )
            if xs:
                axis.plot(xs, ys, marker="o", label=label)
        axis.set_title(metric)
        axis.set_xlabel("birth threshold (tracking.new_track_score)")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(
        handles, names, loc="upper center", bbox_to_anchor=(0.5, -0.05), ncol=min(3, len(names)), fontsize=8
    )
    save_figure(fig, path)
    csv_path = path.with_suffix(".csv")
    paths.write_text_atomic(csv_path, "\n".join(lines) + "\n")
    return [path, csv_path]


def points_as_metrics(points: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Flat MLflow metric names, e.g. `birth_0.30/HOTA`."""
    return {
        f"birth_{key}/{name}": float(value)
        for key, metrics in points.items()
        for name, value in metrics.items()
    }
