"""The Parquet clip datasets and the pseudo-label table: schemas, writing, manifest, reading.

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
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.data.errors import DataError, Issues
from pipeline.data.motchallenge import Sequence, check_box, check_image, jpeg_size, read_seqinfo
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

# The pseudo-label table (one row per frame and source); the single definition every writer uses.
PSEUDO_LABEL_SCHEMA = pa.schema(
    [
        ("sequence", pa.string()),
        ("frame", pa.int32()),
        ("boxes", pa.list_(pa.list_(pa.float32()))),  # x1, y1, x2, y2 pixels of the original image
        ("scores", pa.list_(pa.float32())),
        ("source", pa.string()),  # detector | detfile | torchvision | gt
    ]
)


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
    info = None if sequence.static else read_seqinfo(Path(sequence.source))
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
            else:
                size = jpeg_size(data)
                if size is None:
                    raise DataError(
                        record.image_path, None, "image", "corrupt JPEG (bad header)", kind="corrupt_image"
                    )
                width, height = size
        except DataError as error:
            issues.report(error)
            continue
        objects = record.objects
        if info is None:  # static images: boxes are only now checkable against the image size
            kept = []
            for row in objects:
                try:
                    check_box(row.box, width, height, Path(sequence.source), record.line)
                    kept.append(row)
                except DataError as error:
                    error.field = "fbox"
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


def _write_sequence(path: Path, rows: Iterable[dict[str, Any]], row_group_frames: int) -> dict[str, int]:
    """Stream rows into one Parquet file, one row group per `row_group_frames` frames."""
    counts = {
        "frames": 0,
        "objects": 0,
        "counted_objects": 0,
        "detections": 0,
        "first_frame": None,
        "last_frame": None,
    }
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
                writer.write_table(
                    pa.Table.from_pylist(chunk, schema=CLIP_SCHEMA), row_group_size=row_group_frames
                )
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
        writer.close()
    return counts


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
) -> dict[str, Any]:
    """Write a split's sequences to `out_dir` atomically; returns the manifest.

    Identities are offset per sequence (in the given order) so they are unique in the dataset.
    `input_root` makes the paths recorded in the manifest relative (location-independent output).
    """
    out_dir = Path(out_dir)
    root = Path(input_root).resolve() if input_root is not None else None
    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "dataset": dataset,
        "benchmark": benchmark,
        "split": split,
        "row_group_frames": row_group_frames,
        "sequences": {},
    }
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        id_offset = 0
        for sequence in sequences:
            if progress is not None:
                progress.set_postfix_str(sequence.name)
            file_name = f"{sequence.name}.parquet"
            seq_root = Path(sequence.source) if not sequence.static else Path(sequence.source).parent
            rows = _frame_rows(sequence, id_offset, issues, seq_root)
            counts = _write_sequence(tmp / file_name, rows, row_group_frames)
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
            manifest["sequences"][sequence.name] = {
                "file": file_name,
                "source": _relative(sequence.source, root),
                "width": sequence.width,
                "height": sequence.height,
                "frame_rate": sequence.frame_rate,
                "static": sequence.static,
                "has_gt": sequence.has_gt,
                "det_sources": sequence.det_sources,
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
        }
        skipped = issues.summary()
        for item in skipped["items"]:
            item["file"] = _relative(item["file"], root)
        manifest["skipped"] = skipped
        # Written last: a folder without it is incomplete by definition.
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


@dataclass
class FrameData:
    """One decoded-annotation frame row (the image still encoded)."""

    sequence: str
    frame: int
    width: int
    height: int
    image: memoryview | bytes
    ids: np.ndarray  # [K] int64
    orig_ids: np.ndarray
    boxes: np.ndarray  # [K, 4] float64 x, y, w, h pixels
    classes: np.ndarray
    consider: np.ndarray
    visibility: np.ndarray
    ignore: np.ndarray  # [K] bool
    det_boxes: np.ndarray  # [D, 4]
    det_scores: np.ndarray
    det_sources: list[str]


def _split_list(column: pa.ChunkedArray | pa.Array, width: int | None = None) -> list[np.ndarray]:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    offsets = array.offsets.to_numpy()
    values = array.values
    if width is not None:
        values = values.values.to_numpy(zero_copy_only=False).reshape(-1, width)
    else:
        values = values.to_numpy(zero_copy_only=False)
    base = offsets[0]
    return [values[offsets[i] - base : offsets[i + 1] - base] for i in range(len(array))]


def table_to_frames(table: pa.Table) -> list[FrameData]:
    """Arrow rows → `FrameData` (vectorised per column; images stay zero-copy views)."""
    n = table.num_rows
    images = table.column("image").combine_chunks()
    buffers = images.buffers()
    image_offsets = np.frombuffer(buffers[1], np.int32)[images.offset : images.offset + n + 1] if n else []
    image_buffer = memoryview(buffers[2]) if n else memoryview(b"")
    lists = {
        name: _split_list(table.column(name))
        for name in ("ids", "orig_ids", "classes", "consider", "visibility", "ignore", "det_scores")
    }
    boxes = _split_list(table.column("boxes"), 4)
    det_boxes = _split_list(table.column("det_boxes"), 4)
    det_sources = table.column("det_sources").to_pylist()
    sequences = table.column("sequence").to_pylist()
    frames = table.column("frame").to_numpy()
    widths = table.column("width").to_numpy()
    heights = table.column("height").to_numpy()
    return [
        FrameData(
            sequences[i],
            int(frames[i]),
            int(widths[i]),
            int(heights[i]),
            image_buffer[image_offsets[i] : image_offsets[i + 1]],
            lists["ids"][i],
            lists["orig_ids"][i],
            boxes[i],
            lists["classes"][i],
            lists["consider"][i],
            lists["visibility"][i],
            lists["ignore"][i].astype(bool),
            det_boxes[i],
            lists["det_scores"][i],
            det_sources[i],
        )
        for i in range(n)
    ]


class SequenceFile:
    """Random access to one sequence's frames by position, reading only the row groups needed."""

    def __init__(self, path: Path):
        self.path = path
        self._file = pq.ParquetFile(path, memory_map=True)
        sizes = [self._file.metadata.row_group(i).num_rows for i in range(self._file.num_row_groups)]
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.num_frames = int(self.starts[-1])
        self.frame_numbers = self._file.read(columns=["frame"]).column("frame").to_numpy()

    def read_row_group(self, index: int) -> list[FrameData]:
        return table_to_frames(self._file.read_row_group(index))

    def locate(self, position: int) -> tuple[int, int]:
        group = int(np.searchsorted(self.starts, position, side="right") - 1)
        return group, position - int(self.starts[group])


