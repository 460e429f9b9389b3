"""The pseudo_labels step: every source over a converted split → the pseudo-label store (+ metrics, plot).

Every source yields, for every frame of a converted split, boxes (x1, y1, x2, y2 pixels of the
original image) and confidences; boxes below `pld.threshold` (0.05, §4.2) are dropped. Sources
(`pseudo_labels.sources` ∪ `pld.sources`, each a `kind` or `kind:name`):

- `detector`: our Deformable-DETR trained detection-only by `stages.train_detector`;
- `detfile:<name>`: detections produced elsewhere (YOLOX, Sparse R-CNN, MOT17's DPM/FRCNN/SDP):
  a MOTRv2-style JSON db, MOTChallenge `det/det.txt` files, or the public detections already in
  the converted dataset; validated against the dataset (unknown sequence/frame: `DataError`);
- `torchvision:<name>`: a torchvision detection architecture with weights from a local file;
- `gt`: the ground truth itself, confidence 1 (Table 4, last row).

Every box carries its class (`labels`, a position in the split's `dataset.classes`): the class our
detector scored, the gt row's class, label 0 for the single-class detection files and torchvision.

Each source keeps its own rows (column `source`), so the trainer can combine them in parallel
(one label set per source, Table 4 row 3) or concatenated (`pld.combine`). Model sources run
over frames with Ray Data `map_batches` (one model per worker), or in-process with one worker.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.parquet_io import sha256_file
from pipeline.data.pseudo_label_store import LABELS_FILE, MANIFEST, PSEUDO_LABEL_SCHEMA, write_pseudo_labels
from pipeline.data.reader import DatasetReader, FrameIndex
from pipeline.datasets import class_map
from pipeline.evaluation.detection_metrics import detection_metrics, ground_truth_boxes
from pipeline.formats.detections import Detections, LabelledDetections, with_labels
from pipeline.formats.errors import naming_file
from pipeline.inference.detectors import default_workers, run_model
from pipeline.params import teacher_params
from pipeline.paths import CLIPS_DIR, METRICS_DIR, PSEUDO_LABELS_DIR, atomic_path, write_text_atomic
from pipeline.steps.pseudo_labels.sources import (
    MODEL_KINDS,
    Source,
    detfile_source,
    generated_sources,
    gt_source,
    parse_sources,
)

QUALITY_THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5)  # the teacher report's score cuts
SUMMARY_PATH = METRICS_DIR / "pseudo_labels.json"
PLOT_PATH = METRICS_DIR / "pseudo_labels_scores.png"  # not reports/: that is the tables stage's output


def apply_threshold(
    dets: Detections | LabelledDetections, threshold: float
) -> Detections | LabelledDetections:
    """PLD's confidence filter (§3.3): keep boxes with score ≥ threshold (0.05 kept, 0.04 dropped);
    labels, when given, follow their boxes."""
    cut = np.float32(threshold)
    return {key: tuple(v[value[1] >= cut] for v in value) for key, value in dets.items()}


def to_rows(
    source: str, dets: Detections | LabelledDetections, index: FrameIndex
) -> Iterator[dict[str, Any]]:
    """One row per frame of the split (frames without boxes included), schema `PSEUDO_LABEL_SCHEMA`;
    boxes without labels are label 0."""
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
    dets = with_labels(dets)
    for sequence, frames in index.frames.items():
        for frame in frames:
            boxes, scores, labels = dets.get((sequence, int(frame)), empty)
            yield {
                "sequence": sequence,
                "frame": int(frame),
                "boxes": boxes.astype(np.float32).tolist(),
                "scores": scores.astype(np.float32).tolist(),
                "labels": labels.astype(np.int32).tolist(),
                "source": source,
            }


def collect_source(
    source: Source,
    dataset_dir: Path,
    index: FrameIndex,
    reader: DatasetReader,
    *,
    threshold: float,
    size: int,
    max_size: int,
    workers: int,
    batch_size: int,
    ray_address: str | None,
    progress: bool,
) -> tuple[LabelledDetections, dict[str, Any]]:
    notes: dict[str, Any] = {"kind": source.kind}
    if source.kind == "gt":
        dets = gt_source(reader, with_labels=True)
    elif source.kind == "detfile":
        dets, more = detfile_source(source.spec, reader, index)
        dets = with_labels(dets)  # detection files are of one class: label 0
        notes.update(more)
    else:
        spec = dict(source.spec)
        if source.kind in MODEL_KINDS:
            # The split's classes: the detector's class indices must be their labels.
            spec.update(size=size, max_size=max_size, classes=class_map(reader.manifest.get("classes")))
        notes["checkpoint_sha256"] = (
            sha256_file(Path(spec["checkpoint"])) if Path(spec["checkpoint"]).is_file() else None
        )
        dets = run_model(
            Source(source.name, source.kind, spec),
            dataset_dir,
            index,
            threshold,
            workers,
            batch_size,
            ray_address,
            progress,
        )
    covered = {sequence for sequence, _ in dets}
    notes["sequences_without_detections"] = sorted(set(index.frames) - covered)
    return apply_threshold(dets, threshold), notes


def teacher_quality(
    dets: Detections | LabelledDetections, truth: Detections, ignored: Detections, threshold: float
) -> dict:
    """How good a source is as PLD's teacher on a labelled split: AP50 and precision / recall (IoU
    ≥ 0.5, percent, classes aside) at the stage's threshold and the report's thresholds above it.
    Eq. 3 trains every query it leaves unmatched towards background, so a target the teacher misses
    is taught as missed."""
    cuts = sorted({threshold, *(t for t in QUALITY_THRESHOLDS if t >= threshold)})
    boxes_and_scores = {key: value[:2] for key, value in dets.items()}
    return detection_metrics(boxes_and_scores, truth, ignored, 0.5, {f"@{cut:g}": cut for cut in cuts})


def summarize(rows: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """Per-source counts, boxes per frame and a score histogram (the stage's DVC metrics)."""
    edges = np.linspace(0.0, 1.0, 21)
    summary: dict[str, Any] = {"threshold": threshold, "frames": 0, "boxes": 0, "sources": {}}
    by_source: dict[str, list[dict]] = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    for name, items in sorted(by_source.items()):
        counts = np.asarray([len(r["scores"]) for r in items])
        scores = (
            np.concatenate([np.asarray(r["scores"], np.float32) for r in items]) if items else np.zeros(0)
        )
        histogram, _ = np.histogram(np.clip(scores, 0.0, 1.0), bins=edges)
        summary["sources"][name] = {
            "frames": len(items),
            "boxes": int(counts.sum()),
            "boxes_per_frame": round(float(counts.mean()), 4) if len(counts) else 0.0,
            "max_boxes_per_frame": int(counts.max()) if len(counts) else 0,
            "frames_without_boxes": int((counts == 0).sum()),
            "mean_score": round(float(scores.mean()), 4) if len(scores) else 0.0,
            "score_histogram": {"edges": [round(e, 2) for e in edges.tolist()], "counts": histogram.tolist()},
        }
        summary["frames"] = max(summary["frames"], len(items))
        summary["boxes"] += int(counts.sum())
    return summary


def class_boxes(rows: list[dict[str, Any]], source: str, classes: dict[int, str]) -> dict[str, int]:
    """Boxes of `source` per gt class id (the manifest's check that every class got pseudo labels)."""
    labels = [label for row in rows if row["source"] == source for label in row["labels"]]
    counts = np.bincount(np.asarray(labels, np.int64), minlength=len(classes))
    return {str(cls): int(counts[label]) for label, cls in enumerate(classes)}


def plot_summary(rows: list[dict[str, Any]], path: Path, threshold: float) -> None:
    """Score histogram and boxes-per-frame histogram per source, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_source: dict[str, list[dict]] = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    fig, (ax_score, ax_count) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, items in sorted(by_source.items()):
        scores = np.concatenate([np.asarray(r["scores"], np.float32) for r in items])
        counts = [len(r["scores"]) for r in items]
        ax_score.hist(scores, bins=np.linspace(0, 1, 41), histtype="step", label=name)
        ax_count.hist(
            counts, bins=np.arange(0, max(counts, default=0) + 2) - 0.5, histtype="step", label=name
        )
    ax_score.axvline(threshold, color="grey", linestyle="--", linewidth=1)
    ax_score.set(xlabel="confidence", ylabel="boxes", title=f"pseudo-label scores (kept ≥ {threshold:g})")
    ax_count.set(xlabel="boxes per frame", ylabel="frames", title="boxes per frame")
    ax_score.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp, naming_file(path):
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)


def run(
    params,
    *,
    split: str | None = None,
    clips_dir: str | Path = CLIPS_DIR,
    out_root: str | Path = PSEUDO_LABELS_DIR,
    summary_path: str | Path | None = SUMMARY_PATH,
    plot_path: str | Path | None = PLOT_PATH,
    progress: bool = True,
) -> dict[str, Any]:
    """Produce `<out_root>/<split>/{pseudo_labels.parquet, manifest.json}` for `pld.sources`; returns the manifest.

    Deterministic: rows sorted by (source, sequence, frame), no timestamps, so unchanged inputs give
    identical files (a DVC no-op). The folder is replaced atomically.
    """
    split = split or params.dataset.train_split
    dataset_dir = Path(clips_dir) / split
    sources = parse_sources(generated_sources(params), params.pseudo_labels)
    index = FrameIndex.load(dataset_dir)
    reader = DatasetReader(dataset_dir)
    workers = params.pseudo_labels.workers or default_workers()
    threshold = params.pld.threshold
    rows: list[dict[str, Any]] = []
    notes = {}
    truth, ignored = ground_truth_boxes(reader)
    labelled = any(len(boxes) for boxes, _ in truth.values())
    quality = {}
    for source in sources:
        seen_as = teacher_params(params) if source.kind == "teacher" else params  # its own eval size
        dets, notes[source.name] = collect_source(
            source,
            dataset_dir,
            index,
            reader,
            threshold=threshold,
            size=seen_as.data.eval_size,
            max_size=seen_as.data.eval_max_size,
            workers=workers,
            batch_size=params.pseudo_labels.batch_size,
            ray_address=params.ray.address,
            progress=progress,
        )
        rows.extend(to_rows(source.name, dets, index))
        if labelled:
            quality[source.name] = teacher_quality(dets, truth, ignored, threshold)
    summary = summarize(rows, threshold)
    for name, against_gt in quality.items():
        summary["sources"][name]["against_gt"] = against_gt
    classes = class_map(reader.manifest.get("classes"))  # what the labels index
    out_dir = Path(out_root) / split
    with atomic_path(out_dir) as tmp:
        # A failed write (a full disk) names the final file; atomic_path removes the partial folder.
        with naming_file(out_dir):
            tmp.mkdir(parents=True)
        with naming_file(out_dir / LABELS_FILE):
            write_pseudo_labels(rows, tmp / LABELS_FILE)
        manifest = {
            "schema": PSEUDO_LABEL_SCHEMA.names,
            "split": split,
            "dataset_dir": str(dataset_dir),
            "dataset_manifest_sha256": sha256_file(dataset_dir / "manifest.json"),
            "threshold": threshold,
            "classes": {str(cls): name for cls, name in classes.items()},
            "sources": {
                s.name: {
                    **notes[s.name],
                    "boxes": summary["sources"][s.name]["boxes"],
                    "frames": summary["sources"][s.name]["frames"],
                    **({"class_boxes": class_boxes(rows, s.name, classes)} if len(classes) > 1 else {}),
                }
                for s in sources
            },
            "files": {
                LABELS_FILE: {
                    "rows": len(rows),
                    "bytes": (tmp / LABELS_FILE).stat().st_size,
                    "sha256": sha256_file(tmp / LABELS_FILE),
                }
            },
        }
        with naming_file(out_dir / MANIFEST):
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    if summary_path is not None:
        with naming_file(summary_path):
            write_text_atomic(
                summary_path, json.dumps({"split": split, **summary}, indent=2, sort_keys=True) + "\n"
            )
    if plot_path is not None:
        plot_summary(rows, Path(plot_path), threshold)
    return manifest
