"""The MOTChallenge folder layout (MOT17, DanceTrack, the synthetic benchmark, custom data) → `Sequence`s.

A sequence folder holds `seqinfo.ini`, `img1/000001.jpg …`, optionally `gt/gt.txt` and
`det/det.txt` (files parsed by `pipeline.formats.motchallenge`). Every problem found is a
`DataError` naming file, line and field, handed to an `Issues` policy: strict raises, lenient
skips the item (row, frame or sequence) and records it.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from pathlib import Path

from pipeline.formats.errors import DataError, Issues
from pipeline.formats.motchallenge import (
    BENCHMARKS,
    DetRow,
    GtRow,
    SeqInfo,
    mot17_copy,
    read_det_rows,
    read_gt_rows,
    read_seqinfo,
)

DEFAULT_FRAME_RATE = 30.0
SEQINFO_REQUIRED = ("seqLength", "imWidth", "imHeight")


def read_sequence_info(seq_dir: Path) -> SeqInfo:
    """`<seq_dir>/seqinfo.ini` with the image size the converter needs."""
    return read_seqinfo(seq_dir / "seqinfo.ini", required=SEQINFO_REQUIRED)


@dataclass
class FrameRecord:
    frame: int
    image_path: Path
    objects: list[GtRow] = field(default_factory=list)
    detections: list[DetRow] = field(default_factory=list)
    line: int | None = None  # the annotation line describing this frame (CrowdHuman's .odgt)
    fields: list[str] = field(default_factory=list)  # per object, its field on that line (CrowdHuman)


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
    frame_offset: int = 0  # source frame = frame + frame_offset (the val half of a split: `take_half`)


def unresolved_link(path: Path) -> str | None:
    """Why a symbolic link leads nowhere (broken, a loop), or None for anything else."""
    if not path.is_symlink():
        return None
    try:
        os.stat(path)
    except OSError as error:
        return f"symbolic link that leads nowhere ({error.strerror})"
    return None


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
    try:
        names = sorted(p.name for p in image_dir.iterdir())
    except OSError as error:
        raise DataError(
            image_dir, None, "imDir", f"unreadable: {error.strerror}", kind="unreadable"
        ) from None
    # Suffixes compare case-insensitively (000001.JPG matches imExt=.jpg); lower name → actual name.
    present = {name.lower(): name for name in names if Path(name).suffix.lower() == info.im_ext.lower()}
    if not present and info.length > 0 and names:
        others = sorted({Path(name).suffix or name for name in names})
        raise DataError(
            info.path,
            info.lines.get("imExt"),
            "imExt",
            f"imExt={info.im_ext} but {info.im_dir} holds no {info.im_ext} file "
            f"({len(names)} other entries: {', '.join(others[:5])}{' …' if len(others) > 5 else ''})",
            kind="seqinfo_mismatch",
        )
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
        if name.lower() in present:
            frames[index] = image_dir / present.pop(name.lower())
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
                f"seqLength={info.length} but {info.im_dir} holds {len(present)} more image(s), e.g. {sorted(present.values())[0]}",
                kind="seqinfo_mismatch",
            )
        )
    others = [
        name
        for name in names
        if Path(name).suffix.lower() != info.im_ext.lower() and not name.startswith(".")
    ]
    if others:  # not frames (Thumbs.db, a copy in another format): passed over, but named
        issues.note(
            DataError(
                image_dir / others[0],
                None,
                "imExt",
                f"{len(others)} entr{'y' if len(others) == 1 else 'ies'} of {info.im_dir} not {info.im_ext} images, passed over",
                kind="not_a_frame",
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
    classes: Collection[int] | None = None,
) -> Sequence:
    """Read one MOTChallenge sequence (annotations only; image bytes are read by the converter).

    `det_dirs` maps a public-detector name to the sequence folder holding its det/det.txt (MOT17's
    three copies); by default the sequence's own det/det.txt is source "det". `classes`: custom
    data's gt class ids (`dataset.classes`), rows of other classes ignored.
    """
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; expected one of {BENCHMARKS}")
    info = read_sequence_info(seq_dir)
    frames = list_frames(seq_dir, info, issues)
    records = {index: FrameRecord(index, path) for index, path in frames.items()}
    gt_path = seq_dir / "gt" / "gt.txt"
    has_gt = gt_path.is_file()
    if not has_gt and (gt_path.exists() or gt_path.is_symlink()):
        # A folder or a dead link named gt.txt: converting the sequence as unlabelled would hide it.
        raise DataError(gt_path, None, "gt", "not a readable file", kind="unreadable")
    if has_gt:
        for row in read_gt_rows(gt_path, info, benchmark, issues, classes):
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
            if det_path.exists() or det_path.is_symlink():
                issues.report(DataError(det_path, None, "det", "not a readable file", kind="unreadable"))
            continue
        det_sources.append(source)
        for row in read_det_rows(det_path, info, source, issues):
            if row.frame in records:
                records[row.frame].detections.append(row)
            else:
                issues.report(
                    DataError(
                        det_path,
                        None,
                        "frame",
                        f"detection of frame {row.frame} dropped with its missing image",
                        kind="orphan_row",
                    )
                )
    for record in records.values():
        record.objects.sort(key=lambda r: r.track_id)
    return Sequence(
        name=name or seq_dir.name,
        width=info.width,
        height=info.height,
        frame_rate=info.frame_rate or DEFAULT_FRAME_RATE,
        frames=[records[i] for i in sorted(records)],
        has_gt=has_gt,
        det_sources=det_sources,
        source=str(seq_dir),
    )


HALVES = ("train", "val")


def half_cut(length: int) -> int:
    """The last frame of a sequence's train half: ⌊length/2⌋ + 1 (CenterTrack/ByteTrack's MOT17 split).

    MOT17-02 (600 frames): train frames 1..301, val frames 302..600 (299 frames).
    """
    return length // 2 + 1


def take_half(sequence: Sequence, half: str) -> Sequence:
    """The train half (frames 1..cut) or the val half (cut+1..seqLength) of a video sequence.

    `cut = half_cut(seqLength)`. The val half is renumbered from 1 (frames, gt and det rows alike;
    `frame_offset = cut`), as ByteTrack's `gt_val_half.txt`, so its results files, gt and seqLength
    agree; every frame keeps its original image file.
    """
    if half not in HALVES:
        raise ValueError(f"unknown half {half!r}; expected one of {HALVES}")
    info = read_sequence_info(Path(sequence.source))
    cut = half_cut(info.length)
    if half == "val" and info.length <= cut:
        raise DataError(
            info.path,
            info.lines.get("seqLength"),
            "seqLength",
            f"seqLength={info.length} is too short to cut in halves (the val half would be empty)",
            kind="empty_sequence",
        )
    offset = cut if half == "val" else 0
    frames = [
        FrameRecord(
            record.frame - offset,
            record.image_path,
            [replace(row, frame=row.frame - offset) for row in record.objects],
            [replace(row, frame=row.frame - offset) for row in record.detections],
        )
        for record in sequence.frames
        if (record.frame > cut) == (half == "val")
    ]
    return replace(sequence, frames=frames, frame_offset=offset)


def find_split_dir(root: Path, split: str) -> Path:
    """`<root>/<split>` (DanceTrack, MOT17, the synthetic layout)."""
    folder = Path(root) / split
    if not folder.is_dir():
        raise DataError(folder, None, "split", f"no {split!r} folder under {root}", kind="missing_split")
    return folder


def read_split(
    root: Path, split: str, benchmark: str, issues: Issues, classes: Collection[int] | None = None
) -> list[Sequence]:
    """Every sequence of `<root>/<split>`, sorted by name; MOT17's detector copies merged into one.

    `classes`: the gt class ids that are targets (custom data's `dataset.classes`; None: class 1).

    A sequence that cannot be read at all, or a link that leads nowhere, is skipped in lenient
    mode and recorded; a plain file is recorded as passed over (`not_a_sequence`) in either mode.
    Hidden entries (`.name`) are not looked at.
    """
    folder = find_split_dir(root, split)
    seq_dirs = []
    for path in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
        if path.is_dir():
            seq_dirs.append(path)
        elif reason := unresolved_link(path):
            issues.report(DataError(path, None, "sequence", reason, kind="bad_link"))
        else:
            issues.note(
                DataError(path, None, "sequence", "a file, not a sequence folder", kind="not_a_sequence")
            )
    groups: dict[str, dict[str, Path]] = defaultdict(dict)
    for seq_dir in seq_dirs:
        copy = mot17_copy(seq_dir.name) if benchmark == "mot17" else None
        if copy:
            groups[copy[0]][copy[1]] = seq_dir
        else:
            groups[seq_dir.name]["det"] = seq_dir
    sequences = []
    for name in sorted(groups):
        copies = dict(sorted(groups[name].items()))
        try:
            primary = _check_copies(copies)
            sequences.append(
                read_sequence(primary, benchmark, issues, det_dirs=copies, name=name, classes=classes)
            )
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
    info = read_sequence_info(primary)
    gt = primary / "gt" / "gt.txt"
    gt_bytes = gt.read_bytes() if gt.is_file() else None
    for other in dirs[1:]:
        other_info = read_sequence_info(other)
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
        if (gt_bytes is None) != (not other_gt.is_file()):
            raise DataError(
                other_gt,
                None,
                "gt",
                f"{'missing' if gt_bytes is not None else 'present'} here but not in {primary.name}",
                kind="copy_mismatch",
            )
        if gt_bytes is not None and other_gt.read_bytes() != gt_bytes:
            raise DataError(
                other_gt,
                None,
                "gt",
                f"differs from {gt} (the detector copies must share ground truth)",
                kind="copy_mismatch",
            )
    return primary
