"""MOTChallenge text files: tracker results, ground truth and `seqinfo.ini`, read with validation.

Result rows are `frame,id,bb_left,bb_top,bb_width,bb_height,score,x,y,z` (1-based frames, pixels
of the original image; x, y, z are -1 in 2D tracking). Ground-truth rows are
`frame,id,bb_left,bb_top,bb_width,bb_height,conf,class,visibility` (conf 0 = ignored).
Every problem is a `MOTFormatError` naming the file, the line and the field, so a bad file from any
tracker is found before TrackEval (whose own messages name neither) sees it.
"""

from __future__ import annotations

import configparser
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.paths import atomic_path

RESULT_FIELDS = ("frame", "id", "bb_left", "bb_top", "bb_width", "bb_height", "score", "x", "y", "z")
GT_FIELDS = ("frame", "id", "bb_left", "bb_top", "bb_width", "bb_height", "conf", "class", "visibility")


class MOTFormatError(ValueError):
    """A MOTChallenge file that cannot be scored; the message names file, line and field."""


class MissingSequenceError(FileNotFoundError):
    """A sequence of the ground truth has no result file (scored as an error, never as zero)."""


@dataclass(frozen=True)
class SeqInfo:
    """The `[Sequence]` section of a MOTChallenge `seqinfo.ini`."""

    name: str
    length: int
    width: int | None = None
    height: int | None = None
    frame_rate: float | None = None
    im_dir: str = "img1"
    im_ext: str = ".jpg"


def read_seqinfo(path: str | Path) -> SeqInfo:
    path = Path(path)
    parser = configparser.ConfigParser()
    try:
        with open(path) as handle:
            parser.read_file(handle)
    except FileNotFoundError:
        raise MOTFormatError(f"{path}: no such file (every sequence needs a seqinfo.ini)") from None
    except configparser.Error as error:
        raise MOTFormatError(f"{path}: not a valid ini file: {error}") from None
    if "Sequence" not in parser:
        raise MOTFormatError(f"{path}: missing the [Sequence] section")
    section = parser["Sequence"]

    def number(key: str, kind, required: bool = False):
        if key not in section:
            if required:
                raise MOTFormatError(f"{path}: [Sequence] {key}: missing")
            return None
        try:
            value = kind(section[key])
        except ValueError:
            raise MOTFormatError(
                f"{path}: [Sequence] {key}: not a {kind.__name__}: {section[key]!r}"
            ) from None
        if value <= 0:
            raise MOTFormatError(f"{path}: [Sequence] {key}: must be positive, got {value}")
        return value

    return SeqInfo(
        name=section.get("name", path.parent.name),
        length=number("seqLength", int, required=True),
        width=number("imWidth", int),
        height=number("imHeight", int),
        frame_rate=number("frameRate", float),
        im_dir=section.get("imDir", "img1"),
        im_ext=section.get("imExt", ".jpg"),
    )


def write_seqinfo(path: str | Path, info: SeqInfo) -> None:
    lines = ["[Sequence]", f"name={info.name}", f"imDir={info.im_dir}"]
    if info.frame_rate is not None:
        lines.append(f"frameRate={info.frame_rate:g}")
    lines.append(f"seqLength={info.length}")
    if info.width is not None:
        lines.append(f"imWidth={info.width}")
    if info.height is not None:
        lines.append(f"imHeight={info.height}")
    lines.append(f"imExt={info.im_ext}")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _parse_rows(path: Path, fields: tuple[str, ...], min_fields: int, seq_length: int | None) -> np.ndarray:
    """Parse comma (or whitespace) separated rows into float64 [N, len(fields)], padding with -1."""
    rows: list[list[float]] = []
    seen: dict[tuple[int, int], int] = {}
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise MissingSequenceError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise MOTFormatError(f"{path}: not a text file") from None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        parts = [p.strip() for p in (stripped.split(",") if "," in stripped else stripped.split())]
        if parts and parts[-1] == "":  # a trailing comma
            parts.pop()
        where = f"{path}:{number}"
        if not min_fields <= len(parts) <= len(fields):
            raise MOTFormatError(
                f"{where}: expected {min_fields} to {len(fields)} comma-separated values "
                f"({','.join(fields[:min_fields])},...), got {len(parts)}: {stripped!r}"
            )
        values: list[float] = []
        for name, raw in zip(fields, parts, strict=False):  # parts may be shorter
            try:
                value = float(raw)
            except ValueError:
                raise MOTFormatError(f"{where}: field {name}: not a number: {raw!r}") from None
            if not math.isfinite(value):
                raise MOTFormatError(f"{where}: field {name}: not finite: {raw!r}")
            values.append(value)
        frame, track_id, _, _, width, height = values[:6]
        if frame != int(frame) or frame < 1:
            raise MOTFormatError(
                f"{where}: field frame: must be an integer ≥ 1 (frames are 1-based), got {parts[0]}"
            )
        if seq_length is not None and frame > seq_length:
            raise MOTFormatError(
                f"{where}: field frame: {int(frame)} is outside the sequence (1..{seq_length})"
            )
        if track_id != int(track_id) or track_id < 0:
            raise MOTFormatError(f"{where}: field id: must be an integer ≥ 0, got {parts[1]}")
        if width < 0 or height < 0:
            raise MOTFormatError(
                f"{where}: field bb_width/bb_height: must not be negative, got {width}, {height}"
            )
        key = (int(frame), int(track_id))
        if key in seen:
            raise MOTFormatError(
                f"{where}: field id: identity {key[1]} appears twice in frame {key[0]} (first on line {seen[key]})"
            )
        seen[key] = number
        values += [-1.0] * (len(fields) - len(values))
        rows.append(values)
    if not rows:
        return np.zeros((0, len(fields)), dtype=np.float64)
    return np.asarray(rows, dtype=np.float64)


