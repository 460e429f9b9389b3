"""Readers for the MOTChallenge folder layout (MOT17, DanceTrack, the synthetic benchmark, custom data).

A sequence folder holds `seqinfo.ini`, `img1/000001.jpg …`, optionally `gt/gt.txt` and
`det/det.txt`. Every problem found is a `DataError` naming file, line and field, handed to an
`Issues` policy: strict raises, lenient skips the item (row, frame or sequence) and records it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipeline.data.errors import DataError, Issues

# MOTChallenge gt.txt: frame, id, bb_left, bb_top, bb_width, bb_height, consider, class, visibility
GT_FIELDS = ("frame", "id", "bb_left", "bb_top", "bb_width", "bb_height", "consider", "class", "visibility")
# det.txt: frame, -1, bb_left, bb_top, bb_width, bb_height, score (then unused -1, -1, -1)
DET_FIELDS = ("frame", "id", "bb_left", "bb_top", "bb_width", "bb_height", "score")

MOT17_PEDESTRIAN = 1
# MOT17 classes that are ignore regions / distractors: person on vehicle, static person, distractor, reflection.
MOT17_DISTRACTORS = frozenset({2, 7, 8, 12})
MOT17_COPY = re.compile(r"^(?P<base>MOT\d\d-\d+)-(?P<detector>DPM|FRCNN|SDP)$")
BENCHMARKS = ("mot17", "dancetrack", "synthetic", "custom")


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


@dataclass
class SeqInfo:
    name: str
    im_dir: str
    frame_rate: float
    length: int
    width: int
    height: int
    im_ext: str
    path: Path
    lines: dict[str, int] = field(default_factory=dict)  # key → line number, for error messages


@dataclass
class FrameRecord:
    frame: int
    image_path: Path
    objects: list[GtRow] = field(default_factory=list)
    detections: list[DetRow] = field(default_factory=list)
    line: int | None = None  # the annotation line describing this frame (CrowdHuman's .odgt)


@dataclass
class Sequence:
    name: str
    width: int
    height: int
    frame_rate: float
    frames: list[FrameRecord]
    has_gt: bool
    det_sources: list[str]
    static: bool = False  # a set of still images (CrowdHuman), turned into clips by random shifts
    source: str = ""


def is_counted(benchmark: str, cls: int, consider: int) -> bool:
    """Whether a gt row is a target by the benchmark's rules; rows not counted keep an ignore flag.

    MOT17 (and custom data): class 1 with consider flag 1. DanceTrack and the synthetic
    benchmark: every row is class 1 and counts unless its consider flag is 0 (the generator
    marks almost wholly hidden targets that way).
    """
    if benchmark in ("mot17", "custom"):
        return cls == MOT17_PEDESTRIAN and consider == 1
    return consider == 1


def _number(text: str, kind: type, file: Path, line: int, name: str):
    try:
        value = float(text)
    except ValueError:
        raise DataError(file, line, name, f"not a number: {text.strip()!r}", kind="malformed_row") from None
    if not np.isfinite(value):
        raise DataError(file, line, name, f"not finite: {text.strip()!r}", kind="malformed_row")
    if kind is int:
        if value != int(value):
            raise DataError(file, line, name, f"not an integer: {text.strip()!r}", kind="malformed_row")
        return int(value)
    return value


def check_box(box, width: int, height: int, file: Path, line: int | None) -> None:
    """Zero/negative size or wholly outside the image is an error; partly outside is valid (MOT17)."""
    x, y, w, h = box
    if w <= 0:
        raise DataError(file, line, "bb_width", f"box width {w:g} is not positive", kind="bad_box")
    if h <= 0:
        raise DataError(file, line, "bb_height", f"box height {h:g} is not positive", kind="bad_box")
    if x + w <= 0 or y + h <= 0 or x >= width or y >= height:
        raise DataError(
            file,
            line,
            "bbox",
            f"box {x:g},{y:g},{w:g},{h:g} lies wholly outside the {width}x{height} image",
            kind="bad_box",
        )


def read_seqinfo(seq_dir: Path) -> SeqInfo:
    path = seq_dir / "seqinfo.ini"
    if not path.is_file():
        raise DataError(path, None, "seqinfo.ini", "missing (every sequence needs one)", kind="bad_seqinfo")
    values: dict[str, str] = {}
    lines: dict[str, int] = {}
    for number, raw in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        text = raw.strip()
        if not text or text.startswith(("[", ";", "#")):
            continue
        if "=" not in text:
            raise DataError(
                path, number, "seqinfo.ini", f"expected key=value, got {text!r}", kind="bad_seqinfo"
            )
        key, value = (part.strip() for part in text.split("=", 1))
        values[key] = value
        lines[key] = number

    def get(key: str, kind: type, default=None):
        if key not in values:
            if default is not None:
                return default
            raise DataError(path, None, key, "missing from seqinfo.ini", kind="bad_seqinfo")
        if kind is str:
            return values[key]
        try:
            value = _number(values[key], kind, path, lines[key], key)
        except DataError as error:
            error.kind = "bad_seqinfo"
            raise
        return value

    info = SeqInfo(
        name=get("name", str, seq_dir.name),
        im_dir=get("imDir", str, "img1"),
        frame_rate=float(get("frameRate", float, 30.0)),
        length=get("seqLength", int),
        width=get("imWidth", int),
        height=get("imHeight", int),
        im_ext=get("imExt", str, ".jpg"),
        path=path,
        lines=lines,
    )
    for key, value in (("imWidth", info.width), ("imHeight", info.height)):
        if value <= 0:
            raise DataError(path, lines.get(key), key, f"must be positive, got {value}", kind="bad_seqinfo")
    if info.length < 0:
        raise DataError(path, lines.get("seqLength"), "seqLength", "must not be negative", kind="bad_seqinfo")
    return info


def read_gt(path: Path, info: SeqInfo, benchmark: str, issues: Issues) -> list[GtRow]:
    """Parse gt.txt; bad rows raise (strict) or are skipped and recorded (lenient)."""
    rows: list[GtRow] = []
    seen: dict[tuple[int, int], int] = {}
    for number, raw in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = _parse_gt_row(raw, path, number, info, benchmark)
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


def _parse_gt_row(raw: str, path: Path, number: int, info: SeqInfo, benchmark: str) -> GtRow:
    parts = raw.split(",")
    if len(parts) < 7:
        raise DataError(
            path,
            number,
            "row",
            f"expected at least 7 comma-separated fields ({', '.join(GT_FIELDS)}), got {len(parts)}",
            kind="malformed_row",
        )
    frame = _number(parts[0], int, path, number, "frame")
    track_id = _number(parts[1], int, path, number, "id")
    box = tuple(_number(parts[i], float, path, number, GT_FIELDS[i]) for i in range(2, 6))
    consider = _number(parts[6], int, path, number, "consider")
    cls = _number(parts[7], int, path, number, "class") if len(parts) > 7 else 1
    visibility = _number(parts[8], float, path, number, "visibility") if len(parts) > 8 else 1.0
    if not 1 <= frame <= info.length:
        raise DataError(
            path, number, "frame", f"frame {frame} outside 1..seqLength={info.length}", kind="malformed_row"
        )
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
    check_box(box, info.width, info.height, path, number)
    return GtRow(
        frame, track_id, box, consider, cls, visibility, ignore=not is_counted(benchmark, cls, consider)
    )


def read_det(path: Path, info: SeqInfo, source: str, issues: Issues) -> list[DetRow]:
    """Parse a public-detection file (det.txt); same validation as gt rows."""
    rows: list[DetRow] = []
    for number, raw in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            parts = raw.split(",")
            if len(parts) < 7:
                raise DataError(
                    path,
                    number,
                    "row",
                    f"expected at least 7 fields ({', '.join(DET_FIELDS)}), got {len(parts)}",
                    kind="malformed_row",
                )
            frame = _number(parts[0], int, path, number, "frame")
            box = tuple(_number(parts[i], float, path, number, DET_FIELDS[i]) for i in range(2, 6))
            score = _number(parts[6], float, path, number, "score")
            if not 1 <= frame <= info.length:
                raise DataError(
                    path,
                    number,
                    "frame",
                    f"frame {frame} outside 1..seqLength={info.length}",
                    kind="malformed_row",
                )
            check_box(box, info.width, info.height, path, number)
            rows.append(DetRow(frame, box, score, source))
        except DataError as error:
            issues.report(error)
    return rows


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's SOF header, or None if the bytes are not a well-formed JPEG."""
    if len(data) < 4 or data[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > len(data):
                return None
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            return width, height
        pos += 2 + length
    return None


def check_image(data: bytes, path: Path, info: SeqInfo) -> None:
    """A frame's encoded bytes must decode and match seqinfo.ini's size."""
    if path.suffix.lower() in (".jpg", ".jpeg"):
        size = jpeg_size(data)
        # A JPEG ends with the EOI marker; a truncated file decodes to grey garbage without failing.
        if size is None or data.rstrip(b"\x00\r\n ")[-2:] != b"\xff\xd9":
            raise DataError(
                path, None, "image", "corrupt JPEG (bad header or truncated)", kind="corrupt_image"
            )
        # The reduced decode reads every entropy-coded block but costs a fraction of a full decode.
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)
        if decoded is None:
            raise DataError(path, None, "image", "corrupt JPEG (does not decode)", kind="corrupt_image")
    else:
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if decoded is None:
            raise DataError(path, None, "image", "image does not decode", kind="corrupt_image")
        size = (decoded.shape[1], decoded.shape[0])
    if size[0] != info.width:
        raise DataError(
            path,
            None,
            "imWidth",
            f"seqinfo.ini says imWidth={info.width}, the image is {size[0]} wide",
            kind="size_mismatch",
        )
    if size[1] != info.height:
        raise DataError(
            path,
            None,
            "imHeight",
            f"seqinfo.ini says imHeight={info.height}, the image is {size[1]} high",
            kind="size_mismatch",
        )


