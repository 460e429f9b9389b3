"""One error type for bad input data, and the strict/lenient policy that decides what happens to it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """Bad input: names the file, the line (None where a line makes no sense) and the field."""

    def __init__(self, file: str | Path, line: int | None, field: str, message: str, kind: str = "invalid"):
        self.file = str(file)
        self.line = line
        self.field = field
        self.message = message
        self.kind = kind  # short category, counted in the manifest in lenient mode
        where = self.file if line is None else f"{self.file}:{line}"
        super().__init__(f"{where}: {field}: {message}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "field": self.field,
            "kind": self.kind,
            "message": self.message,
        }


@dataclass
class Issues:
    """Strict mode raises the first `DataError`; lenient mode records each one and goes on.

    Every skipped item is recorded (never dropped silently); `summary()` goes into the manifest.
    """

    lenient: bool = False
    skipped: list[DataError] = field(default_factory=list)

    def report(self, error: DataError) -> None:
        if not self.lenient:
            raise error
        self.skipped.append(error)

    def note(self, error: DataError) -> None:
        """Record a path passed over on purpose (not input data, e.g. a stray file); never raises."""
        self.skipped.append(error)

    def summary(self) -> dict[str, Any]:
        counts = Counter(error.kind for error in self.skipped)
        return {
            "lenient": self.lenient,
            "total": len(self.skipped),
            "counts": dict(sorted(counts.items())),
            "items": [error.as_dict() for error in self.skipped],
        }


@contextmanager
def naming_file(path: str | Path) -> Iterator[None]:
    """Re-raise an OSError of a write (a full disk; pyarrow's name no file) naming `path`.

    The innermost cause is kept, so an outer call (naming the final file instead of a temporary
    one) replaces the name rather than appending a second one.
    """
    try:
        yield
    except OSError as error:
        cause = getattr(error, "write_cause", error)
        if cause.errno is None:
            wrapped = OSError(f"{cause} (writing {path})")
        else:
            # OSError's own form: "[Errno 28] No space left on device: '<path>'"
            wrapped = OSError(cause.errno, cause.strerror or str(cause), str(path))
        wrapped.write_cause = cause
        raise wrapped from cause
