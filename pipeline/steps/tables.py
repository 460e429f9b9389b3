"""The tables step: Table 1, Table 6, Fig. 2 and Fig. 6 under reports/ (+ an MLflow run `tables`,
whose metrics are the measured rows: `table1/MOTRv3/HOTA`, ...).

Table 1 sets our MOTR and MOTRv3 beside the paper's rows; the pseudo-label detector is scored as a
detection reference (`metrics/detector.json`, written here from `data/pseudo_labels/`).
"""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import numpy as np

from pipeline.data.pseudo_label_store import read_labelled
from pipeline.evaluation.benchmarks import benchmark_of
from pipeline.evaluation.split import score_detections, split_classes
from pipeline.evaluation.trackeval_runner import write_metrics_json
from pipeline.mlflow_utils import metric_name, setup_experiment
from pipeline.paths import CLIPS_DIR, PSEUDO_LABELS_DIR, REPORTS_DIR
from pipeline.reporting.figures import assignment_figures
from pipeline.reporting.paper_results import reported
from pipeline.reporting.tables import (
    BASELINE_TRACKERS,
    METHOD_LABELS,
    METHODS,
    Comparison,
    MeasuredRow,
    log_comparison,
    measured_context,
    metrics_path,
    read_fps,
    read_json,
    read_metrics,
    write_comparison,
)


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
    measured, measured_notes = [], []
    for method in METHODS:
        values = read_metrics(metrics_path(method, root))
        measured.append(
            MeasuredRow(METHOD_LABELS[method], {"end_to_end": True, "family": "Transformer"}, values)
        )
    baseline_rows = [
        MeasuredRow(
            f"{METHOD_LABELS[name]} (our detector)",
            {"end_to_end": False, "family": "tracking by detection"},
            read_metrics(metrics_path(name, root)),
        )
        for name in BASELINE_TRACKERS
        if metrics_path(name, root).exists()
    ]
    measured += baseline_rows
    sections = (("RFS", params.rfs), ("PLD", params.pld), ("TGD", params.tgd))
    strategies = ", ".join(f"{name} {'on' if section.enabled else 'off'}" for name, section in sections)
    readings = {"RFS": f"rfs.reading {params.rfs.reading}", "PLD": f"pld.reading {params.pld.reading}",
                "TGD": f"tgd.reduce {params.tgd.reduce}, tgd.mask {params.tgd.mask}"}  # fmt: skip
    chosen = "; ".join(readings[name] for name, section in sections if section.enabled)
    tracking = params.tracking
    duplicate_rule = (
        ""
        if tracking.track_overlap is None
        else " and drop the younger of two tracks whose boxes overlap by IoU ≥ "
        f"{tracking.track_overlap:g} (tracking.track_overlap)"
    )
    measured_notes.append(
        f"MOTRv3 here: {strategies} (params rfs/pld/tgd.enabled{'; ' + chosen if chosen else ''}: docs/strategies.md); MOTR is the "
        f"baseline with all three off. Both trackers start a track at score ≥ "
        f"{tracking.new_track_score:g} (tracking.new_track_score){duplicate_rule}."
    )
    notes = [
        "Rows above were trained and evaluated by this repository's pipeline (random-init or "
        "configured backbone, the active profile's model size); rows below are the paper's numbers on "
        "DanceTrack test and are not comparable in absolute value.",
    ]
    detector_metrics = detector_metrics or metrics_path("detector", root)
    detector = read_json(detector_metrics) if detector_metrics.exists() else {}
    if baseline_rows:
        notes.append(
            "The ByteTrack / OC-SORT / SORT rows are roboflow's `trackers` package (stage `baselines`, "
            "its default settings unless `baselines.tracker_args` says otherwise) run on this repository's "
            f"detector's boxes with score ≥ {detector.get('det_threshold', 'baselines.det_threshold')} "
            "of the same split, scored by the same TrackEval path."
        )
    if "AP50" in detector:
        measured_notes.append(
            f"Detector ({detector.get('split', '?')} split, IoU 0.5): AP50 {detector['AP50']:.1f}; "
            f"precision / recall at score ≥ 0.5: {detector['precision']:.1f} / {detector['recall']:.1f}; "
            f"recall at score ≥ {detector['det_threshold']:g} (the trackers' input): "
            f"{detector['recall_at_det_threshold']:.1f}."
        )
    if detector_metrics.exists():
        measured.append(detector_reference_row(detector_metrics))
        notes.append(
            "The pseudo-label detector row scores the detector's boxes as a tracker whose every box is its "
            "own identity (confidence ≥ tracking.new_track_score): only DetA means anything there, and its "
            "MOTA column is MODA (MOTA without identity switches); association metrics are omitted. From the baselines stage it is on "
            f"the {detector.get('split', params.dataset.eval_split)} split; when this stage computes it (no "
            f"`metrics/detector.json`), on the {params.dataset.train_split} split, the one with pseudo labels."
        )
    return Comparison(
        name="table1",
        title="Table 1: tracking results (HOTA, AssA, DetA, MOTA, IDF1; IDS measured here only)",
        measured_context=measured_context(params),
        columns=("end_to_end",),
        metrics=("HOTA", "AssA", "DetA", "MOTA", "IDF1", "IDS"),
        measured=measured,
        paper=reported(1),
        notes=notes,
        measured_notes=measured_notes,
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


def evaluate_detections(params, root: Path, out_path: Path, source: str = "detector") -> Path:
    """Score the pseudo-label detector's boxes with the project's TrackEval adapter (a detection reference).

    Boxes of `data/pseudo_labels/<train split>/` with confidence ≥ `tracking.new_track_score` (the
    tracker's own operating point) become result rows, each box its own identity, and are scored
    against that split's ground truth exactly like a tracker's results. Only the detection metrics
    (DetA, MODA) mean anything for such rows.
    """
    split = params.dataset.train_split  # pseudo labels exist for the training split only
    dataset_dir = root / CLIPS_DIR / split
    labels = read_labelled(
        root / PSEUDO_LABELS_DIR / split,
        params.tracking.new_track_score,
        [source],
        len(split_classes(dataset_dir)),
    )
    scored = score_detections(labels, dataset_dir, benchmark_of(params))
    write_metrics_json(scored, out_path)
    return out_path


def ensure_detector_metrics(params, root: Path = Path(".")) -> Path | None:
    """`metrics/detector.json` (a DVC output of the tables stage): computed here from the pseudo labels.

    None when neither that file nor detector pseudo labels exist (the row is then left out).
    """
    path = metrics_path("detector", root)
    if path.exists():
        return path  # outside DVC: an existing file is reused (DVC removes outputs before a run)
    if not (root / PSEUDO_LABELS_DIR / params.dataset.train_split).exists():
        return None
    return evaluate_detections(params, root, path)


def row_metrics(comparison: Comparison) -> dict[str, float]:
    """The measured rows as MLflow metrics: `<table>/<row label>/<metric>` (e.g. `table1/MOTRv3/HOTA`)."""
    return {
        metric_name(comparison.name, row.label, key): float(value)
        for row in comparison.measured
        for key, value in row.metrics.items()
        if isinstance(value, int | float) and np.isfinite(value)
    }


def run(params, root: Path = Path("."), out_dir: Path | None = None, log_mlflow: bool = True) -> list[Path]:
    """Everything the `tables` stage writes; also logged to an MLflow run named "tables"."""
    root = Path(root)
    out_dir = Path(out_dir) if out_dir else root / REPORTS_DIR
    comparisons = [table1(params, root, ensure_detector_metrics(params, root)), table6(params, root)]
    written: list[Path] = []
    for comparison in comparisons:
        written += write_comparison(comparison, out_dir)
    figures = assignment_figures(root, out_dir)
    written += figures
    if log_mlflow:
        setup_experiment(params.mlflow.experiment, params.mlflow.tracking_uri)
        with mlflow.start_run(run_name="tables"):
            mlflow.set_tags({"stage": "tables", "dataset": params.dataset.name, "profile": params.profile})
            for comparison in comparisons:
                log_comparison(comparison)
                mlflow.log_metrics(row_metrics(comparison))
            for path in figures:
                mlflow.log_artifact(str(path), artifact_path="figures" if path.suffix == ".png" else "plots")
    return written
