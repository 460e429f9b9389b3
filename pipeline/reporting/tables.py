"""Tables and figures: what this repository measured, beside what the paper reports.

Measured and reported numbers never share a section: every table has a "measured here
(<dataset>, <profile>)" part and a "reported in the paper (<benchmark>)" part, and the CSV says
which part each row belongs to (`section`). Tables go to `reports/<name>.{md,csv}`, figures to
`reports/figures/*.png`, DVC plot data to `reports/plots/*.csv`; every file is written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.baseline_trackers import TRACKERS
from pipeline.paths import METRICS_DIR, REPORTS_DIR, RESULTS_DIR, write_text_atomic
from pipeline.reporting.paper_results import LOWER_IS_BETTER, METRICS, ReportedTable

FIGURES_DIR = REPORTS_DIR / "figures"
PLOTS_DIR = REPORTS_DIR / "plots"  # CSV the DVC `plots:` section reads
METHODS = ("motr", "motrv3")
# Table 1's tracking-by-detection rows (stage `baselines`: pipeline.baseline_trackers on our detector's boxes)
BASELINE_TRACKERS = tuple(TRACKERS)
METHOD_LABELS = {
    "motr": "MOTR (baseline)",
    "motrv3": "MOTRv3",
    "detector": "pseudo-label detector",
    **{name: spec.label for name, spec in TRACKERS.items()},
}


COLUMN_TITLES = {
    "end_to_end": "End to end",
    "rfs": "RFS",
    "pld": "PLD",
    "tgd": "TGD",
    "groups": "Group num",
    "noise": "Ref. point noise",
    "source": "Pseudo labels",
    "backbone": "Backbone",
    "method": "Method",
}


class ReportError(ValueError):
    """An input of a report is missing or malformed; the message names the file and field."""


# ---------------------------------------------------------------------------------------------
# Reading the pipeline's outputs


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ReportError(f"{path}: missing (run the stage that writes it first)") from None
    except json.JSONDecodeError as error:
        raise ReportError(f"{path}:{error.lineno}: not valid JSON: {error.msg}") from None


def read_metrics(path: str | Path, required: Sequence[str] = METRICS) -> dict[str, float | None]:
    """`metrics/<name>.json` (flat keys, percentages) → {metric: value}; names file and key on error."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object of metrics, got {type(data).__name__}")
    values: dict[str, float | None] = {}
    for key in required:
        if key not in data:
            raise ReportError(f"{path}: field {key!r} missing; have {sorted(data)}")
        value = data[key]
        if value is not None and not isinstance(value, int | float):
            raise ReportError(f"{path}: field {key!r} must be a number, got {value!r}")
        values[key] = None if value is None else float(value)
    return values


def metrics_path(name: str, root: Path = Path(".")) -> Path:
    return root / METRICS_DIR / f"{name}.json"


def read_fps(method: str, split: str, root: Path = Path(".")) -> float:
    """Frames per second of `track` (`results/<method>/<split>/fps.json`, key `fps`)."""
    path = root / RESULTS_DIR / method / split / "fps.json"
    data = read_json(path)
    value = data.get("fps") if isinstance(data, dict) else None
    if not isinstance(value, int | float):
        raise ReportError(f"{path}: field 'fps' missing or not a number")
    return float(value)


# ---------------------------------------------------------------------------------------------
# Comparison tables


@dataclass
class MeasuredRow:
    """One measured row: settings (the table's setting columns) and metric means over `seeds`."""

    label: str
    settings: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float | None] = field(default_factory=dict)
    spread: dict[str, float] = field(default_factory=dict)  # sample std over seeds
    seeds: int = 1


def aggregate_seeds(label: str, settings: dict[str, Any], runs: Sequence[dict[str, float]]) -> MeasuredRow:
    """Mean and sample standard deviation of each metric over the seeds of one row."""
    if not runs:
        raise ReportError(f"row {label!r}: no finished trials")
    keys = [k for k in runs[0] if all(isinstance(r.get(k), int | float) for r in runs)]
    means, spread = {}, {}
    for key in keys:
        values = [float(r[key]) for r in runs]
        mean = sum(values) / len(values)
        means[key] = mean
        if len(values) > 1:
            spread[key] = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return MeasuredRow(label, dict(settings), means, spread, seeds=len(runs))