def list_frames(seq_dir: Path, info: SeqInfo, issues: Issues) -> dict[int, Path]:
    """Frame number → image path for 1..seqLength; missing frames and extra images are errors."""
    image_dir = seq_dir / info.im_dir
    if not image_dir.is_dir():
        raise DataError(
            image_dir,
            None,
            "imDir",
            f"image folder missing ({info.im_dir} per seqinfo.ini)",
            kind="empty_sequence",
        )
    present = {p.name for p in image_dir.iterdir() if p.suffix.lower() == info.im_ext.lower()}
    if info.length == 0 or not present:
        raise DataError(
            image_dir,
            None,
            "seqLength",
            f"empty sequence (seqLength={info.length}, {len(present)} images)",
            kind="empty_sequence",
        )
    frames: dict[int, Path] = {}
    for index in range(1, info.length + 1):
        name = f"{index:06d}{info.im_ext}"
        if name in present:
            frames[index] = image_dir / name
            present.discard(name)
        else:
            issues.report(
                DataError(
                    image_dir / name,
                    None,
                    "frame",
                    f"frame {index} missing from {info.im_dir}",
                    kind="missing_frame",
                )
            )
    if present:
        issues.report(
            DataError(
                info.path,
                info.lines.get("seqLength"),
                "seqLength",
                f"seqLength={info.length} but {info.im_dir} holds {len(present)} more image(s), e.g. {sorted(present)[0]}",
                kind="seqinfo_mismatch",
            )
        )
    if not frames:
        raise DataError(image_dir, None, "frame", "no frame of the sequence is usable", kind="empty_sequence")
    return frames


