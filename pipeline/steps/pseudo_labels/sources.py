"""Where pseudo labels come from (PLD, §3.3, Table 4): the `pld.sources` names and the offline sources.

A source is `detector`, `teacher`, `detfile[:<name>]`, `torchvision[:<name>]` or `gt`; `detector` is
the detector the trackers start from, `teacher` one trained bigger and longer for PLD alone
(`stages.train_teacher`); `detfile` reads detection
files (`pipeline.formats.detections`) or the public detections the converter stored, `gt` copies the
ground truth with confidence 1. Model sources run in `pipeline.inference.detectors`.

Each box's class (a training label, `dataset.classes` order): `detector` the class it scored, `gt`
its row's class; detection files and torchvision's person class are of one class, label 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.loader import frame_labels, label_lookup
from pipeline.data.parquet_io import sha256_file
from pipeline.data.reader import DatasetReader, FrameIndex
from pipeline.datasets import class_map
from pipeline.formats.detections import (
    Detections,
    LabelledDetections,
    read_json_db,
    read_motchallenge_dets,
    xywh_to_xyxy,
)
from pipeline.formats.errors import DataError
from pipeline.inference.detectors import Source
from pipeline.params import DetfileSpec

SOURCE_KINDS = ("detector", "teacher", "detfile", "torchvision", "gt")
MODEL_KINDS = ("detector", "teacher")  # our detection-only Deformable-DETR, from a checkpoint


def parse_sources(names: list[str], pl_params) -> list[Source]:
    """`pld.sources` → `Source`s; a bare `detfile`/`torchvision` needs exactly one configured entry."""
    if not names:
        raise ValueError(
            "pseudo_labels.sources + pld.sources: empty; name at least one of detector, detfile:<name>, torchvision:<name>, gt"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"sources {names} name a source twice")
    sources = []
    for name in names:
        kind, _, entry = name.partition(":")
        if kind not in SOURCE_KINDS:
            raise ValueError(f"source {name!r}: unknown kind {kind!r}; expected one of {SOURCE_KINDS}")
        if kind in (*MODEL_KINDS, "gt"):
            if entry:
                raise ValueError(f"source {name!r}: {kind} takes no ':<name>'")
            spec = {"checkpoint": getattr(pl_params, f"{kind}_checkpoint")} if kind in MODEL_KINDS else {}
        else:
            table = getattr(pl_params, kind)
            if kind == "detfile" and not entry and not table:
                # Bare `detfile` with nothing configured: the public detections stored by the converter.
                sources.append(Source(name, kind, DetfileSpec(format="dataset").model_dump()))
                continue
            if not entry:
                if len(table) != 1:
                    raise ValueError(
                        f"source {name!r}: write {kind}:<name> with <name> one of pseudo_labels.{kind} "
                        f"({sorted(table) or 'none configured'})"
                    )
                entry = next(iter(table))
            if entry not in table:
                raise ValueError(
                    f"source {name!r}: no pseudo_labels.{kind}.{entry} in params (configured: {sorted(table) or 'none'})"
                )
            spec = table[entry].model_dump()
        sources.append(Source(name, kind, spec))
    return sources


def generated_sources(params) -> list[str]:
    """What the stage writes: `pseudo_labels.sources`, then any `pld.sources` entry not among them."""
    names = list(params.pseudo_labels.sources)
    if params.pld.enabled:
        names += [name for name in params.pld.sources if name not in names]
    return names


def gt_source(reader: DatasetReader, with_labels: bool = False) -> Detections | LabelledDetections:
    """The ground truth as pseudo labels with confidence 1 (Table 4, 'Ground Truth'); ignored rows left
    out. `with_labels`: each box's label too, its gt class's position in the split's classes (as the
    loader labels targets)."""
    labels = label_lookup(class_map(reader.manifest.get("classes")))
    result: dict = {}
    for sequence in reader.sequences:
        for frame in reader.iter_sequence(sequence):
            keep = ~frame.ignore
            boxes = xywh_to_xyxy(frame.boxes[keep])
            result[(sequence, frame.frame)] = (boxes, np.ones(len(boxes), dtype=np.float32))
            if with_labels:
                result[(sequence, frame.frame)] += (frame_labels(frame, keep, labels),)
    return result


def dataset_dets(reader: DatasetReader, det_source: str | None) -> Detections:
    """The public detections the converter stored (det_boxes/det_scores), optionally of one detector."""
    stored = sorted(
        {name for entry in reader.manifest["sequences"].values() for name in entry.get("det_sources", [])}
    )
    if not stored or (det_source is not None and det_source not in stored):
        raise DataError(
            reader.dataset_dir / "manifest.json",
            None,
            "det_sources",
            f"the dataset holds no public detections{f' of {det_source!r}' if det_source else ''} (has {stored}); "
            "point pseudo_labels.detfile.<name>.path at a detection file (docs/pseudo_labels.md) "
            "or leave detfile out of pseudo_labels.sources and pld.sources",
            kind="bad_params",
        )
    result: Detections = {}
    for sequence in reader.sequences:
        for frame in reader.iter_sequence(sequence):
            keep = np.ones(len(frame.det_scores), dtype=bool)
            if det_source is not None:
                keep = np.asarray([s == det_source for s in frame.det_sources], dtype=bool).reshape(-1)
            result[(sequence, frame.frame)] = (
                xywh_to_xyxy(frame.det_boxes[keep]),
                np.asarray(frame.det_scores, dtype=np.float32)[keep],
            )
    return result


def detfile_source(
    entry: dict[str, Any], reader: DatasetReader, index: FrameIndex
) -> tuple[Detections, dict[str, Any]]:
    """Dispatch a `pseudo_labels.detfile.<name>` entry by format; returns detections and notes for the manifest."""
    spec = DetfileSpec.model_validate(entry)
    path = Path(spec.path) if spec.path else None
    fmt = spec.format
    if fmt == "auto":
        if path is None:
            fmt = "dataset"
        elif path.is_dir():
            fmt = "motchallenge"
        elif path.suffix.lower() == ".json":
            fmt = "json"
        else:
            raise DataError(
                path,
                None,
                "format",
                "cannot tell the format: expected a .json db or a MOTChallenge split folder",
                kind="bad_params",
            )
    notes: dict[str, Any] = {"format": fmt}
    if fmt == "dataset":
        return dataset_dets(reader, spec.det_source), notes
    if path is None or not path.exists():
        raise DataError(
            path or "params.yaml",
            None,
            "pseudo_labels.detfile.path",
            "no such file or folder",
            kind="bad_params",
        )
    if fmt == "json":
        dets, skipped = read_json_db(path, index, spec.key_prefix, spec.det_source)
        notes["skipped_keys"] = skipped
    else:
        skipped: list[str] = []
        dets = read_motchallenge_dets(path, index, spec.det_file, spec.det_source, skipped)
        notes["skipped"] = skipped  # every path passed over, named in the manifest
    notes["sha256"] = sha256_file(path) if path.is_file() else None
    return dets, notes
