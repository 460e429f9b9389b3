"""`seqinfo.ini` of a MOTChallenge sequence, read and written in one place (`pipeline.formats.motchallenge`
re-exports it with the other MOTChallenge files)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.formats.errors import DataError
from pipeline.formats.text import text_lines
from pipeline.paths import atomic_path


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
    path: Path | None = None
    lines: dict[str, int] = field(default_factory=dict, compare=False)  # key → line, for error messages


def read_seqinfo(path: str | Path, required: tuple[str, ...] = ("seqLength",)) -> SeqInfo:
    """Parse `seqinfo.ini` (key=value lines; section headers and comments skipped).

    `required` keys must be present (the converter also needs imWidth/imHeight); sizes and the
    frame rate must be positive, seqLength not negative; a key given twice is an error. `imDir`
    is a relative folder (Windows `\\` separators read as `/`), `imExt` a suffix such as `.jpg`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "seqinfo.ini", "missing (every sequence needs one)", kind="bad_seqinfo")
    values: dict[str, str] = {}
    lines: dict[str, int] = {}
    for number, text in text_lines(path):
        if text.startswith(("[", ";", "#")):
            continue
        if "=" not in text:
            raise DataError(
                path, number, "seqinfo.ini", f"expected key=value, got {text!r}", kind="bad_seqinfo"
            )
        key, value = (part.strip() for part in text.split("=", 1))
        if key in values:
            raise DataError(
                path, number, key, f"given twice (first on line {lines[key]})", kind="bad_seqinfo"
            )
        values[key], lines[key] = value, number
    for key in required:
        if key not in values:
            raise DataError(path, None, key, "missing from seqinfo.ini", kind="bad_seqinfo")

    def number(key: str, kind: type, minimum: float):
        if key not in values:
            return None
        try:
            value = float(values[key])
        except ValueError:
            raise DataError(
                path, lines[key], key, f"not a number: {values[key]!r}", kind="bad_seqinfo"
            ) from None
        if kind is int and value != int(value):
            raise DataError(path, lines[key], key, f"not an integer: {values[key]!r}", kind="bad_seqinfo")
        if not math.isfinite(value) or value < minimum:
            bound = "must not be negative" if minimum == 0 else "must be positive"
            raise DataError(path, lines[key], key, f"{bound}, got {values[key]}", kind="bad_seqinfo")
        return kind(value)

    # Every reader gets the same folder: Windows separators normalised here, once.
    im_dir = values.get("imDir", "img1").replace("\\", "/").rstrip("/")
    if not im_dir or im_dir.startswith("/") or ".." in im_dir.split("/") or ":" in im_dir or "\0" in im_dir:
        raise DataError(
            path,
            lines.get("imDir"),
            "imDir",
            f"expected a folder inside the sequence folder (such as img1), got {values.get('imDir')!r}",
            kind="bad_seqinfo",
        )
    im_ext = values.get("imExt", ".jpg")
    if not re.fullmatch(r"\.[A-Za-z0-9]+", im_ext):
        raise DataError(
            path,
            lines.get("imExt"),
            "imExt",
            f"expected a suffix such as .jpg, got {im_ext!r}",
            kind="bad_seqinfo",
        )
    return SeqInfo(
        name=values.get("name", path.parent.name),
        length=number("seqLength", int, 0),
        width=number("imWidth", int, 1),
        height=number("imHeight", int, 1),
        frame_rate=number("frameRate", float, 1e-9),
        im_dir=im_dir,
        im_ext=im_ext,
        path=path,
        lines=lines,
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


# ---------------------------------------------------------------------------------------------
# Dataset annotations (gt.txt, det.txt) as records, with the benchmark's rules
