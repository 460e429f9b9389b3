"""Where a sweep's trials leave their outputs, and the per-epoch statistics read back from them.

A trial of sweep `<name>` writes `<sweep.storage_path>/<name>/rows/<row slug>-s<seed>-<hash>/`
(`eval.json`, `model/assignment_stats.json`, ...). Tables 3-5 and the studies plot the same
dynamics from there: Fig. 2(d)'s early-layer track share, Fig. 6's misalignment and the tracking
counts that tell a reading from a bug (motrv3.stats).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline import paths
from pipeline.studies.rows import SweepRow, shown_label

if TYPE_CHECKING:
    from pipeline.params import Params

DYNAMICS = ("early_track_share", "misaligned_share", "duplicates_per_label", "track_score_present")


def row_slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "row"


def rows_dir_of(params: Params, root: Path, name: str) -> Path:
    """The folder of sweep `name`'s trial outputs (`sweep.storage_path` relative to the repo root)."""
    storage = Path(params.sweep.storage_path)
    return (storage if storage.is_absolute() else root / storage) / name / "rows"


def row_dynamics(label: str, rows_dir: Path) -> dict[str, list[list[float]]]:
    """Per statistic of DYNAMICS, one per-epoch series per finished seed of the row (trial outputs)."""
    series: dict[str, list[list[float]]] = {key: [] for key in DYNAMICS}
    for stats_file in sorted(rows_dir.glob(f"{row_slug(label)}-s*/model/assignment_stats.json")):
        data = json.loads(stats_file.read_text())
        for key in DYNAMICS:
            series[key].append([float(epoch.get(f"assign/{key}", float("nan"))) for epoch in data["epochs"]])
    return series


def dynamics_figure(rows: Sequence[SweepRow], rows_dir: Path, path: Path) -> list[Path]:
    """One panel per statistic: the mean over seeds of each row, per epoch (PNG + CSV beside it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.reporting.figures import save_figure

    table = {shown_label(row.label, row.settings): row_dynamics(row.label, rows_dir) for row in rows}
    if not any(series for row in table.values() for series in row.values()):
        return []
    fig, axes = plt.subplots(1, len(DYNAMICS), figsize=(4.2 * len(DYNAMICS), 3.4))
    lines = ["row,statistic,epoch,mean,seeds"]
    for axis, key in zip(axes, DYNAMICS, strict=True):
        for label, stats in table.items():
            runs = stats[key]
            if not runs:
                continue
            epochs = min(len(run) for run in runs)
            means = [sum(run[e] for run in runs) / len(runs) for e in range(epochs)]
            axis.plot(range(1, epochs + 1), means, marker="o", label=label)
            lines += [f'"{label}",{key},{e + 1},{m:.4f},{len(runs)}' for e, m in enumerate(means)]
        axis.set_title(key.replace("_", " "))
        axis.set_xlabel("epoch")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.05), ncol=min(3, len(labels)), fontsize=8
    )
    written = [save_figure(fig, path)]
    csv_path = path.with_suffix(".csv")
    paths.write_text_atomic(csv_path, "\n".join(lines) + "\n")
    return [*written, csv_path]
