"""MOTChallenge text files, read and written in one place: `seqinfo.ini`, `gt/gt.txt`, `det/det.txt`
and tracker result files (`<seq>.txt`), plus the naming of MOT17's three detector copies.

Rows: results `frame,id,bb_left,bb_top,bb_width,bb_height,score,x,y,z` (1-based frames, pixels of
the original image; x, y, z are -1 in 2D tracking); ground truth
`frame,id,bb_left,bb_top,bb_width,bb_height,conf,class,visibility` (conf 0 = not to be considered);
public detections `frame,-1,bb_left,bb_top,bb_width,bb_height,score[,...]`. Files saved by common
editors are accepted: a UTF-8 byte-order mark, CRLF line ends, a trailing comma, whitespace instead
of commas. Every problem is a `DataError` naming the file, the line and the field, so a bad file
from any tracker or dataset is found before TrackEval (whose own messages name neither) sees it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.formats.errors import DataError, Issues
from pipeline.formats.seqinfo import SeqInfo as SeqInfo  # re-exported: one module per format family
from pipeline.formats.seqinfo import read_seqinfo as read_seqinfo
from pipeline.formats.seqinfo import write_seqinfo as write_seqinfo
from pipeline.formats.text import read_text as read_text
from pipeline.formats.text import text_lines as text_lines
from pipeline.paths import atomic_path

RESULT_FIELDS = ("frame", "id", "bb_left", "bb_top", "bb_width", "bb_height", "score", "x", "y", "z")
# Column 7 is MOTChallenge's "conf" (ground truth: 0 = not to be considered).
GT_FIELDS = ("frame", "id", "bb_left", "bb_top", "bb_width", "bb_height", "consider", "class", "visibility")
RESULT_CLASS = 7  # column 8 of a result row: the class (TrackEval's MOTChallenge reader; -1: none)
DET_FIELDS = ("frame", "id", "bb_left", "bb_top", "bb_width", "bb_height", "score")

MOT17_PEDESTRIAN = 1
# MOT17 classes that are ignore regions / distractors: person on vehicle, static person, distractor, reflection.
MOT17_DISTRACTORS = frozenset({2, 7, 8, 12})
# MOT17 ships every sequence three times, once per public detector (MOT17-02-DPM, -FRCNN, -SDP).
MOT17_DETECTORS = ("DPM", "FRCNN", "SDP")
MOT17_COPY = re.compile(r"^(?P<base>MOT\d\d-\d+)-(?P<detector>DPM|FRCNN|SDP)$")
BENCHMARKS = ("mot17", "dancetrack", "synthetic", "custom")


class MissingSequenceError(DataError, FileNotFoundError):
    """A sequence has no result file (scored as an error, never as zero)."""

    def __init__(self, file: str | Path, message: str):
        super().__init__(file, None, "sequence", message, kind="missing_sequence")


def mot17_copy(name: str) -> tuple[str, str] | None:
    """`MOT17-02-SDP` → ("MOT17-02", "SDP"); None for a name that is not a detector copy."""
    match = MOT17_COPY.match(name)
    return (match["base"], match["detector"]) if match else None


# ---------------------------------------------------------------------------------------------
# Text and values


def split_row(text: str) -> list[str]:
    """Comma-separated values (whitespace-separated when there is no comma); a trailing comma ignored."""
    parts = [p.strip() for p in (text.split(",") if "," in text else text.split())]
    if parts and parts[-1] == "":
        parts.pop()
    return parts


def parse_values(
    text: str,
    path: str | Path,
    line: int | None,
    fields: tuple[str, ...],
    min_fields: int,
    max_fields: int | None = None,
    field_name: str | None = None,
) -> list[float]:
    """The first `len(fields)` values of a row as finite floats; errors name the column.

    `max_fields=None` ignores columns beyond `fields` (det.txt's trailing -1s); `field_name`
    names every error after one field instead of the column (entries of a JSON detection db).
    """
    parts = split_row(text)
    if len(parts) < min_fields or (max_fields is not None and len(parts) > max_fields):
        expected = f"{min_fields} to {max_fields}" if max_fields is not None else f"at least {min_fields}"
        raise DataError(
            path,
            line,
            field_name or "row",
            f"expected {expected} comma-separated values ({', '.join(fields[:min_fields])}, ...), "
            f"got {len(parts)}: {text.strip()!r}",
            kind="malformed_row",
        )
    values = []
    for name, raw in zip(fields, parts, strict=False):  # parts may be shorter than fields
        try:
            value = float(raw)
        except ValueError:
            raise DataError(
                path, line, field_name or name, f"not a number: {raw!r}", kind="malformed_row"
            ) from None
        if not math.isfinite(value):
            raise DataError(path, line, field_name or name, f"not finite: {raw!r}", kind="malformed_row")
        values.append(value)
    return values


def integer(value: float, path: str | Path, line: int | None, name: str) -> int:
    if value != int(value):
        raise DataError(path, line, name, f"not an integer: {value:g}", kind="malformed_row")
    return int(value)


# ---------------------------------------------------------------------------------------------
# seqinfo.ini


@dataclass
class GtRow:
    frame: int
    track_id: int
    box: tuple[float, float, float, float]  # x, y, w, h pixels (may lie partly outside the image)
    consider: int  # column 7 as written (MOT17: 0 = not to be considered)
    cls: int
    visibility: float
    ignore: bool  # ignore region / distractor / not counted by the benchmark's rules


@dataclass
class DetRow:
    frame: int
    box: tuple[float, float, float, float]
    score: float
    source: str  # which public detector (MOT17: DPM / FRCNN / SDP; others: "det")


def is_counted(benchmark: str, cls: int, consider: int, classes: Collection[int] | None = None) -> bool:
    """Whether a gt row is a target by the benchmark's rules; rows not counted keep an ignore flag.

    MOT17: class 1 with consider flag 1. Custom data: a class of `classes` (the gt class ids of
    `dataset.classes`; None: class 1) with consider flag 1, so a class outside the mapping is
    dropped as MOT17's distractors are. DanceTrack and the synthetic benchmark: every row is
    class 1 and counts unless its consider flag is 0 (the generator marks almost wholly hidden
    targets that way).
    """
    if benchmark == "custom" and classes is not None:
        return cls in classes and consider == 1
    if benchmark in ("mot17", "custom"):
        return cls == MOT17_PEDESTRIAN and consider == 1
    return consider == 1


def check_box(
    box, width: int | None, height: int | None, file: str | Path, line: int | None, field: str | None = None
) -> None:
    """Zero/negative size or wholly outside the image is an error; partly outside is valid (MOT17).

    Without an image size (a seqinfo.ini without imWidth/imHeight) only the size is checked;
    `field` names every error after one field instead (CrowdHuman's `gtboxes[i].fbox`).
    """
    x, y, w, h = box
    if w <= 0:
        raise DataError(file, line, field or "bb_width", f"box width {w:g} is not positive", kind="bad_box")
    if h <= 0:
        raise DataError(file, line, field or "bb_height", f"box height {h:g} is not positive", kind="bad_box")
    if not width or not height:
        return
    if x + w <= 0 or y + h <= 0 or x >= width or y >= height:
        raise DataError(
            file,
            line,
            field or "bbox",
            f"box {x:g},{y:g},{w:g},{h:g} lies wholly outside the {width}x{height} image",
            kind="bad_box",
        )


def _frame_in_sequence(frame: int, info: SeqInfo, path: Path, line: int) -> None:
    if not 1 <= frame <= info.length:
        raise DataError(
            path, line, "frame", f"frame {frame} outside 1..seqLength={info.length}", kind="malformed_row"
        )


def _gt_row(
    text: str, path: Path, number: int, info: SeqInfo, benchmark: str, classes: Collection[int] | None
) -> GtRow:
    values = parse_values(text, path, number, GT_FIELDS, min_fields=7, max_fields=len(GT_FIELDS))
    frame = integer(values[0], path, number, "frame")
    track_id = integer(values[1], path, number, "id")
    box = tuple(values[2:6])
    consider = integer(values[6], path, number, "consider")
    cls = integer(values[7], path, number, "class") if len(values) > 7 else 1
    visibility = values[8] if len(values) > 8 else 1.0
    _frame_in_sequence(frame, info, path, number)
    if track_id < 0:
        raise DataError(path, number, "id", f"identity {track_id} is negative", kind="malformed_row")
    if consider not in (0, 1):
        raise DataError(path, number, "consider", f"must be 0 or 1, got {consider}", kind="malformed_row")
    if not 0.0 <= visibility <= 1.0:
        raise DataError(
            path, number, "visibility", f"must lie in [0, 1], got {visibility:g}", kind="malformed_row"
        )
    if benchmark in ("dancetrack", "synthetic") and cls != 1:
        raise DataError(
            path, number, "class", f"{benchmark} gt rows are all class 1, got {cls}", kind="malformed_row"
        )
    if benchmark == "custom" and cls < 0:
        raise DataError(path, number, "class", f"must be a class id ≥ 0, got {cls}", kind="malformed_row")
    check_box(box, info.width, info.height, path, number)
    counted = is_counted(benchmark, cls, consider, classes)
    return GtRow(frame, track_id, box, consider, cls, visibility, ignore=not counted)


def read_gt_rows(
    path: Path, info: SeqInfo, benchmark: str, issues: Issues, classes: Collection[int] | None = None
) -> list[GtRow]:
    """A dataset's gt.txt as records; bad rows raise (strict) or are skipped and recorded (lenient).

    The one gt.txt parser: the converter reads it here, evaluation through `read_gt`, so a file
    is accepted by both or by neither. 7 to 9 values a row (class and visibility default to 1).
    `classes`: custom data's gt class ids (`dataset.classes`); rows of other classes are ignored.
    """
    rows: list[GtRow] = []
    seen: dict[tuple[int, int], int] = {}
    for number, text in text_lines(path):
        try:
            row = _gt_row(text, path, number, info, benchmark, classes)
            key = (row.frame, row.track_id)
            if key in seen:
                raise DataError(
                    path,
                    number,
                    "id",
                    f"identity {row.track_id} appears twice in frame {row.frame} (first on line {seen[key]})",
                    kind="duplicate_id",
                )
            seen[key] = number
            rows.append(row)
        except DataError as error:
            issues.report(error)
    return rows


def parse_det_row(text: str, path: str | Path, line: int) -> tuple[int, tuple[float, ...], float]:
    """One det.txt row `frame,-1,x,y,w,h,score[,...]` → (frame, box x, y, w, h, score).

    The one det.txt row parser (the converter and the pseudo-label sources); the caller checks
    the frame and box against what it knows (seqinfo.ini or the converted split).
    """
    values = parse_values(text, path, line, DET_FIELDS, min_fields=7)
    return integer(values[0], path, line, "frame"), tuple(values[2:6]), values[6]


def read_det_rows(path: Path, info: SeqInfo, source: str, issues: Issues) -> list[DetRow]:
    """A dataset's public detections (det.txt) as records; same validation as gt rows."""
    rows: list[DetRow] = []
    for number, text in text_lines(path):
        try:
            frame, box, score = parse_det_row(text, path, number)
            _frame_in_sequence(frame, info, path, number)
            check_box(box, info.width, info.height, path, number)
            rows.append(DetRow(frame, box, score, source))
        except DataError as error:
            issues.report(error)
    return rows


# ---------------------------------------------------------------------------------------------
# Tracker results and the ground truth handed to TrackEval, as arrays


def _read_table(
    path: Path,
    fields: tuple[str, ...],
    min_fields: int,
    seq_length: int | None,
    classes: Collection[int] | None = None,
) -> np.ndarray:
    """Rows → float64 [N, len(fields)] padded with -1; frames 1-based, one identity per frame.

    `classes` (result files of several classes): column 8 must hold one of them."""
    if not path.is_file():
        raise MissingSequenceError(path, "no such file")
    rows: list[list[float]] = []
    seen: dict[tuple[int, int], int] = {}
    for number, text in text_lines(path):
        values = parse_values(text, path, number, fields, min_fields, max_fields=len(fields))
        frame, track_id, _, _, width, height = values[:6]
        if frame != int(frame) or frame < 1:
            raise DataError(
                path, number, "frame", f"must be an integer ≥ 1 (frames are 1-based), got {frame:g}"
            )
        if seq_length is not None and frame > seq_length:
            raise DataError(path, number, "frame", f"{int(frame)} is outside the sequence (1..{seq_length})")
        if track_id != int(track_id) or track_id < 0:
            raise DataError(path, number, "id", f"must be an integer ≥ 0, got {track_id:g}")
        if width < 0 or height < 0:
            raise DataError(
                path, number, "bb_width/bb_height", f"must not be negative, got {width:g}, {height:g}"
            )
        if classes is not None:
            cls = values[RESULT_CLASS] if len(values) > RESULT_CLASS else None
            if cls not in classes:
                shown = "missing" if cls is None else f"{cls:g}"
                raise DataError(
                    path,
                    number,
                    "class",
                    f"column 8 must be the gt class id of the track, one of {sorted(classes)}, got {shown}",
                )
        key = (int(frame), int(track_id))
        if key in seen:
            raise DataError(
                path,
                number,
                "id",
                f"identity {key[1]} appears twice in frame {key[0]} (first on line {seen[key]})",
                kind="duplicate_id",
            )
        seen[key] = number
        rows.append(values + [-1.0] * (len(fields) - len(values)))
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(fields))


def read_results(
    path: str | Path, seq_length: int | None = None, classes: Collection[int] | None = None
) -> np.ndarray:
    """A tracker's result file → float64 [N, 10] in `RESULT_FIELDS` order (missing x, y, z = -1).

    Rows need at least the first 7 values (TrackEval reads the score); frames must lie in
    1..seq_length when the length is given; an identity may appear once per frame. With
    `classes` (several classes), column 8 (`x`, TrackEval's tracker class) must be one of them.
    """
    return _read_table(Path(path), RESULT_FIELDS, 7, seq_length, classes)


def read_gt(
    path: str | Path, info: SeqInfo, benchmark: str = "custom", classes: Collection[int] | None = None
) -> np.ndarray:
    """A ground-truth file → float64 [N, 9] in `GT_FIELDS` order (missing class, visibility = 1).

    Parsed by `read_gt_rows` (strict) under `benchmark`'s rules (one of `BENCHMARKS`), so
    evaluation accepts exactly the gt files the converter accepts.
    """
    rows = read_gt_rows(Path(path), info, benchmark, Issues(), classes)
    table = [[r.frame, r.track_id, *r.box, r.consider, r.cls, r.visibility] for r in rows]
    return np.asarray(table, dtype=np.float64).reshape(-1, len(GT_FIELDS))


def format_results(rows: np.ndarray, decimals: int = 2) -> str:
    """Rows [N, ≥7] (frame, id, left, top, w, h, score[, class]) → result text
    `frame,id,x,y,w,h,score,class,-1,-1`; class -1 when absent (one class: MOTChallenge's files).

    The class sits in column 8, where TrackEval's MOTChallenge reader takes a tracker's class."""
    rows = np.asarray(rows, dtype=np.float64)
    if rows.size == 0:
        return ""
    order = np.lexsort((rows[:, 1], rows[:, 0]))
    d = decimals
    lines = [
        f"{int(r[0])},{int(r[1])},{r[2]:.{d}f},{r[3]:.{d}f},{r[4]:.{d}f},{r[5]:.{d}f},{r[6]:.4f},"
        f"{int(r[7]) if len(r) > 7 else -1},-1,-1"
        for r in rows[order]
    ]
    return "".join(line + "\n" for line in lines)


def write_results(path: str | Path, rows: np.ndarray) -> None:
    """Write a result file atomically, sorted by frame then identity."""
    with atomic_path(path) as tmp:
        tmp.write_text(format_results(rows))


def format_number(value: float) -> str:
    """Shortest text of a number that reads back equal (integers without a decimal point)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def format_gt(rows: np.ndarray, decimals: int | None = 2) -> str:
    """Rows in `GT_FIELDS` order → gt.txt text (visibility kept as written); `decimals=None` writes
    every value exactly (`format_number`)."""
    lines = []
    for r in np.asarray(rows, dtype=np.float64).reshape(-1, len(GT_FIELDS)):
        box = (
            [format_number(v) for v in r[2:6]] if decimals is None else [f"{v:.{decimals}f}" for v in r[2:6]]
        )
        visibility = format_number(r[8]) if decimals is None else f"{r[8]:g}"
        lines.append(f"{int(r[0])},{int(r[1])},{','.join(box)},{int(r[6])},{int(r[7])},{visibility}\n")
    return "".join(lines)


def compact_ids(rows: np.ndarray) -> np.ndarray:
    """A copy with identities renumbered 1..K in order of value (TrackEval sizes arrays by the largest id)."""
    rows = np.array(rows, dtype=np.float64, copy=True)
    if len(rows):
        _, inverse = np.unique(rows[:, 1], return_inverse=True)
        rows[:, 1] = inverse + 1
    return rows


def tracks_to_rows(frame: int, tracks, class_ids: list[int] | None = None) -> list[list[float]]:
    """`motrv3.Track`s of one frame (boxes x1, y1, x2, y2 in pixels) → result rows [8 values].

    The 8th value is the track's gt class id, `class_ids[track.label]` (several classes), else -1.
    """
    rows = []
    for track in tracks:
        x1, y1, x2, y2 = (float(v) for v in track.box)
        cls = class_ids[track.label] if class_ids else -1
        rows.append([frame, int(track.track_id), x1, y1, x2 - x1, y2 - y1, float(track.score), cls])
    return rows
