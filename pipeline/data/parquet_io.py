"""The Parquet clip datasets: schema, writing, manifest (reading: `pipeline.data.reader`).

A dataset is one folder per split: `<sequence>.parquet` per sequence (one row per frame, row
groups of `data.row_group_frames` frames) and `manifest.json`, written last. The writer builds
the whole folder under a temporary name and renames it into place, so a killed conversion never
leaves a folder with a manifest; readers refuse a folder whose manifest is missing or does not
match its files. No timestamps and a fixed order: unchanged input gives byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.data.images import check_image, image_size
from pipeline.data.sequences import Sequence, read_sequence_info
from pipeline.datasets import DEFAULT_CLASSES
from pipeline.formats.errors import DataError, Issues, naming_file
from pipeline.formats.motchallenge import check_box
from pipeline.paths import atomic_path

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"

_BOX = pa.list_(pa.float64(), 4)  # x, y, w, h pixels as in MOTChallenge files (not clipped)
CLIP_SCHEMA = pa.schema(
    [
        ("sequence", pa.string()),
        ("frame", pa.int32()),  # the frame number of the source (1-based, gaps only in lenient mode)
        ("file_name", pa.string()),  # the image's path relative to its sequence folder / dataset root
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("image", pa.binary()),  # the original encoded bytes, never re-encoded
        ("ids", pa.list_(pa.int64())),  # identity, unique within the dataset (orig_ids + id_offset)
        ("orig_ids", pa.list_(pa.int64())),  # identity as written in the source
        ("boxes", pa.list_(_BOX)),
        ("classes", pa.list_(pa.int32())),  # the source's class column
        ("consider", pa.list_(pa.int8())),  # the source's consider flag (gt column 7)
        ("visibility", pa.list_(pa.float64())),
        ("ignore", pa.list_(pa.bool_())),  # not a target by the benchmark's rules (loader drops these)
        ("det_boxes", pa.list_(_BOX)),  # public detections (det/det.txt)
        ("det_scores", pa.list_(pa.float64())),
        ("det_sources", pa.list_(pa.string())),  # which public detector (MOT17: DPM/FRCNN/SDP)
    ]
)
_STAT_COLUMNS = ["sequence", "frame", "width", "height"]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _relative(path: str | Path, root: Path | None) -> str:
    if root is None:
        return str(path)
    try:
        return os.path.relpath(path, root)
    except ValueError:
        return str(path)


def _frame_rows(
    sequence: Sequence, id_offset: int, issues: Issues, seq_root: Path
) -> Iterator[dict[str, Any]]:
    """One dict per usable frame; reads and checks each frame's bytes (bad frames go to `issues`)."""
    info = None if sequence.static else read_sequence_info(Path(sequence.source))
    for record in sequence.frames:
        try:
            data = record.image_path.read_bytes()
        except OSError as error:
            issues.report(
                DataError(
                    record.image_path, None, "image", f"unreadable: {error.strerror}", kind="missing_frame"
                )
            )
            continue
        try:
            if info is not None:
                check_image(data, record.image_path, info)
                width, height = info.width, info.height
            else:  # static images (CrowdHuman): the same full check, the size read from the image
                width, height = image_size(data, record.image_path)
        except DataError as error:
            issues.report(error)
            continue
        objects = record.objects
        if info is None:  # static images: boxes are only now checkable against the image size
            kept = []
            for k, row in enumerate(objects):
                try:
                    field = record.fields[k] if k < len(record.fields) else "fbox"
                    check_box(row.box, width, height, Path(sequence.source), record.line, field)
                    kept.append(row)
                except DataError as error:
                    issues.report(error)
            objects = kept
        yield {
            "sequence": sequence.name,
            "frame": record.frame,
            "file_name": _relative(record.image_path, seq_root),
            "width": width,
            "height": height,
            "image": data,
            "ids": [row.track_id + id_offset for row in objects],
            "orig_ids": [row.track_id for row in objects],
            "boxes": [list(row.box) for row in objects],
            "classes": [row.cls for row in objects],
            "consider": [row.consider for row in objects],
            "visibility": [row.visibility for row in objects],
            "ignore": [row.ignore for row in objects],
            "det_boxes": [list(det.box) for det in record.detections],
            "det_scores": [det.score for det in record.detections],
            "det_sources": [det.source for det in record.detections],
        }


def _write_sequence(
    path: Path, rows: Iterable[dict[str, Any]], row_group_frames: int, shown: Path | None = None
) -> dict[str, int]:
    """Stream rows into one Parquet file, one row group per `row_group_frames` frames.

    A failed write (a full disk) is an OSError naming `shown` (the final path; default `path`).
    """
    shown = shown or path
    counts = {
        "frames": 0,
        "objects": 0,
        "counted_objects": 0,
        "detections": 0,
        "first_frame": None,
        "last_frame": None,
    }
    with naming_file(shown):
        writer = pq.ParquetWriter(
            path,
            CLIP_SCHEMA,
            compression={name: ("NONE" if name == "image" else "ZSTD") for name in CLIP_SCHEMA.names},
            use_dictionary=["sequence", "det_sources"],
            write_statistics=_STAT_COLUMNS,
        )
    try:
        chunk: list[dict[str, Any]] = []

        def flush():
            if chunk:
                table = pa.Table.from_pylist(chunk, schema=CLIP_SCHEMA)
                with naming_file(shown):
                    writer.write_table(table, row_group_size=row_group_frames)
                chunk.clear()

        for row in rows:
            counts["frames"] += 1
            counts["objects"] += len(row["ids"])
            counts["counted_objects"] += sum(not flag for flag in row["ignore"])
            counts["detections"] += len(row["det_scores"])
            counts["first_frame"] = row["frame"] if counts["first_frame"] is None else counts["first_frame"]
            counts["last_frame"] = row["frame"]
            chunk.append(row)
            if len(chunk) == row_group_frames:
                flush()
        flush()
    finally:
        with naming_file(shown):
            writer.close()
    return counts


