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
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.paper_results import LOWER_IS_BETTER, METRICS, ReportedTable, reported
from pipeline.paths import METRICS_DIR, MODELS_DIR, REPORTS_DIR, RESULTS_DIR, atomic_path, write_text_atomic

FIGURES_DIR = REPORTS_DIR / "figures"
PLOTS_DIR = REPORTS_DIR / "plots"  # CSV the DVC `plots:` section reads
METHODS = ("motr", "motrv3")
METHOD_LABELS = {"motr": "MOTR (baseline)", "motrv3": "MOTRv3", "detector": "pseudo-label detector"}


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


# ---------------------------------------------------------------------------------------------
# Table 1 and Table 6


def detector_reference_row(path: Path) -> MeasuredRow:
    """The pseudo-label detector's boxes scored like a tracker: a detection reference.

    Per-frame detections carry no identities, so the row shows DetA and, in the MOTA column, MODA
    (MOTA without the identity-switch term, which would count every frame as a switch).
    """
    values = read_metrics(path, required=("DetA", "MODA"))
    values = {"DetA": values["DetA"], "MOTA": values["MODA"]}
    return MeasuredRow(
        METHOD_LABELS["detector"] + " (MODA)", {"end_to_end": None, "family": "detection only"}, values
    )


def table1(params, root: Path = Path("."), detector_metrics: Path | None = None) -> Comparison:
    """Table 1 on the configured dataset: our MOTR and MOTRv3 (+ the detector as a reference)."""
    measured = []
    for method in METHODS:
        values = read_metrics(metrics_path(method, root))
        measured.append(
            MeasuredRow(METHOD_LABELS[method], {"end_to_end": True, "family": "Transformer"}, values)
        )
    notes = [
        "Rows above were trained and evaluated by this repository's pipeline (random-init or "
        "configured backbone, the active profile's model size); rows below are the paper's numbers on "
        "DanceTrack test and are not comparable in absolute value.",
    ]
    detector_metrics = detector_metrics or metrics_path("detector", root)
    if detector_metrics.exists():
        measured.append(detector_reference_row(detector_metrics))
        notes.append(
            "The pseudo-label detector row scores the detector's boxes as a tracker whose every box is its "
            "own identity (confidence ≥ tracking.new_track_score): only DetA means anything there, and its "
            "MOTA column is MODA (MOTA without identity switches); association metrics are omitted. When this stage computes it (no `metrics/detector.json` "
            f"from evaluate), it is on the {params.dataset.train_split} split, the one with pseudo labels."
        )
    return Comparison(
        name="table1",
        title="Table 1: tracking results (HOTA, AssA, DetA, MOTA, IDF1)",
        measured_context=measured_context(params),
        columns=("end_to_end",),
        metrics=("HOTA", "AssA", "DetA", "MOTA", "IDF1"),
        measured=measured,
        paper=reported(1),
        notes=notes,
    )


def table6(params, root: Path = Path("."), split: str | None = None) -> Comparison:
    """Table 6: inference speed of the methods measured here (fps.json of `track`) beside the paper's."""
    split = split or params.dataset.eval_split
    measured = []
    for method in METHODS:
        values = read_metrics(metrics_path(method, root), required=("HOTA", "MOTA", "IDF1"))
        values["FPS"] = read_fps(method, split, root)
        measured.append(MeasuredRow(METHOD_LABELS[method], {"backbone": params.model.backbone}, values))
    device = "GPU" if params.train.use_gpu else f"CPU ({os.cpu_count()} cores)"
    return Comparison(
        name="table6",
        title="Table 6: inference speed of the MOTR series",
        measured_context=f"{measured_context(params)}, {device}, split {split}",
        columns=("backbone",),
        metrics=("HOTA", "MOTA", "IDF1", "FPS"),
        measured=measured,
        paper=reported(6),
        notes=["FPS here is end-to-end `track` throughput on this machine; the paper's is on a GPU."],
    )


# ---------------------------------------------------------------------------------------------
# Fig. 2 and Fig. 6: label assignment statistics