def read_results(path: str | Path, seq_length: int | None = None) -> np.ndarray:
    """A tracker's result file → float64 [N, 10] in `RESULT_FIELDS` order (missing x, y, z = -1).

    Rows need at least the first 7 values (TrackEval reads the score); frames must lie in
    1..seq_length when the length is given; an identity may appear once per frame.
    """
    return _parse_rows(Path(path), RESULT_FIELDS, min_fields=7, seq_length=seq_length)


def read_gt(path: str | Path, seq_length: int | None = None) -> np.ndarray:
    """A ground-truth file → float64 [N, 9] in `GT_FIELDS` order (needs the class column: 8 values)."""
    return _parse_rows(Path(path), GT_FIELDS, min_fields=8, seq_length=seq_length)


def format_results(rows: np.ndarray, decimals: int = 2) -> str:
    """Rows [N, ≥7] (frame, id, left, top, w, h, score) → result text `frame,id,x,y,w,h,score,-1,-1,-1`."""
    rows = np.asarray(rows, dtype=np.float64)
    if rows.size == 0:
        return ""
    order = np.lexsort((rows[:, 1], rows[:, 0]))
    d = decimals
    lines = [
        f"{int(r[0])},{int(r[1])},{r[2]:.{d}f},{r[3]:.{d}f},{r[4]:.{d}f},{r[5]:.{d}f},{r[6]:.4f},-1,-1,-1"
        for r in rows[order]
    ]
    return "".join(line + "\n" for line in lines)


def write_results(path: str | Path, rows: np.ndarray) -> None:
    """Write a result file atomically, sorted by frame then identity."""
    with atomic_path(path) as tmp:
        tmp.write_text(format_results(rows))


def format_gt(rows: np.ndarray, decimals: int = 2) -> str:
    """Rows in `GT_FIELDS` order → gt.txt text (visibility kept as written)."""
    d = decimals
    return "".join(
        f"{int(r[0])},{int(r[1])},{r[2]:.{d}f},{r[3]:.{d}f},{r[4]:.{d}f},{r[5]:.{d}f},{int(r[6])},{int(r[7])},{r[8]:g}\n"
        for r in np.asarray(rows, dtype=np.float64)
    )


def compact_ids(rows: np.ndarray) -> np.ndarray:
    """A copy with identities renumbered 1..K in order of value (TrackEval sizes arrays by the largest id)."""
    rows = np.array(rows, dtype=np.float64, copy=True)
    if len(rows):
        _, inverse = np.unique(rows[:, 1], return_inverse=True)
        rows[:, 1] = inverse + 1
    return rows


def tracks_to_rows(frame: int, tracks) -> list[list[float]]:
    """`motrv3.Track`s of one frame (boxes x1, y1, x2, y2 in pixels) → result rows."""
    rows = []
    for track in tracks:
        x1, y1, x2, y2 = (float(v) for v in track.box)
        rows.append([frame, int(track.track_id), x1, y1, x2 - x1, y2 - y1, float(track.score)])
    return rows
