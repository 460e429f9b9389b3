"""Data layer: raw layouts → Parquet clip datasets → training clips and tracking frames (docs/data.md).

Names are exported lazily so `from pipeline.data.errors import DataError` does not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DataError": "pipeline.data.errors",
    "Issues": "pipeline.data.errors",
    "convert": "pipeline.data.convert",
    "convert_split": "pipeline.data.convert",
    "generate": "pipeline.data.synthetic",
    "DatasetReader": "pipeline.data.parquet_io",
    "read_manifest": "pipeline.data.parquet_io",
    "read_pseudo_labels": "pipeline.data.parquet_io",
    "write_pseudo_labels": "pipeline.data.parquet_io",
    "PSEUDO_LABEL_SCHEMA": "pipeline.data.parquet_io",
    "CLIP_SCHEMA": "pipeline.data.parquet_io",
    "ClipDataset": "pipeline.data.loader",
    "ClipSampler": "pipeline.data.loader",
    "clip_loader": "pipeline.data.loader",
    "ray_clip_dataset": "pipeline.data.loader",
    "iter_frames": "pipeline.data.loader",
    "list_sequences": "pipeline.data.loader",
    "export_motchallenge_gt": "pipeline.data.loader",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipeline.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
