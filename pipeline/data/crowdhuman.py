"""CrowdHuman reader: `annotation_<split>.odgt` (one JSON object per line) + `Images/<ID>.jpg`.

Each split becomes one static "sequence" of still images (frames numbered in ID order), which the
clip loader turns into clips by random shifts, as MOTR/MOTRv2 do for joint training on MOT17.
Boxes: the `fbox` (full body) of `person` tags; `extra.ignore` → ignore flag; visibility is the
visible box's (`vbox`) share of the full box. Other tags (`mask`: crowd regions) are not persons
and are not read.
"""

from __future__ import annotations

import json
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


def _visibility(fbox, vbox) -> float:
    if not vbox:
        return 1.0
    x1, y1 = max(fbox[0], vbox[0]), max(fbox[1], vbox[1])
    x2, y2 = min(fbox[0] + fbox[2], vbox[0] + vbox[2]), min(fbox[1] + fbox[3], vbox[1] + vbox[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return round(min(1.0, inter / (fbox[2] * fbox[3])), 6)


# Long by design: one pass over the .odgt with each check inline, so every error names its line.
def read_crowdhuman(root: str | Path, split: str, issues: Issues) -> Sequence:
    """The images of `annotation_<split>.odgt` as one static sequence named `crowdhuman-<split>`.

    Boxes are checked against each image's size later, by the converter (it reads the JPEG).
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
    entries = []
    for number, raw in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            try:
                entry = json.loads(raw)
            except json.JSONDecodeError as error:
                raise DataError(
                    path, number, "json", f"not valid JSON: {error.msg}", kind="malformed_row"
                ) from None
            if not isinstance(entry, dict) or not isinstance(entry.get("ID"), str):
                raise DataError(path, number, "ID", "each line needs a string ID", kind="malformed_row")
            image = find_image(root, split, entry["ID"])
            if image is None:
                raise DataError(
                    path,
                    number,
                    "ID",
                    f"no image {entry['ID']}.jpg under {root}/Images",
                    kind="missing_frame",
                )
            entries.append((entry["ID"], number, entry, image))
        except DataError as error:
            issues.report(error)
    if not entries:
        raise DataError(path, None, "ID", "no usable image", kind="empty_sequence")
    entries.sort(key=lambda item: item[0])
    frames = []
    next_id = 1
    for frame_index, (_, number, entry, image) in enumerate(entries, start=1):
        record = FrameRecord(frame_index, image, line=number)
        for box_index, box in enumerate(entry.get("gtboxes") or []):
            field = f"gtboxes[{box_index}]"
            if box.get("tag") != "person":
                continue
            try:
                fbox = box.get("fbox")
                if not (
                    isinstance(fbox, list)
                    and len(fbox) == 4
                    and all(isinstance(v, (int, float)) for v in fbox)
                ):
                    raise DataError(
                        path,
                        number,
                        f"{field}.fbox",
                        f"expected [x, y, w, h], got {fbox!r}",
                        kind="malformed_row",
                    )
                if fbox[2] <= 0 or fbox[3] <= 0:
                    raise DataError(path, number, f"{field}.fbox", f"box {fbox} has no area", kind="bad_box")
                ignore = bool((box.get("extra") or {}).get("ignore", 0))
                vis = _visibility(fbox, box.get("vbox"))
                record.objects.append(
                    GtRow(
                        frame_index,
                        next_id,
                        tuple(float(v) for v in fbox),
                        0 if ignore else 1,
                        1,
                        vis,
                        ignore,
                    )
                )
                next_id += 1
            except DataError as error:
                issues.report(error)
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
