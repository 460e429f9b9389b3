"""CrowdHuman reader: `annotation_<split>.odgt` (one JSON object per line) + `Images/<ID>.jpg`.

Each split becomes one static "sequence" of still images (frames numbered in ID order), which the
clip loader turns into clips by random shifts, as MOTR/MOTRv2 do for joint training on MOT17.
Boxes: the `fbox` (full body) of `person` tags; `extra.ignore` → ignore flag; visibility is the
visible box's (`vbox`) share of the full box. Other tags (`mask`: crowd regions) are not persons
and are not read.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from pipeline.data.sequences import FrameRecord, Sequence
from pipeline.formats.errors import DataError, Issues
from pipeline.formats.motchallenge import GtRow

IMAGE_FOLDERS = ("Images", "images")


def find_image(root: Path, split: str, image_id: str) -> Path | None:
    for folder in (root, root / split, root / f"CrowdHuman_{split}"):
        for name in IMAGE_FOLDERS:
            path = folder / name / f"{image_id}.jpg"
            if path.is_file():
                return path
    return None


def _number(value) -> float | None:
    """A JSON number as a finite float, or None (booleans, strings, NaN, inf, ints beyond float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def _box(value, path: Path, line: int, field: str, empty_ok: bool = False) -> tuple[float, ...]:
    """`[x, y, w, h]` of four finite numbers; w, h > 0 (`empty_ok`: ≥ 0, a wholly hidden vbox)."""
    numbers = [_number(v) for v in value] if isinstance(value, list) else []
    if len(numbers) != 4 or None in numbers:
        raise DataError(
            path,
            line,
            field,
            f"expected [x, y, w, h] of finite numbers, got {value!r:.80}",
            kind="malformed_row",
        )
    x, y, w, h = numbers
    if min(w, h) < 0 or (not empty_ok and min(w, h) == 0):
        raise DataError(path, line, field, f"box {numbers} has no area", kind="bad_box")
    return x, y, w, h


def _visibility(fbox, vbox) -> float:
    if vbox is None:
        return 1.0
    x1, y1 = max(fbox[0], vbox[0]), max(fbox[1], vbox[1])
    x2, y2 = min(fbox[0] + fbox[2], vbox[0] + vbox[2]), min(fbox[1] + fbox[3], vbox[1] + vbox[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    share = inter / (fbox[2] * fbox[3])
    # Extreme (finite) coordinates overflow to inf/nan here; a share outside [0, 1] is clamped.
    return round(min(1.0, share), 6) if math.isfinite(share) else 1.0


def _lines(path: Path) -> list[tuple[int, bytes]]:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(
            path, None, "annotation", f"unreadable: {error.strerror}", kind="unreadable"
        ) from None
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark
        data = data[3:]
    return [(number, raw) for number, raw in enumerate(data.splitlines(), start=1) if raw.strip()]


def _entry(raw: bytes, path: Path, number: int, root: Path, split: str) -> tuple[str, Path, dict]:
    """One .odgt line → (ID, image path, the JSON object); each line is decoded on its own, so one bad
    line is one skipped image in lenient mode."""
    try:
        entry = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise DataError(
            path, number, "json", f"not UTF-8 text (byte {error.start})", kind="malformed_row"
        ) from None
    except json.JSONDecodeError as error:
        raise DataError(path, number, "json", f"not valid JSON: {error.msg}", kind="malformed_row") from None
    except (ValueError, RecursionError) as error:  # an integer of > 4300 digits, nesting too deep
        raise DataError(path, number, "json", f"not readable JSON: {error}", kind="malformed_row") from None
    if not isinstance(entry, dict):
        raise DataError(
            path, number, "json", f"expected an object, got {type(entry).__name__}", kind="malformed_row"
        )
    image_id = entry.get("ID")
    # The ID names a file: no path separators, no NUL, no leading dot (".." would leave Images/).
    if (
        not isinstance(image_id, str)
        or not image_id
        or image_id.startswith(".")
        or any(c in image_id for c in "/\\\0")
    ):
        raise DataError(
            path, number, "ID", f"expected an image name, got {image_id!r:.80}", kind="malformed_row"
        )
    image = find_image(root, split, image_id)
    if image is None:
        raise DataError(
            path, number, "ID", f"no image {image_id}.jpg under {root}/Images", kind="missing_frame"
        )
    if not isinstance(entry.get("gtboxes", []), list):
        raise DataError(
            path,
            number,
            "gtboxes",
            f"expected a list, got {type(entry['gtboxes']).__name__}",
            kind="malformed_row",
        )
    return image_id, image, entry


def _person(box, path: Path, number: int, field: str) -> tuple[tuple[float, ...], float, bool] | None:
    """A `gtboxes` item → (fbox, visibility, ignore); None for a tag that is not `person`."""
    if not isinstance(box, dict):
        raise DataError(
            path, number, field, f"expected an object, got {type(box).__name__}", kind="malformed_row"
        )
    if box.get("tag") != "person":
        return None
    fbox = _box(box.get("fbox"), path, number, f"{field}.fbox")
    vbox = box.get("vbox")
    vbox = None if vbox is None else _box(vbox, path, number, f"{field}.vbox", empty_ok=True)
    extra = box.get("extra", {})
    if extra is None:
        extra = {}
    if not isinstance(extra, dict):
        raise DataError(
            path,
            number,
            f"{field}.extra",
            f"expected an object, got {type(extra).__name__}",
            kind="malformed_row",
        )
    ignore = extra.get("ignore", 0)
    if isinstance(ignore, bool) or ignore not in (0, 1):
        raise DataError(
            path,
            number,
            f"{field}.extra.ignore",
            f"expected 0 or 1, got {ignore!r:.80}",
            kind="malformed_row",
        )
    return fbox, _visibility(fbox, vbox), bool(ignore)


def read_crowdhuman(root: str | Path, split: str, issues: Issues) -> Sequence:
    """The images of `annotation_<split>.odgt` as one static sequence named `crowdhuman-<split>`.

    Every problem is a `DataError` naming the line and field (`ID`, `gtboxes[3].fbox`, ...): a bad
    line or image skips the image, a bad box the box (lenient), each recorded. Boxes are checked
    against each image's size later, by the converter (it reads the image).
    """
    root = Path(root)
    path = root / f"annotation_{split}.odgt"
    if not path.is_file():
        raise DataError(
            path,
            None,
            "annotation",
            f"missing (expected CrowdHuman's annotation_{split}.odgt)",
            kind="missing_split",
        )
    parsed: dict[str, tuple[int, Path, list]] = {}
    for number, raw in _lines(path):
        try:
            image_id, image, entry = _entry(raw, path, number, root, split)
            if image_id in parsed:
                raise DataError(
                    path,
                    number,
                    "ID",
                    f"{image_id} given twice (first on line {parsed[image_id][0]})",
                    kind="duplicate_id",
                )
            persons = []
            for box_index, box in enumerate(entry.get("gtboxes") or []):
                field = f"gtboxes[{box_index}]"
                try:
                    person = _person(box, path, number, field)
                    if person is not None:
                        persons.append((field, *person))
                except DataError as error:
                    issues.report(error)
            parsed[image_id] = (number, image, persons)
        except DataError as error:
            issues.report(error)
    if not parsed:
        raise DataError(path, None, "ID", "no usable image", kind="empty_sequence")
    frames = []
    next_id = 1
    for frame_index, image_id in enumerate(sorted(parsed), start=1):
        number, image, persons = parsed[image_id]
        record = FrameRecord(frame_index, image, line=number)
        for field, fbox, visibility, ignore in persons:
            record.objects.append(
                GtRow(frame_index, next_id, fbox, 0 if ignore else 1, 1, visibility, ignore)
            )
            record.fields.append(f"{field}.fbox")
            next_id += 1
        frames.append(record)
    return Sequence(
        name=f"crowdhuman-{split}",
        width=0,
        height=0,
        frame_rate=0.0,
        frames=frames,
        has_gt=True,
        det_sources=[],
        static=True,
        source=str(path),
    )
