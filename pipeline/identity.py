"""One identity for cached work: a name from the params and the fingerprints of the input files.

Ray Train runs (`pipeline.steps.train`) and sweep trials (`pipeline.studies.sweep`) are reused when,
and only when, this key is unchanged: a changed param or changed input data gets a new name.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SMALL_FILE = 1 << 20  # files up to this size are hashed; larger ones (Parquet, images) by size


def fingerprint(root: Path) -> list[tuple[str, int, str]]:
    """(relative path, size, digest of small files) of every file: changes when the data changes."""
    root = Path(root)
    if not root.exists():
        return []
    if root.is_file():
        return [(root.name, root.stat().st_size, hashlib.sha256(root.read_bytes()).hexdigest()[:16])]
    entries = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".tmp")):
        size = path.stat().st_size
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16] if size <= SMALL_FILE else ""
        entries.append((str(path.relative_to(root)), size, digest))
    return entries


def params_view(params, exclude: Mapping[str, Iterable[str] | None] = {}) -> dict[str, Any]:
    """`params.as_dict()` without the `exclude`d sections (None) or keys of a section (a list)."""
    view = params.as_dict()
    for section, keys in exclude.items():
        if keys is None:
            view.pop(section, None)
        elif isinstance(view.get(section), dict):
            for key in keys:
                view[section].pop(key, None)
    return view


def work_key(
    label: str,
    params,
    inputs: Iterable[Path] = (),
    exclude: Mapping[str, Iterable[str] | None] = {},
    digits: int = 12,
) -> str:
    """`<label>-<hex>`: a hash of the effective params (less `exclude`) and of the input files' content."""
    blob = json.dumps(
        {
            "label": label,
            "params": params_view(params, exclude),
            "inputs": [fingerprint(Path(p)) for p in inputs],
        },
        sort_keys=True,
    )
    return f"{label}-{hashlib.sha256(blob.encode()).hexdigest()[:digits]}"
