"""Reading a Parquet clip dataset: frames by position (row groups cached), whole sequences in order,
the frame index detection files are checked against, and the gt exported back for TrackEval."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.data.images import decode_image
from pipeline.data.parquet_io import read_manifest
from pipeline.formats.errors import DataError
from pipeline.formats.motchallenge import GT_FIELDS, SeqInfo, format_gt, write_seqinfo
from pipeline.paths import atomic_path

DEFAULT_FRAME_RATE = 30.0


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


@dataclass
class FrameIndex:
    """Which frames the converted split holds: what every source is checked against."""

    dataset_dir: Path
    frames: dict[str, np.ndarray]  # sequence → frame numbers (stored order)
    static: dict[str, bool]
    sizes: dict[str, tuple[int, int]]  # sequence → (width, height); static sequences vary per frame
    image_stems: dict[str, tuple[str, int]]  # static sequences: image file stem → (sequence, frame)

    @classmethod
    def load(cls, dataset_dir: str | Path) -> FrameIndex:
        dataset_dir = Path(dataset_dir)
        manifest = read_manifest(dataset_dir)
        frames, static, sizes, stems = {}, {}, {}, {}
        for name, entry in manifest["sequences"].items():
            columns = ["frame", "file_name"] if entry.get("static") else ["frame"]
            table = pq.read_table(dataset_dir / entry["file"], columns=columns)
            frames[name] = table.column("frame").to_numpy().astype(np.int64)
            static[name] = bool(entry.get("static"))
            sizes[name] = (int(entry.get("width") or 0), int(entry.get("height") or 0))
            if static[name]:
                for frame, file_name in zip(frames[name], table.column("file_name").to_pylist(), strict=True):
                    stems[Path(file_name).stem] = (name, int(frame))
        return cls(dataset_dir, frames, static, sizes, stems)

    def check(self, sequence: str, frame: int, file: str | Path, line: int | None, field: str) -> None:
        if sequence not in self.frames:
            raise DataError(
                file,
                line,
                field,
                f"sequence {sequence!r} is not in the converted dataset {self.dataset_dir} "
                f"(has {sorted(self.frames)[:8]}{' …' if len(self.frames) > 8 else ''})",
                kind="unknown_sequence",
            )
        if frame not in self._frame_sets()[sequence]:
            known = self.frames[sequence]
            raise DataError(
                file,
                line,
                field,
                f"frame {frame} of sequence {sequence!r} is not in the converted dataset {self.dataset_dir} "
                f"(frames {known.min()}..{known.max()})",
                kind="unknown_frame",
            )

    def _frame_sets(self) -> dict[str, set[int]]:
        if not hasattr(self, "_sets"):
            self._sets = {name: set(map(int, f)) for name, f in self.frames.items()}
        return self._sets


# ---- Tracking and evaluation


def list_sequences(dataset_dir: str | Path, include_static: bool = False) -> list[str]:
    """Sequence names of a complete dataset (static image sets such as CrowdHuman left out by default)."""
    manifest = read_manifest(dataset_dir)
    return [name for name, entry in manifest["sequences"].items() if include_static or not entry["static"]]


def iter_frames(dataset_dir: str | Path, sequence: str) -> Iterator[tuple[int, np.ndarray, FrameData]]:
    """(frame number, RGB uint8 HWC image, the frame's stored row) in frame order, streamed by row group."""
    reader = DatasetReader(dataset_dir, cache_bytes=0)
    for frame in reader.iter_sequence(sequence):
        yield frame.frame, decode_image(frame.image), frame


def export_motchallenge_gt(dataset_dir: str | Path, out_dir: str | Path) -> list[str]:
    """Write each annotated video sequence's gt back as `<out_dir>/<seq>/{gt/gt.txt,seqinfo.ini}` (TrackEval).

    Rows are the source's (original ids, class, consider flag, visibility), so TrackEval applies
    the benchmark's own rules. Returns the sequence names written.
    """
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    manifest = read_manifest(dataset_dir)
    reader = DatasetReader(dataset_dir, cache_bytes=0)
    written = []
    for name, entry in manifest["sequences"].items():
        if entry["static"] or not entry["has_gt"]:
            continue
        rows = [
            [
                frame.frame,
                frame.orig_ids[k],
                *frame.boxes[k],
                frame.consider[k],
                frame.classes[k],
                frame.visibility[k],
            ]
            for frame in reader.iter_sequence(name)
            for k in range(len(frame.ids))
        ]
        seq_dir = out_dir / name
        with atomic_path(seq_dir / "gt" / "gt.txt") as tmp:
            tmp.write_text(
                format_gt(np.asarray(rows, dtype=np.float64).reshape(-1, len(GT_FIELDS)), decimals=None)
            )
        frame_rate = entry["frame_rate"]
        info = SeqInfo(
            name,
            entry["last_frame"],
            entry["width"],
            entry["height"],
            frame_rate if frame_rate and math.isfinite(frame_rate) else DEFAULT_FRAME_RATE,
        )
        write_seqinfo(seq_dir / "seqinfo.ini", info)
        written.append(name)
    return written