@dataclass
class EpochAssignment:
    """Per-epoch label assignment numbers of one training run (one entry of assignment_stats.json)."""

    epoch: int
    detect_share: float  # fraction of labels assigned to detect queries (Fig. 2 c/d)
    track_share: float
    misaligned_share: float | None  # Fig. 6: detect-query labels differing between layer l<L and L
    activations: list[float]  # per detect-query slot: labels matched this epoch (Fig. 2 a/b)


PREFIX = "assign/"  # key prefix of `AssignmentStats.summary()`


def _number(data: dict, path: Path, *names: str, default: Any = KeyError) -> Any:
    for name in names:
        if name in data:
            return data[name]
    if default is KeyError:
        raise ReportError(f"{path}: field {names[0]!r} missing; have {sorted(data)}")
    return default


def read_assignment_stats(path: str | Path) -> list[EpochAssignment]:
    """`models/<method>/assignment_stats.json` → per-epoch statistics.

    The file (written by `pipeline.training`) holds `{"method", "epochs": [entry, ...]}`, an entry
    being `motrv3.AssignmentStats.summary()` (keys `assign/...`) plus `epoch` and `slot_histogram`.
    """
    path = Path(path)
    data = read_json(path)
    entries = data.get("epochs") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise ReportError(f"{path}: field 'epochs' must be a non-empty list of per-epoch summaries")
    result = []
    for index, entry in enumerate(entries):
        where = Path(f"{path}[epochs][{index}]")
        if not isinstance(entry, dict):
            raise ReportError(f"{where}: expected an object")
        # Fig. 2 c/d: shares over the early (RFS) layers; without aux losses only the last layer exists.
        early = [entry.get(f"{PREFIX}early_det_share"), entry.get(f"{PREFIX}early_track_share")]
        if all(isinstance(v, int | float) for v in early) and sum(early) > 0:
            detect, track = early
        else:
            detect = _number(entry, where, f"{PREFIX}last_det_share")
            track = _number(entry, where, f"{PREFIX}last_track_share")
        histogram = _number(entry, where, "slot_histogram")
        if not isinstance(histogram, list):
            raise ReportError(f"{where}: field 'slot_histogram' must be a list of counts")
        misaligned = entry.get(f"{PREFIX}misaligned_share")
        result.append(
            EpochAssignment(
                epoch=int(_number(entry, where, "epoch", default=index)),
                detect_share=float(detect),
                track_share=float(track),
                misaligned_share=None if misaligned is None else float(misaligned),
                activations=[float(v) for v in histogram],
            )
        )
    return result


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def _wide(x_name: str, series: dict[str, dict[Any, float]], order: Sequence[Any] | None = None) -> list[dict]:
    """Series → one row per x, one column per series: the shape DVC `plots` reads (`y: [col, ...]`)."""
    xs = list(order) if order is not None else sorted({x for values in series.values() for x in values})
    return [{x_name: x, **{name: values.get(x) for name, values in series.items()}} for x in xs]


