"""Where every stage reads and writes: one place, so dvc.yaml, stages and tests agree."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

DATA_DIR = Path("data")
RAW_SYNTHETIC_DIR = DATA_DIR / "raw" / "synthetic"  # generate → MOTChallenge layout
CLIPS_DIR = DATA_DIR / "clips"  # convert → Parquet datasets, one per split
PSEUDO_LABELS_DIR = DATA_DIR / "pseudo_labels"  # pseudo_labels → Parquet
MODELS_DIR = Path("models")  # train_detector / train → checkpoints
RESULTS_DIR = Path("results")  # track → MOTChallenge result files
METRICS_DIR = Path("metrics")  # evaluate → metrics JSON/CSV
REPORTS_DIR = Path("reports")  # tables / figures
FPS_FILE = "fps.json"  # track → results/<method>/<split>/fps.json (Table 6 speed), read by evaluate


def results_dir(method: str, split: str) -> Path:
    """Where the track step writes a method's result files for a split."""
    return RESULTS_DIR / method / split


@contextmanager
def atomic_path(final: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary sibling path; on success it replaces `final` in one rename.

    A killed writer leaves only a `.tmp` sibling behind, never a half-written `final`.
    Works for files and for directories (the temp dir is renamed over a removed old dir).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f"{suffix}.tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        yield tmp
        if tmp.is_dir() and final.exists():
            import shutil

            backup = final.with_name(f".{final.name}.old.tmp")
            if backup.exists():
                shutil.rmtree(backup) if backup.is_dir() else backup.unlink()
            final.rename(backup)
            tmp.rename(final)
            shutil.rmtree(backup) if backup.is_dir() else backup.unlink()
        else:
            tmp.replace(final)
    finally:
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