# Long by design: the manifest is built beside the files it describes, in one atomic folder.
def write_dataset(
    sequences: Iterable[Sequence],
    out_dir: str | Path,
    *,
    dataset: str,
    benchmark: str,
    split: str,
    row_group_frames: int,
    issues: Issues,
    input_root: str | Path | None = None,
    progress=None,
    classes: dict[int, str] | None = None,
) -> dict[str, Any]:
    """Write a split's sequences to `out_dir` atomically; returns the manifest.

    Identities are offset per sequence (in the given order) so they are unique in the dataset.
    `input_root` makes the paths recorded in the manifest relative (location-independent output).
    `classes` (gt class id → name, label order; None: `DEFAULT_CLASSES`) goes into the manifest:
    the loader's training labels and the evaluation's classes come from it.
    """
    out_dir = Path(out_dir)
    root = Path(input_root).resolve() if input_root is not None else None
    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "dataset": dataset,
        "benchmark": benchmark,
        "split": split,
        "row_group_frames": row_group_frames,
        # JSON keys are text: `pipeline.datasets.class_map` reads them back.
        "classes": {str(key): name for key, name in (classes or DEFAULT_CLASSES).items()},
        "sequences": {},
    }
    class_objects: Counter[int] = Counter()
    with atomic_path(out_dir) as tmp:
        with naming_file(out_dir):
            tmp.mkdir(parents=True)
        id_offset = 0
        for sequence in sequences:
            if progress is not None:
                progress.set_postfix_str(sequence.name)
            file_name = f"{sequence.name}.parquet"
            seq_root = Path(sequence.source) if not sequence.static else Path(sequence.source).parent
            rows = _frame_rows(sequence, id_offset, issues, seq_root)
            counts = _write_sequence(tmp / file_name, rows, row_group_frames, shown=out_dir / file_name)
            if counts["frames"] == 0:
                (tmp / file_name).unlink()
                issues.report(
                    DataError(
                        sequence.source,
                        None,
                        "frame",
                        "no frame of the sequence is usable",
                        kind="empty_sequence",
                    )
                )
                continue
            max_id = max((row.track_id for record in sequence.frames for row in record.objects), default=0)
            class_objects.update(row.cls for record in sequence.frames for row in record.objects)
            manifest["sequences"][sequence.name] = {
                "file": file_name,
                "source": _relative(sequence.source, root),
                "width": sequence.width,
                "height": sequence.height,
                "frame_rate": sequence.frame_rate,
                "static": sequence.static,
                "has_gt": sequence.has_gt,
                "det_sources": sequence.det_sources,
                "frame_offset": sequence.frame_offset,  # source frame = frame + this (a val half)
                "id_offset": id_offset,
                **counts,
                "bytes": (tmp / file_name).stat().st_size,
                "sha256": sha256_file(tmp / file_name),
            }
            id_offset += max_id + 1
            if progress is not None:
                progress.update(1)
        if not manifest["sequences"]:
            raise DataError(out_dir, None, "sequences", "no usable sequence to write", kind="empty_split")
        entries = manifest["sequences"].values()
        manifest["totals"] = {
            "sequences": len(manifest["sequences"]),
            "frames": sum(e["frames"] for e in entries),
            "objects": sum(e["objects"] for e in entries),
            "counted_objects": sum(e["counted_objects"] for e in entries),
            "id_end": id_offset,  # every identity of the dataset is below this
            # gt rows per class id, counted or not: a class missing from `classes` shows here
            "class_objects": {str(key): count for key, count in sorted(class_objects.items())},
        }
        skipped = issues.summary()
        for item in skipped["items"]:
            item["file"] = _relative(item["file"], root)
        manifest["skipped"] = skipped
        # Written last: a folder without it is incomplete by definition.
        with naming_file(out_dir / MANIFEST):
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def read_manifest(dataset_dir: str | Path, verify_checksums: bool = False) -> dict[str, Any]:
    """The manifest of a complete dataset; a missing or inconsistent one is a `DataError`."""
    dataset_dir = Path(dataset_dir)
    path = dataset_dir / MANIFEST
    if not path.is_file():
        raise DataError(
            path,
            None,
            "manifest",
            "missing: the dataset is incomplete (conversion did not finish); re-run convert",
            kind="bad_manifest",
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(
            path, error.lineno, "manifest", f"not valid JSON: {error.msg}", kind="bad_manifest"
        ) from None
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise DataError(
            path,
            None,
            "schema_version",
            f"expected {SCHEMA_VERSION}, got {manifest.get('schema_version')!r}; re-run convert",
            kind="bad_manifest",
        )
    for name, entry in manifest.get("sequences", {}).items():
        file = dataset_dir / entry["file"]
        if not file.is_file() or file.stat().st_size != entry["bytes"]:
            raise DataError(
                file,
                None,
                f"sequences.{name}",
                "missing or of another size than the manifest says",
                kind="bad_manifest",
            )
        if verify_checksums and sha256_file(file) != entry["sha256"]:
            raise DataError(
                file,
                None,
                f"sequences.{name}.sha256",
                "content checksum does not match the manifest",
                kind="bad_manifest",
            )
    return manifest