def figure2(runs: dict[str, list[EpochAssignment]], out_dir: Path = REPORTS_DIR) -> list[Path]:
    """Fig. 2: (a, b) detect-query activation counts without/with RFS; (c, d) label shares per epoch.

    `runs` maps "without RFS"/"with RFS" (or any two labels) to their per-epoch statistics.
    Writes the PNG and the DVC plot data (`plots/fig2_activations.csv`, `plots/fig2_label_shares.csv`,
    one column per run, e.g. `detect_pct_with_rfs_motrv3`).
    """
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    labels = list(runs)
    fig, axes = plt.subplots(2, len(labels), figsize=(5 * len(labels), 7), squeeze=False)
    activations: dict[str, dict[int, float]] = {}
    shares: dict[str, dict[int, float]] = {}
    for col, label in enumerate(labels):
        epochs = runs[label]
        slots = max((len(e.activations) for e in epochs), default=0)
        totals = [sum(e.activations[i] for e in epochs if i < len(e.activations)) for i in range(slots)]
        activations[f"activations_{_slug(label)}"] = dict(enumerate(totals))
        ax = axes[0][col]
        ax.bar(range(slots), totals, color="tab:blue" if col == 0 else "tab:orange")
        ax.set_title(f"({'ab'[col] if col < 2 else col}) detect-query activations, {label}")
        ax.set_xlabel("detect query id")
        ax.set_ylabel("labels matched (all epochs)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax = axes[1][col]
        xs = [e.epoch for e in epochs]
        ax.plot(xs, [100 * e.detect_share for e in epochs], marker="o", label="detect queries")
        ax.plot(xs, [100 * e.track_share for e in epochs], marker="s", label="track queries")
        ax.set_ylim(0, 100)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"({'cd'[col] if col < 2 else col}) label share, {label}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("% of box labels")
        ax.legend()
        shares[f"detect_pct_{_slug(label)}"] = {e.epoch: 100 * e.detect_share for e in epochs}
        shares[f"track_pct_{_slug(label)}"] = {e.epoch: 100 * e.track_share for e in epochs}
    top = max((max(v.values(), default=0) for v in activations.values()), default=0)
    for ax in axes[0]:
        ax.set_ylim(0, max(top, 1) * 1.05)  # same scale left and right: the counts are compared
    fig.tight_layout()
    return [
        save_figure(fig, Path(out_dir) / "figures" / "fig2_label_assignment.png"),
        write_csv(Path(out_dir) / "plots" / "fig2_activations.csv", _wide("query", activations)),
        write_csv(Path(out_dir) / "plots" / "fig2_label_shares.csv", _wide("epoch", shares)),
    ]


def figure6(runs: dict[str, list[EpochAssignment]], out_dir: Path = REPORTS_DIR) -> list[Path]:
    """Fig. 6: share of misaligned detect-query labels (layer l < L vs the last layer) per epoch."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    series: dict[str, dict[int, float]] = {}
    for label, epochs in runs.items():
        points = [(e.epoch, 100 * e.misaligned_share) for e in epochs if e.misaligned_share is not None]
        if not points:
            continue
        ax.plot(*zip(*points, strict=True), marker="o", label=label)
        series[f"misaligned_pct_{_slug(label)}"] = dict(points)
    if not series:
        plt.close(fig)
        raise ReportError("Fig. 6: no run has 'misaligned_share' in its assignment statistics")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("misaligned labels (%)")
    ax.set_title("Fig. 6: matching diversity during training")
    ax.legend()
    fig.tight_layout()
    return [
        save_figure(fig, Path(out_dir) / "figures" / "fig6_misalignment.png"),
        write_csv(Path(out_dir) / "plots" / "fig6_misalignment.csv", _wide("epoch", series)),
    ]


def figure4(
    points: Sequence[dict[str, Any]], backbones: Sequence[str], title_note: str, out_dir: Path = REPORTS_DIR
) -> list[Path]:
    """Fig. 4: HOTA per backbone, one line per method. `points`: {method, backbone, HOTA, ...}."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    series: dict[str, dict[str, float]] = {}
    for method in dict.fromkeys(p["method"] for p in points):
        by_backbone = {p["backbone"]: p["HOTA"] for p in points if p["method"] == method}
        series[f"HOTA_{method}"] = by_backbone
        xs = [i for i, b in enumerate(backbones) if b in by_backbone]
        ax.plot(
            xs, [by_backbone[backbones[i]] for i in xs], marker="o", label=METHOD_LABELS.get(method, method)
        )
    ax.set_xticks(range(len(backbones)), list(backbones), rotation=15)
    ax.set_ylabel("HOTA (%)")
    ax.set_title(f"Fig. 4: model scaling up ({title_note})")
    ax.legend()
    fig.tight_layout()
    return [
        save_figure(fig, Path(out_dir) / "figures" / "fig4_scaling.png"),
        write_csv(Path(out_dir) / "plots" / "fig4_scaling.csv", _wide("backbone", series, order=backbones)),
    ]


def assignment_figures(root: Path = Path("."), out_dir: Path = REPORTS_DIR) -> list[Path]:
    """Fig. 2 and Fig. 6 from the trained baseline (without RFS) and MOTRv3 (with RFS)."""
    runs = {
        "without RFS (MOTR)": read_assignment_stats(root / MODELS_DIR / "motr" / "assignment_stats.json"),
        "with RFS (MOTRv3)": read_assignment_stats(root / MODELS_DIR / "motrv3" / "assignment_stats.json"),
    }
    return figure2(runs, out_dir) + figure6(runs, out_dir)


# ---------------------------------------------------------------------------------------------
# The `tables` stage


def evaluate_detections(params, root: Path, out_path: Path, source: str = "detector") -> Path:
    """Score the pseudo-label detector's boxes with the project's TrackEval adapter (a detection reference).

    Boxes of `data/pseudo_labels/<train split>/` with confidence ≥ `tracking.new_track_score` (the
    tracker's own operating point) become result rows, each box its own identity, and are scored
    against that split's ground truth exactly like a tracker's results. Only the detection metrics
    (DetA, MODA) mean anything for such rows.
    """
    import tempfile

    import numpy as np

    from pipeline import evaluation, mot_io
    from pipeline.data import export_motchallenge_gt
    from pipeline.data.parquet_io import read_pseudo_labels
    from pipeline.paths import CLIPS_DIR, PSEUDO_LABELS_DIR

    split = params.dataset.train_split  # pseudo labels exist for the training split only
    labels = read_pseudo_labels(root / PSEUDO_LABELS_DIR / split, params.tracking.new_track_score, [source])
    benchmark = params.evaluate.benchmark or evaluation.DATASET_BENCHMARK[params.dataset.name]
    with tempfile.TemporaryDirectory(prefix="motrv3-detref-") as tmp_name:
        gt, results = Path(tmp_name) / "gt", Path(tmp_name) / "results"
        sequences = export_motchallenge_gt(root / CLIPS_DIR / split, gt)
        next_id = 1
        for sequence in sequences:
            rows = []
            for (seq, frame), (boxes, scores) in sorted(labels.items()):
                if seq != sequence:
                    continue
                for (x1, y1, x2, y2), score in zip(np.asarray(boxes), np.asarray(scores), strict=True):
                    rows.append((frame, next_id, x1, y1, x2 - x1, y2 - y1, score))
                    next_id += 1
            mot_io.write_results(
                results / f"{sequence}.txt", np.asarray(rows, dtype=np.float64).reshape(-1, 7)
            )
        scored = evaluation.evaluate_folder(gt, results, benchmark)
    evaluation.write_metrics_json(scored, out_path)
    return out_path


def ensure_detector_metrics(params, root: Path = Path(".")) -> Path | None:
    """`metrics/detector.json`: written by `evaluate` on the detector's boxes, or computed here.

    None when neither that file nor detector pseudo labels exist (the row is then left out).
    """
    path = metrics_path("detector", root)
    if path.exists():
        return path
    from pipeline.paths import PSEUDO_LABELS_DIR

    if not (root / PSEUDO_LABELS_DIR / params.dataset.train_split).exists():
        return None
    return evaluate_detections(params, root, path)


def build_tables(
    params, root: Path = Path("."), out_dir: Path | None = None, mlflow: bool = True
) -> list[Path]:
    """Everything the `tables` stage writes; also logged to an MLflow run named "tables"."""
    root = Path(root)
    out_dir = Path(out_dir) if out_dir else root / REPORTS_DIR
    comparisons = [table1(params, root, ensure_detector_metrics(params, root)), table6(params, root)]
    written: list[Path] = []
    for comparison in comparisons:
        written += write_comparison(comparison, out_dir)
    figures = assignment_figures(root, out_dir)
    written += figures
    if mlflow:
        import mlflow as mlflow_module

        from pipeline.mlflow_utils import setup_experiment

        setup_experiment(params.mlflow.experiment, params.mlflow.tracking_uri)
        with mlflow_module.start_run(run_name="tables"):
            mlflow_module.set_tags(
                {"stage": "tables", "dataset": params.dataset.name, "profile": params.profile}
            )
            for comparison in comparisons:
                log_comparison(comparison)
            for path in figures:
                mlflow_module.log_artifact(
                    str(path), artifact_path="figures" if path.suffix == ".png" else "plots"
                )
    return written