def read_sequence(
    seq_dir: Path,
    benchmark: str,
    issues: Issues,
    det_dirs: dict[str, Path] | None = None,
    name: str | None = None,
) -> Sequence:
    """Read one MOTChallenge sequence (annotations only; image bytes are read by the converter).

    `det_dirs` maps a public-detector name to the sequence folder holding its det/det.txt (MOT17's
    three copies); by default the sequence's own det/det.txt is source "det".
    """
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; expected one of {BENCHMARKS}")
    info = read_seqinfo(seq_dir)
    frames = list_frames(seq_dir, info, issues)
    records = {index: FrameRecord(index, path) for index, path in frames.items()}
    gt_path = seq_dir / "gt" / "gt.txt"
    has_gt = gt_path.is_file()
    if has_gt:
        for row in read_gt(gt_path, info, benchmark, issues):
            if row.frame in records:
                records[row.frame].objects.append(row)
            else:
                issues.report(
                    DataError(
                        gt_path,
                        None,
                        "frame",
                        f"gt row of frame {row.frame} dropped with its missing image",
                        kind="orphan_row",
                    )
                )
    det_sources = []
    for source, folder in (det_dirs or {"det": seq_dir}).items():
        det_path = folder / "det" / "det.txt"
        if not det_path.is_file():
            continue
        det_sources.append(source)
        for row in read_det(det_path, info, source, issues):
            if row.frame in records:
                records[row.frame].detections.append(row)
    for record in records.values():
        record.objects.sort(key=lambda r: r.track_id)
    return Sequence(
        name=name or seq_dir.name,
        width=info.width,
        height=info.height,
        frame_rate=info.frame_rate,
        frames=[records[i] for i in sorted(records)],
        has_gt=has_gt,
        det_sources=det_sources,
        source=str(seq_dir),
    )


