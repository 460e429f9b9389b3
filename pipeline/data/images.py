"""Encoded images: the one decoder every reader uses, and the checks the converter runs on frames."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.formats.errors import DataError
from pipeline.formats.motchallenge import SeqInfo

# What PIL may identify and OpenCV (`decode_image`, used by training and tracking) also decodes.
DECODABLE_FORMATS = frozenset({"JPEG", "MPO", "PNG", "BMP", "TIFF", "WEBP", "PPM"})


def decode_image(data) -> np.ndarray:
    """Encoded bytes (JPEG, PNG, ...) → RGB uint8 HWC."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
    if image is None:
        raise ValueError("image bytes do not decode")
    return image


def image_size(data: bytes, path: str | Path) -> tuple[int, int]:
    """(width, height) of a complete image; empty, truncated or undecodable bytes are a `DataError`.

    PIL reads every block (`verify` checks PNG chunk CRCs, `load` decodes and raises on a
    truncated file, which OpenCV would decode to grey without failing); JPEGs load at 1/8 scale,
    which still reads all their entropy-coded data at a fraction of a full decode's cost. Other
    formats must also decode with OpenCV, the loader's decoder, which is stricter than PIL there
    (a PNG cut inside its end chunk).
    """
    if not data:
        raise DataError(path, None, "image", "empty file", kind="corrupt_image")
    name = "image"
    try:
        with warnings.catch_warnings():
            # A header claiming a huge size is a corrupt file here, not a reason to allocate gigabytes.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                name = image.format or name
                image.verify()
            with Image.open(io.BytesIO(data)) as image:
                size = image.size
                if image.format in ("JPEG", "MPO"):
                    image.draft("L", (max(1, size[0] // 8), max(1, size[1] // 8)))
                image.load()
    except UnidentifiedImageError:
        raise DataError(path, None, "image", "not an image (unknown format)", kind="corrupt_image") from None
    # PIL's format plugins raise many types on bad bytes (OSError, SyntaxError, ValueError, struct.error, ...).
    except Exception as error:
        raise DataError(
            path, None, "image", f"corrupt {name} (truncated or undecodable: {error})", kind="corrupt_image"
        ) from None
    if name not in DECODABLE_FORMATS:
        raise DataError(
            path,
            None,
            "image",
            f"{name} is not a format the loader decodes ({', '.join(sorted(DECODABLE_FORMATS))})",
            kind="corrupt_image",
        )
    if name not in ("JPEG", "MPO"):
        try:
            decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        except cv2.error:
            decoded = None
        if decoded is None or (decoded.shape[1], decoded.shape[0]) != size:
            raise DataError(
                path, None, "image", f"corrupt {name} (OpenCV cannot decode it)", kind="corrupt_image"
            )
    return size


def check_image(data: bytes, path: Path, info: SeqInfo) -> None:
    """A frame's encoded bytes must be a complete image of seqinfo.ini's size."""
    size = image_size(data, path)
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
