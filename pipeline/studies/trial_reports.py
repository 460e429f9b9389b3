"""What every sweep (a paper table or a study) writes beside its table, read from the trial outputs:
the rows against the first beyond the seed spread, each row at the shared grid of birth
thresholds, and the per-epoch dynamics (Fig. 2(d), Fig. 6)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pipeline.studies.operating_points import operating_points_figure, operating_points_section
from pipeline.studies.rows import SweepRow, shown_label
from pipeline.studies.trial_outputs import dynamics_figure
from pipeline.studies.verdicts import verdict_lines


def measured_notes(outcome, rows_dir: Path) -> list[str]:
    """Lines under the measured table: verdicts against the first row, then the operating points."""
    notes = verdict_lines(outcome.rows, outcome.trials)
    names = {row.label: shown_label(row.label, row.settings) for row in outcome.rows}
    points = operating_points_section(list(names), rows_dir, names=names)
    return [*notes, *([""] if notes and points else []), *points]


def sweep_figures(name: str, rows: Sequence[SweepRow], rows_dir: Path, out_dir: Path) -> list[Path]:
    """`<name>_dynamics.png` and `<name>_operating_points.png` (+ CSVs) where the trials have the data."""
    names = {row.label: shown_label(row.label, row.settings) for row in rows}
    return [
        *dynamics_figure(rows, rows_dir, out_dir / f"{name}_dynamics.png"),
        *operating_points_figure(list(names), rows_dir, out_dir / f"{name}_operating_points.png", names),
    ]