def _format_value(key: str, value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "✓" if value else ""
    if isinstance(value, float):
        if key == "IDS":
            return f"{value:,.0f}"
        if key == "FPS":
            return f"{value:.2f}" if value < 10 else f"{value:.1f}"
        return f"{value:.1f}"
    if isinstance(value, int) and key == "IDS":
        return f"{value:,}"
    return str(value)


def _markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


@dataclass
class Comparison:
    """A measured section and the paper's reported section of one table."""

    name: str  # file stem under reports/, e.g. "table3"
    title: str
    measured_context: str  # e.g. "synthetic val, profile cpu"
    columns: Sequence[str]  # setting columns, shared by both sections
    metrics: Sequence[str]
    measured: Sequence[MeasuredRow]
    paper: ReportedTable | None = None
    notes: Sequence[str] = ()
    measured_notes: Sequence[str] = ()  # lines right under the measured table

    def markdown(self) -> str:
        columns = [COLUMN_TITLES.get(c, c) for c in self.columns]
        header = ["", *columns, *[f"{m}{'↓' if m in LOWER_IS_BETTER else '↑'}" for m in self.metrics]]
        out = [f"# {self.title}", ""]
        multi_seed = any(row.seeds > 1 for row in self.measured)
        out.append(f"## Measured here ({self.measured_context})")
        out.append("")
        if self.measured:
            cells = []
            for row in self.measured:
                line = [row.label, *(_format_value(c, row.settings.get(c)) for c in self.columns)]
                for m in self.metrics:
                    text = _format_value(m, row.metrics.get(m))
                    if m in row.spread:
                        text += f" ± {_format_value(m, row.spread[m])}"
                    line.append(text)
                cells.append(line)
            out.append(_markdown_table(header, cells))
            if multi_seed:
                out += [
                    "",
                    "Mean ± sample standard deviation over seeds: "
                    + ", ".join(f"{r.label}: {r.seeds}" for r in self.measured),
                ]
            if self.measured_notes:
                out += ["", *self.measured_notes]
        else:
            out.append("_no measured rows yet_")
        if self.paper is not None:
            out += ["", f"## Reported in the paper ({self.paper.benchmark}; Table {self.paper.number})", ""]
            out.append(f"_{self.paper.caption} Copied from the paper, not measured here._")
            out.append("")
            cells = [
                [
                    r["label"],
                    *(_format_value(c, r.get(c)) for c in self.columns),
                    *(_format_value(m, r.get(m)) for m in self.metrics),
                ]
                for r in self.paper.rows
            ]
            out.append(_markdown_table(header, cells))
        if self.notes:
            out += ["", "Notes:", "", *[f"- {note}" for note in self.notes]]
        return "\n".join(out) + "\n"

    def records(self) -> list[dict[str, Any]]:
        """Flat rows for CSV and MLflow: `section` is `measured` or `reported`, never mixed."""
        rows = []
        for row in self.measured:
            record = {
                "section": "measured",
                "benchmark": self.measured_context,
                "label": row.label,
                "seeds": row.seeds,
            }
            record.update({c: row.settings.get(c) for c in self.columns})
            record.update({m: row.metrics.get(m) for m in self.metrics})
            record.update({f"{m}_std": row.spread.get(m) for m in self.metrics})
            rows.append(record)
        if self.paper is not None:
            for item in self.paper.rows:
                record = {
                    "section": "reported",
                    "benchmark": self.paper.benchmark,
                    "label": item["label"],
                    "seeds": None,
                }
                record.update({c: item.get(c) for c in self.columns})
                record.update({m: item.get(m) for m in self.metrics})
                record.update({f"{m}_std": None for m in self.metrics})
                rows.append(record)
        return rows


def write_csv(path: str | Path, records: Sequence[dict[str, Any]]) -> Path:
    path = Path(path)
    fieldnames: list[str] = []
    for record in records:
        fieldnames += [k for k in record if k not in fieldnames]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: "" if v is None else v for k, v in record.items()})
    write_text_atomic(path, buffer.getvalue())
    return path


def write_comparison(comparison: Comparison, reports_dir: Path = REPORTS_DIR) -> tuple[Path, Path]:
    """`reports/<name>.md` and `reports/<name>.csv`."""
    md = Path(reports_dir) / f"{comparison.name}.md"
    write_text_atomic(md, comparison.markdown())
    return md, write_csv(Path(reports_dir) / f"{comparison.name}.csv", comparison.records())


def log_comparison(comparison: Comparison) -> None:
    """The table into the active MLflow run: `mlflow.log_table` (one JSON per table) + the Markdown."""
    import mlflow

    records = comparison.records()
    columns: dict[str, list[Any]] = {k: [] for r in records for k in r}
    for record in records:
        for key in columns:
            value = record.get(key)
            columns[key].append(
                "" if value is None else str(value) if not isinstance(value, int | float) else value
            )
    mlflow.log_table(data=columns, artifact_file=f"tables/{comparison.name}.json")
    mlflow.log_text(comparison.markdown(), f"tables/{comparison.name}.md")


def measured_context(params) -> str:
    return f"{params.dataset.name} {params.dataset.eval_split}, profile {params.profile}"
