"""What every sweep (a paper table or a study) writes beside its table, read from the trial outputs:
the rows against the first beyond the seed spread, each row at the shared grid of birth
thresholds, where each row's false positives come from, and the per-epoch dynamics (Fig. 2(d),
Fig. 6)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline.studies.operating_points import mean_std, operating_points_figure, operating_points_section
from pipeline.studies.rows import SweepRow, shown_label
from pipeline.studies.trial_outputs import dynamics_figure, row_slug
from pipeline.studies.verdicts import verdict_lines


def measured_notes(outcome, rows_dir: Path) -> list[str]:
    """Lines under the measured table: verdicts against the first row, then the operating points."""
    notes = verdict_lines(outcome.rows, outcome.trials)
    names = {row.label: shown_label(row.label, row.settings) for row in outcome.rows}
    points = operating_points_section(list(names), rows_dir, names=names)
    duplicates = duplicates_section(list(names), rows_dir, names=names)
    sections = [section for section in (notes, points, duplicates) if section]
    return [line for i, section in enumerate(sections) for line in ([""] if i else []) + section]


# The duplicate diagnostic's keys (`pipeline.evaluation.duplicates`) beside the precision they explain.
DUPLICATE_COLUMNS = ("DetPr", "DupShare", "DupTwin", "DupDrift", "ScoreTP", "ScoreDup")


def duplicates_section(labels: Sequence[str], rows_dir: Path, names: Mapping[str, str] = {}) -> list[str]:
    """Markdown: each row's duplicate false positives at the profile's thresholds (each trial's
    `metrics.json`), mean ± std over seeds; [] when no trial has them (scored before the diagnostic)."""
    lines = []
    for label in labels:
        runs = [
            json.loads(path.read_text())
            for path in sorted(rows_dir.glob(f"{row_slug(label)}-s*/metrics.json"))
        ]
        runs = [run for run in runs if "DupShare" in run]
        if not runs:
            continue
        cells = [names.get(label, label)]
        for key in DUPLICATE_COLUMNS:
            values = [run[key] for run in runs if run.get(key) is not None]
            if not values:
                cells.append("—")
                continue
            mean, std = mean_std(values)
            digits = 3 if key.startswith("Score") else 1
            cells.append(f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else ""))
        lines.append("| " + " | ".join([*cells, str(len(runs))]) + " |")
    if not lines:
        return []
    header = [
        "",
        "DetPr",
        "duplicates, % of boxes",
        "twins",
        "drifts",
        "score: matched",
        "score: duplicates",
        "seeds",
    ]
    return [
        "Where the false positives come from (`pipeline/evaluation/duplicates.py`): a duplicate is an "
        "unmatched box over another reported box (IoU ≥ 0.5); a twin, two tracks on one target; a drift, "
        "a track on another track's target. Counts over the split, mean ± std over seeds:",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *lines,
    ]


def sweep_figures(name: str, rows: Sequence[SweepRow], rows_dir: Path, out_dir: Path) -> list[Path]:
    """`<name>_dynamics.png` and `<name>_operating_points.png` (+ CSVs) where the trials have the data."""
    names = {row.label: shown_label(row.label, row.settings) for row in rows}
    return [
        *dynamics_figure(rows, rows_dir, out_dir / f"{name}_dynamics.png"),
        *operating_points_figure(list(names), rows_dir, out_dir / f"{name}_operating_points.png", names),
    ]
