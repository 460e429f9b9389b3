"""Detection files made elsewhere (YOLOX, Sparse R-CNN, MOT17's DPM/FRCNN/SDP), read against a converted split.

Formats: a MOTRv2-style JSON db (`{"<dataset>/<split>/<seq>/img1/<frame>.txt": ["x,y,w,h,score\\n", ...]}`)
and MOTChallenge `det/det.txt` files in a split folder. Every box is checked against the frames the
converted dataset holds (`index`: a `pipeline.data.reader.FrameIndex`); an unknown sequence or frame,
or a malformed entry, is a `DataError` naming the file, the line or key, and the field.
Boxes come back as x1, y1, x2, y2 pixels of the original image with their scores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.formats.errors import DataError
from pipeline.formats.motchallenge import (
    check_box,
    mot17_copy,
    parse_det_row,
    parse_values,
    read_text,
    text_lines,
)

# (sequence, frame) → (boxes [K, 4] float32 xyxy pixels, scores [K] float32)
Detections = dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]
# The same with each box's class: + labels [K] int64, training labels (`dataset.classes` order).
LabelledDetections = dict[tuple[str, int], tuple[np.ndarray, np.ndarray, np.ndarray]]


def with_labels(dets: Detections | LabelledDetections) -> LabelledDetections:
    """`dets` with a label per box: those given kept, else 0 (a source of one class, e.g. det.txt)."""
    return {
        key: (value[0], value[1], value[2] if len(value) > 2 else np.zeros(len(value[1]), np.int64))
        for key, value in dets.items()
    }


JSON_FIELDS = ("bb_left", "bb_top", "bb_width", "bb_height", "score")


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1).astype(np.float32)


def _append(result: dict, key: tuple[str, int], box_xyxy, score: float) -> None:
    result.setdefault(key, ([], []))
    result[key][0].append(box_xyxy)
    result[key][1].append(score)


def _finish(lists: dict) -> Detections:
    return {
        key: (np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(scores, dtype=np.float32))
        for key, (boxes, scores) in lists.items()
    }


def _check_wh(w: float, h: float, file, line, field: str) -> None:
    if w <= 0 or h <= 0:
        raise DataError(file, line, field, f"box width/height {w:g}x{h:g} is not positive", kind="bad_box")


def _unique_keys(path: Path):
    """A JSON object hook: a key given twice is an error (json keeps the last one silently)."""

    def hook(pairs):
        result = {}
        for key, value in pairs:
            if key in result:
                raise DataError(path, None, f"key {key!r}", "given twice", kind="malformed_row")
            result[key] = value
        return result

    return hook


# Long by design: one pass over the db with each check inline, so every error names its key.
def read_json_db(
    path: str | Path, index, key_prefix: str | None = None, det_source: str | None = None
) -> tuple[Detections, int]:
    """A MOTRv2-style detection db: `{"<dataset>/<split>/<seq>/img1/<frame>.txt": ["x,y,w,h,score\\n", ...]}`.

    Keys name a sequence folder and a zero-padded frame (`DanceTrack/train/dancetrack0001/img1/00000001.txt`);
    CrowdHuman keys (`crowdhuman/train_image/<ID>.txt`) match a static sequence's image by its ID.
    With `key_prefix`, keys outside it (other splits) are skipped and counted, as are MOT17 copies of
    another detector than `det_source`. Returns (detections,
    skipped key count); an unknown sequence/frame or a malformed entry is a `DataError` naming the key.
    """
    path = Path(path)
    try:
        db = json.loads(read_text(path), object_pairs_hook=_unique_keys(path))
    except json.JSONDecodeError as error:
        raise DataError(
            path, error.lineno, "json", f"not valid JSON: {error.msg}", kind="malformed_row"
        ) from None
    except DataError:
        raise
    except (ValueError, RecursionError) as error:  # an integer of > 4300 digits, nesting too deep
        raise DataError(path, None, "json", f"not readable JSON: {error}", kind="malformed_row") from None
    if not isinstance(db, dict):
        raise DataError(
            path,
            None,
            "json",
            f"expected an object of key → list of 'x,y,w,h,score' strings, got {type(db).__name__}",
            kind="malformed_row",
        )
    lists: dict = {}
    skipped = 0
    for key in sorted(db):
        if key_prefix is not None and not key.startswith(key_prefix):
            skipped += 1
            continue
        field = f"key {key!r}"
        parts = key.replace("\\", "/").split("/")
        stem = parts[-1].rsplit(".", 1)[0]
        if stem in index.image_stems:
            sequence, frame = index.image_stems[stem]
        else:
            if len(parts) < 3 or not (stem.isascii() and stem.isdigit()):
                raise DataError(
                    path,
                    None,
                    field,
                    "expected '<...>/<sequence>/<image folder>/<frame number>.txt'",
                    kind="malformed_row",
                )
            sequence, frame = parts[-3], int(stem)
            # MOT17 keys name a detector copy (MOT17-02-SDP); the converted sequence is MOT17-02.
            copy = mot17_copy(sequence)
            if sequence not in index.frames and copy and copy[0] in index.frames:
                if det_source is None:
                    raise DataError(
                        path,
                        None,
                        field,
                        f"{sequence} is one of MOT17's detector copies: set det_source to DPM, FRCNN or SDP",
                        kind="bad_params",
                    )
                if copy[1] != det_source:
                    skipped += 1
                    continue
                sequence = copy[0]
        index.check(sequence, frame, path, None, field)
        entries = db[key]
        if not isinstance(entries, list):
            raise DataError(
                path,
                None,
                field,
                f"expected a list of 'x,y,w,h,score' strings, got {type(entries).__name__}",
                kind="malformed_row",
            )
        lists.setdefault((sequence, frame), ([], []))
        for i, entry in enumerate(entries):
            if not isinstance(entry, str):
                raise DataError(
                    path,
                    None,
                    f"{field}[{i}]",
                    f"expected an 'x,y,w,h,score' string, got {entry!r}",
                    kind="malformed_row",
                )
            x, y, w, h, score = parse_values(entry, path, None, JSON_FIELDS, 5, field_name=f"{field}[{i}]")
            _check_wh(w, h, path, None, f"{field}[{i}]")
            _append(lists, (sequence, frame), (x, y, x + w, y + h), score)
    return _finish(lists), skipped


def read_det_txt(path: str | Path, sequence: str, index) -> Detections:
    """One MOTChallenge det.txt (`frame, -1, x, y, w, h, score, ...`) for `sequence`; errors name file:line.

    Rows are parsed and boxes checked as the converter does (`parse_det_row`, `check_box` against
    the sequence's image size), so a det.txt is accepted by both or by neither.
    """
    path = Path(path)
    width, height = index.sizes.get(sequence, (0, 0))
    lists: dict = {}
    for number, text in text_lines(path):
        frame, (x, y, w, h), score = parse_det_row(text, path, number)
        index.check(sequence, frame, path, number, "frame")
        check_box((x, y, w, h), width, height, path, number)
        _append(lists, (sequence, frame), (x, y, x + w, y + h), score)
    return _finish(lists)


def read_motchallenge_dets(
    root: str | Path,
    index,
    det_file: str = "det/det.txt",
    det_source: str | None = None,
    skipped: list[str] | None = None,
) -> Detections:
    """`<root>/<sequence>/<det_file>` for each sequence folder under `root` (a MOTChallenge split folder).

    MOT17's copies (`MOT17-02-DPM/-FRCNN/-SDP`) map to the converted `MOT17-02`; `det_source` picks
    which detector's file is read. A folder naming no converted sequence, a `det_file` that is not
    a file or a link that leads nowhere is a `DataError`; what is passed over (a folder without
    `det_file`, another detector's copy, a plain file) is appended to `skipped` ("path: why").
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            root, None, "path", "not a folder (expected <split>/<sequence>/det/det.txt)", kind="missing_split"
        )
    skipped = [] if skipped is None else skipped
    result: Detections = {}
    for folder in sorted(p for p in root.iterdir() if not p.name.startswith(".")):
        if not folder.is_dir():
            if folder.is_symlink():  # broken or a loop: is_dir() alone would skip it unseen
                raise DataError(folder, None, "path", "symbolic link that leads nowhere", kind="bad_link")
            skipped.append(f"{folder}: not a folder")
            continue
        file = folder / det_file
        if not file.is_file():
            if file.is_symlink() or file.exists():
                raise DataError(file, None, "det_file", "not a readable file", kind="unreadable")
            skipped.append(f"{folder}: no {det_file}")
            continue
        sequence = folder.name
        copy = mot17_copy(sequence)
        if copy and sequence not in index.frames:
            if det_source is None:
                raise DataError(
                    file,
                    None,
                    "det_source",
                    f"{folder.name} is one of MOT17's detector copies: set det_source to DPM, FRCNN or SDP",
                    kind="bad_params",
                )
            if copy[1] != det_source:
                skipped.append(f"{file}: detector {copy[1]}, not det_source {det_source}")
                continue
            sequence = copy[0]
        if sequence not in index.frames:
            index.check(sequence, 0, file, None, "sequence")
        result.update(read_det_txt(file, sequence, index))
    return result