def find_split_dir(root: Path, split: str) -> Path:
    """`<root>/<split>` (DanceTrack, MOT17, the synthetic layout)."""
    folder = Path(root) / split
    if not folder.is_dir():
        raise DataError(folder, None, "split", f"no {split!r} folder under {root}", kind="missing_split")
    return folder


def read_split(root: Path, split: str, benchmark: str, issues: Issues) -> list[Sequence]:
    """Every sequence of `<root>/<split>`, sorted by name; MOT17's detector copies merged into one.

    A sequence that cannot be read at all is skipped in lenient mode and recorded.
    """
    folder = find_split_dir(root, split)
    seq_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    groups: dict[str, dict[str, Path]] = defaultdict(dict)
    for seq_dir in seq_dirs:
        match = MOT17_COPY.match(seq_dir.name) if benchmark == "mot17" else None
        if match:
            groups[match["base"]][match["detector"]] = seq_dir
        else:
            groups[seq_dir.name]["det"] = seq_dir
    sequences = []
    for name in sorted(groups):
        copies = dict(sorted(groups[name].items()))
        try:
            primary = _check_copies(copies)
            sequences.append(read_sequence(primary, benchmark, issues, det_dirs=copies, name=name))
        except DataError as error:
            issues.report(error)
    if not sequences:
        raise DataError(folder, None, "split", "no usable sequence", kind="empty_split")
    return sequences


def _check_copies(copies: dict[str, Path]) -> Path:
    """MOT17's -DPM/-FRCNN/-SDP copies must agree on images and gt; the first copy supplies both."""
    dirs = list(copies.values())
    primary = dirs[0]
    if len(dirs) == 1:
        return primary
    info = read_seqinfo(primary)
    gt = primary / "gt" / "gt.txt"
    gt_bytes = gt.read_bytes() if gt.is_file() else None
    for other in dirs[1:]:
        other_info = read_seqinfo(other)
        for key, mine, theirs in (
            ("seqLength", info.length, other_info.length),
            ("imWidth", info.width, other_info.width),
            ("imHeight", info.height, other_info.height),
        ):
            if mine != theirs:
                raise DataError(
                    other_info.path,
                    other_info.lines.get(key),
                    key,
                    f"{theirs} differs from {primary.name}'s {mine}",
                    kind="copy_mismatch",
                )
        other_gt = other / "gt" / "gt.txt"
        if gt_bytes is not None and other_gt.is_file() and other_gt.read_bytes() != gt_bytes:
            raise DataError(
                other_gt,
                None,
                "gt",
                f"differs from {gt} (the detector copies must share ground truth)",
                kind="copy_mismatch",
            )
    return primary
