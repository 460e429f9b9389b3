"""Encoded images: the one decoder every reader uses, and the checks the converter runs on frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline.formats.errors import DataError
from pipeline.formats.motchallenge import SeqInfo


def decode_image(data) -> np.ndarray:
    """Encoded bytes (JPEG, PNG, ...) → RGB uint8 HWC."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
    if image is None:
        raise ValueError("image bytes do not decode")
    return image


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
