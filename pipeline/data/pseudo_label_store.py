"""The pseudo-label store of PLD (§3.3): `<root>/<split>/{pseudo_labels.parquet, manifest.json}`.

One row per (source, sequence, frame) in `PSEUDO_LABEL_SCHEMA`; written by the pseudo_labels step
(`pipeline.steps.pseudo_labels`), read by the clip loader and the tables step. Boxes are
x1, y1, x2, y2 pixels of the original image; each box's class is a training label (its position in
`dataset.classes`, as the loader's targets). A store written before the `labels` column reads as
one class (label 0); with several classes it is refused, naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.datasets import class_map
from pipeline.formats.detections import LabelledDetections
from pipeline.formats.errors import DataError, naming_file
from pipeline.paths import atomic_path

LABELS_FILE = "pseudo_labels.parquet"
MANIFEST = "manifest.json"

# The pseudo-label table (one row per frame and source); the single definition every writer uses.
PSEUDO_LABEL_SCHEMA = pa.schema(
    [
        ("sequence", pa.string()),
        ("frame", pa.int32()),
        ("boxes", pa.list_(pa.list_(pa.float32()))),  # x1, y1, x2, y2 pixels of the original image
        ("scores", pa.list_(pa.float32())),
        ("labels", pa.list_(pa.int32())),  # class per box: training label 0..C-1, dataset.classes order
        ("source", pa.string()),  # detector | detfile | torchvision | gt
    ]
)
LABELS = "labels"  # the column stores before several classes lack


def write_pseudo_labels(rows: Iterable[dict[str, Any]], path: str | Path) -> None:
    """Write pseudo-label rows (keys of `PSEUDO_LABEL_SCHEMA`) atomically, sorted by (source, sequence, frame).

    A row without `labels` is of one class: label 0 for each box."""
    rows = sorted(
        ({LABELS: [0] * len(r["scores"]), **r} for r in rows),
        key=lambda r: (r["source"], r["sequence"], r["frame"]),
    )
    table = pa.Table.from_pylist(rows, schema=PSEUDO_LABEL_SCHEMA)
    with atomic_path(path) as tmp, naming_file(path):
        pq.write_table(table, tmp, compression="zstd")


def read_pseudo_labels(
    path: str | Path, threshold: float = 0.0, sources: Iterable[str] | None = None
) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]:
    """(sequence, frame) → (boxes [P, 4] xyxy pixels, scores [P]) with score ≥ threshold.

    `path` is a Parquet file or a folder of them; rows of several sources for one frame are joined.
    """
    return {
        key: (boxes, scores) for key, (boxes, scores, _) in read_labelled(path, threshold, sources).items()
    }


def read_labelled(
    path: str | Path, threshold: float = 0.0, sources: Iterable[str] | None = None, num_classes: int = 1
) -> LabelledDetections:
    """`read_pseudo_labels` with each box's label [P] (int64, 0..`num_classes`-1; outside: a `DataError`).

    A file without the `labels` column (written before it) is label 0 throughout, or a `DataError`
    naming it when `num_classes` > 1: its boxes have no class to train.
    """
    path = Path(path)
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise DataError(path, None, "pseudo_labels", "no Parquet file found", kind="missing_split")
    wanted = set(sources) if sources is not None else None
    result: LabelledDetections = {}
    for file in files:
        table = pq.read_table(file)
        schema = PSEUDO_LABEL_SCHEMA
        if LABELS not in table.column_names:
            if num_classes > 1:
                raise DataError(
                    file,
                    None,
                    LABELS,
                    f"column missing: pseudo labels written before they carried a class, and "
                    f"dataset.classes has {num_classes}; re-run the pseudo_labels stage",
                    kind="bad_schema",
                )
            schema = schema.remove(schema.get_field_index(LABELS))
        missing = [name for name in schema.names if name not in table.column_names]
        if missing:
            raise DataError(
                file,
                None,
                missing[0],
                f"column missing (expected schema {PSEUDO_LABEL_SCHEMA.names})",
                kind="bad_schema",
            )
        table = table.select(schema.names).cast(schema)
        boxes = table.column("boxes").to_pylist()
        scores = table.column("scores").to_pylist()
        labels = table.column(LABELS).to_pylist() if LABELS in schema.names else None
        for i, (sequence, frame, source) in enumerate(
            zip(
                table.column("sequence").to_pylist(),
                table.column("frame").to_pylist(),
                table.column("source").to_pylist(),
                strict=True,
            )
        ):
            if wanted is not None and source not in wanted:
                continue
            frame_boxes = np.asarray(boxes[i], dtype=np.float32).reshape(-1, 4)
            frame_scores = np.asarray(scores[i], dtype=np.float32)
            frame_labels = (
                np.asarray(labels[i], dtype=np.int64)
                if labels is not None
                else np.zeros(len(frame_scores), np.int64)
            )
            if len(frame_boxes) != len(frame_scores) or len(frame_labels) != len(frame_scores):
                raise DataError(
                    file,
                    None,
                    f"row {i}.scores" if len(frame_boxes) != len(frame_scores) else f"row {i}.labels",
                    f"{len(frame_boxes)} boxes, {len(frame_scores)} scores, {len(frame_labels)} labels",
                    kind="bad_schema",
                )
            if ((frame_labels < 0) | (frame_labels >= num_classes)).any():
                raise DataError(
                    file,
                    None,
                    f"row {i}.labels",
                    f"labels {sorted(set(frame_labels.tolist()))} outside 0..{num_classes - 1} "
                    f"(dataset.classes has {num_classes})",
                    kind="bad_schema",
                )
            keep = frame_scores >= threshold
            key = (sequence, int(frame))
            kept = (frame_boxes[keep], frame_scores[keep], frame_labels[keep])
            if key in result:
                result[key] = tuple(
                    np.concatenate([old, new]) for old, new in zip(result[key], kept, strict=True)
                )
            else:
                result[key] = kept
    return result


def load_label_sets(
    path: str | Path, sources: list[str], threshold: float, combine: str
) -> dict[tuple[str, int], list]:
    """(sequence, frame) → label sets for the trainer: `parallel` one (boxes, scores) per source in
    `sources` order (each matched on its own, Table 4 row 3), `concat` one set joining them all."""
    per_source = [read_pseudo_labels(path, threshold, [name]) for name in sources]
    keys = sorted(set().union(*per_source))
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    result = {}
    for key in keys:
        sets = [labels.get(key, empty) for labels in per_source]
        if combine == "concat":
            sets = [(np.concatenate([b for b, _ in sets]), np.concatenate([s for _, s in sets]))]
        result[key] = sets
    return result


def check_sources(
    labels_dir: str | Path,
    names: list[str],
    classes: dict[int, str] | None = None,
    threshold: float | None = None,
) -> dict[str, Any]:
    """The manifest of `labels_dir` (one split's output) after checking it holds every source in `names`
    and, when it records them, was written for `classes` (its labels index them) and at a score
    threshold no higher than `threshold` (the stage drops the boxes below its own).

    Training calls this so that a `pld.sources` the stage did not generate, or a `pld.threshold` below
    the one it wrote with (e.g. a sweep's `--set pld.threshold=0.05` over a store written at 0.4), is
    an error, not silently fewer pseudo labels than asked for.
    """
    path = Path(labels_dir) / MANIFEST
    if not path.is_file():
        raise DataError(
            path, None, "manifest", "missing: run `python -m stages.pseudo_labels`", kind="bad_manifest"
        )
    manifest = json.loads(path.read_text())
    missing = [name for name in names if name not in manifest.get("sources", {})]
    if missing:
        raise DataError(
            path,
            None,
            "sources",
            f"pld.sources {missing} not generated (have {sorted(manifest.get('sources', {}))}); add them to "
            "pseudo_labels.sources and re-run the pseudo_labels stage",
            kind="missing_source",
        )
    written_at = manifest.get("threshold")
    if threshold is not None and written_at is not None and threshold < written_at - 1e-9:
        raise DataError(
            path,
            None,
            "threshold",
            f"pseudo labels written at score ≥ {written_at}, but pld.threshold is {threshold}: the boxes "
            f"in between were dropped; re-run the pseudo_labels stage with pld.threshold={threshold}",
            kind="bad_manifest",
        )
    written = class_map(manifest["classes"]) if "classes" in manifest else None
    if classes is not None and written is not None and written != dict(classes):
        raise DataError(
            path,
            None,
            "classes",
            f"pseudo labels written for dataset.classes {written}, training has {dict(classes)}; "
            "re-run the pseudo_labels stage",
            kind="bad_manifest",
        )
    return manifest


# (sequence, frame) → (boxes [P, 4] xyxy pixels, scores [P], source index [P], labels [P])
PseudoLabels = dict[tuple[str, int], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def read_pseudo_sources(
    path: str | Path, threshold: float, sources: list[str] | None, classes: dict[int, str] | None = None
) -> PseudoLabels:
    """(sequence, frame) → (boxes [P, 4] xyxy pixels, scores [P], source index [P] into `sources`,
    labels [P] indexing `classes`; None: one class).

    Only `sources` are read; one of them missing from the pseudo labels is an error naming it (the
    split folder's manifest when there is one, else the Parquet `source` column). `sources=None`
    joins every source as index 0 (one label set).
    """
    num_classes = len(classes) if classes else 1
    if sources is None:
        return {
            key: (boxes, scores, np.zeros(len(scores), np.int64), labels)
            for key, (boxes, scores, labels) in read_labelled(path, threshold, None, num_classes).items()
        }
    path = Path(path)
    if path.is_dir() and (path / MANIFEST).is_file():
        check_sources(path, sources, classes, threshold)
    else:
        files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
        present = set()
        for file in files:
            present.update(pq.read_table(file, columns=["source"]).column("source").unique().to_pylist())
        missing = [name for name in sources if name not in present]
        if missing:
            raise DataError(
                path,
                None,
                "source",
                f"pld.sources {missing} not in the pseudo labels (have {sorted(present)})",
                kind="missing_source",
            )
    per_source = [read_labelled(path, threshold, [name], num_classes) for name in sources]
    result = {}
    for key in sorted(set().union(*per_source)):
        sets = [(index, labels[key]) for index, labels in enumerate(per_source) if key in labels]
        result[key] = (
            np.concatenate([boxes for _, (boxes, _, _) in sets]).reshape(-1, 4),
            np.concatenate([scores for _, (_, scores, _) in sets]),
            np.concatenate([np.full(len(scores), index, np.int64) for index, (_, scores, _) in sets]),
            np.concatenate([labels for _, (_, _, labels) in sets]),
        )
    return result