class DatasetReader:
    """A complete Parquet dataset: manifest checked once, row groups cached (LRU, by bytes)."""

    def __init__(self, dataset_dir: str | Path, cache_bytes: int = 256 << 20):
        self.dataset_dir = Path(dataset_dir)
        self.manifest = read_manifest(self.dataset_dir)
        self.cache_bytes = cache_bytes
        self._files: dict[str, SequenceFile] = {}
        self._cache: OrderedDict[tuple[str, int], tuple[list[FrameData], int]] = OrderedDict()
        self._cached = 0

    @property
    def sequences(self) -> list[str]:
        return list(self.manifest["sequences"])

    def file(self, sequence: str) -> SequenceFile:
        if sequence not in self._files:
            if sequence not in self.manifest["sequences"]:
                raise KeyError(f"{self.dataset_dir}: no sequence {sequence!r}; has {self.sequences}")
            self._files[sequence] = SequenceFile(
                self.dataset_dir / self.manifest["sequences"][sequence]["file"]
            )
        return self._files[sequence]

    def _group(self, sequence: str, group: int) -> list[FrameData]:
        key = (sequence, group)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key][0]
        frames = self.file(sequence).read_row_group(group)
        size = sum(len(f.image) for f in frames)
        self._cache[key] = (frames, size)
        self._cached += size
        while self._cached > self.cache_bytes and len(self._cache) > 1:
            _, (_, old) = self._cache.popitem(last=False)
            self._cached -= old
        return frames

    def frames(self, sequence: str, positions: Iterable[int]) -> list[FrameData]:
        """Frames by position (0-based index into the sequence's stored frames)."""
        handle = self.file(sequence)
        result = []
        for position in positions:
            group, offset = handle.locate(int(position))
            result.append(self._group(sequence, group)[offset])
        return result

    def iter_sequence(self, sequence: str) -> Iterator[FrameData]:
        handle = self.file(sequence)
        for group in range(len(handle.starts) - 1):
            yield from handle.read_row_group(group)

    def __getstate__(self):  # picklable for DataLoader workers / Ray: reopen lazily
        return {"dataset_dir": self.dataset_dir, "cache_bytes": self.cache_bytes}

    def __setstate__(self, state):
        self.__init__(state["dataset_dir"], state["cache_bytes"])


def write_pseudo_labels(rows: Iterable[dict[str, Any]], path: str | Path) -> None:
    """Write pseudo-label rows (keys of `PSEUDO_LABEL_SCHEMA`) atomically, sorted by (source, sequence, frame)."""
    rows = sorted(rows, key=lambda r: (r["source"], r["sequence"], r["frame"]))
    table = pa.Table.from_pylist(rows, schema=PSEUDO_LABEL_SCHEMA)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_pseudo_labels(
    path: str | Path, threshold: float = 0.0, sources: Iterable[str] | None = None
) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]:
    """(sequence, frame) → (boxes [P, 4] xyxy pixels, scores [P]) with score ≥ threshold.

    `path` is a Parquet file or a folder of them; rows of several sources for one frame are joined.
    """
    path = Path(path)
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise DataError(path, None, "pseudo_labels", "no Parquet file found", kind="missing_split")
    wanted = set(sources) if sources is not None else None
    result: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
    for file in files:
        table = pq.read_table(file)
        missing = [name for name in PSEUDO_LABEL_SCHEMA.names if name not in table.column_names]
        if missing:
            raise DataError(
                file,
                None,
                missing[0],
                f"column missing (expected schema {PSEUDO_LABEL_SCHEMA.names})",
                kind="bad_schema",
            )
        table = table.select(PSEUDO_LABEL_SCHEMA.names).cast(PSEUDO_LABEL_SCHEMA)
        boxes = table.column("boxes").to_pylist()
        scores = table.column("scores").to_pylist()
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
            if len(frame_boxes) != len(frame_scores):
                raise DataError(
                    file,
                    None,
                    f"row {i}.scores",
                    f"{len(frame_scores)} scores for {len(frame_boxes)} boxes",
                    kind="bad_schema",
                )
            keep = frame_scores >= threshold
            key = (sequence, int(frame))
            if key in result:
                old_boxes, old_scores = result[key]
                result[key] = (
                    np.concatenate([old_boxes, frame_boxes[keep]]),
                    np.concatenate([old_scores, frame_scores[keep]]),
                )
            else:
                result[key] = (frame_boxes[keep], frame_scores[keep])
    return result
