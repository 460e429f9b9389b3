"""Text files of outside tools as any common editor saves them (UTF-8, optional BOM, any line end)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pipeline.formats.errors import DataError


def read_text(path: str | Path) -> str:
    """A text file as saved by any common editor: UTF-8 with or without a byte-order mark."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:  # a folder, a broken link, no permission
        raise DataError(
            path, None, "file", f"unreadable: {error.strerror or error}", kind="unreadable"
        ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(
            path, None, "encoding", f"not UTF-8 text (byte {error.start})", kind="malformed_row"
        ) from None


def text_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, stripped text) of every non-blank line; LF, CRLF and CR all end a line."""
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        stripped = line.strip()
        if stripped:
            yield number, stripped
