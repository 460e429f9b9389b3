"""Clips for training (torch Dataset, distributed shards, a Ray Data path) and frames for tracking.

A clip is `data.clip_length` frames of one sequence spaced by an interval drawn from
[`sample_interval_min`, `sample_interval_max`] (MOTRv3 §4.2: 5 frames, interval 1..10), with one
augmentation for the whole clip; the output is the clip contract of docs/architecture.md. Objects
whose ignore flag is set (MOT17 distractors and ignore regions, CrowdHuman `extra.ignore`, rows
with consider flag 0) are removed from the targets. Which clips an epoch holds, their intervals and
their augmentations follow from (seed, epoch) alone, so any worker can rebuild any clip.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow.parquet as pq
import torch

from pipeline.data.errors import DataError
from pipeline.data.parquet_io import DatasetReader, FrameData, read_manifest, read_pseudo_labels
from pipeline.data.synthetic import format_number
from pipeline.data.transforms import ClipPlan, apply_boxes, apply_image, plan_clip, to_normalised_tensor
from pipeline.paths import atomic_path, write_text_atomic

PERSON = 0


def decode_image(data) -> np.ndarray:
    """Encoded bytes → RGB uint8 HWC."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
    if image is None:
        raise ValueError("image bytes do not decode")
    return image


@dataclass(frozen=True)
class ClipSpec:
    """Which frames (positions in the sequence's stored order) one clip of an epoch holds."""

    index: int
    sequence: str
    positions: tuple[int, ...]
    static: bool


def sequence_clip_specs(
    name: str,
    num_frames: int,
    static: bool,
    length: int,
    interval_min: int,
    interval_max: int,
    rng: np.random.Generator,
    first_index: int,
) -> list[ClipSpec]:
    """The clips of one sequence in one epoch: one per start frame (one per image for static sets).

    The interval is drawn per clip and shrunk where the clip would run past the sequence's end.
    """
    if static:
        return [ClipSpec(first_index + i, name, (i,) * length, True) for i in range(num_frames)]
    span = (length - 1) * interval_min
    starts = max(0, num_frames - span) if length > 1 else num_frames
    intervals = rng.integers(interval_min, interval_max + 1, size=starts)
    specs = []
    for i, start in enumerate(range(starts)):
        step = int(intervals[i])
        if length > 1:
            step = max(interval_min, min(step, (num_frames - 1 - start) // (length - 1)))
        specs.append(ClipSpec(first_index + i, name, tuple(start + k * step for k in range(length)), False))
    if not specs and num_frames > 0:  # shorter than one clip: repeat the last frame
        specs.append(ClipSpec(first_index, name, tuple(min(k, num_frames - 1) for k in range(length)), False))
    return specs


def epoch_clip_specs(
    manifest: dict[str, Any], data, seed: int, epoch: int, train: bool = True
) -> list[ClipSpec]:
    """Every clip of an epoch, in sequence order; depends only on (manifest, data params, seed, epoch)."""
    rng = np.random.default_rng([seed, epoch, 0x5EC])
    low = data.sample_interval_min
    high = data.sample_interval_max if train else data.sample_interval_min
    specs: list[ClipSpec] = []
    for name, entry in manifest["sequences"].items():
        specs += sequence_clip_specs(
            name, entry["frames"], entry["static"], data.clip_length, low, high, rng, len(specs)
        )
    return specs


def shard_indices(
    num_clips: int, rank: int, world_size: int, seed: int, epoch: int, shuffle: bool = True
) -> list[int]:
    """This rank's clips of an epoch: a (seed, epoch) permutation dealt round-robin, no overlap, no padding.

    Ranks may differ by one clip; over all ranks every clip appears exactly once.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
    order = (
        np.random.default_rng([seed, epoch, 0x5A3]).permutation(num_clips)
        if shuffle
        else np.arange(num_clips)
    )
    return order[rank::world_size].tolist()


PseudoLabels = dict[tuple[str, int], tuple[np.ndarray, np.ndarray, np.ndarray]]


def read_pseudo_sources(path: str | Path, threshold: float, sources: list[str] | None) -> PseudoLabels:
    """(sequence, frame) → (boxes [P, 4] xyxy pixels, scores [P], source index [P] into `sources`).

    Only `sources` are read; one of them missing from the pseudo labels is an error naming it (the
    split folder's manifest when there is one, else the Parquet `source` column). `sources=None`
    joins every source as index 0 (one label set).
    """
    if sources is None:
        return {
            key: (boxes, scores, np.zeros(len(scores), np.int64))
            for key, (boxes, scores) in read_pseudo_labels(path, threshold).items()
        }
    from pipeline.pseudo_labels import MANIFEST, check_sources, load_label_sets

    path = Path(path)
    if path.is_dir() and (path / MANIFEST).is_file():
        check_sources(path, sources)
    else:
        files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
        present = set()
        for file in files:
            present.update(pq.read_table(file, columns=["source"]).column("source").unique().to_pylist())
        missing = [name for name in sources if name not in present]
        if missing:
            raise DataError(
                path,
                None,
                "source",
                f"pld.sources {missing} not in the pseudo labels (have {sorted(present)})",
                kind="missing_source",
            )
    result = {}
    for key, sets in load_label_sets(path, sources, threshold, "parallel").items():
        result[key] = (
            np.concatenate([boxes for boxes, _ in sets]).reshape(-1, 4),
            np.concatenate([scores for _, scores in sets]),
            np.concatenate([np.full(len(scores), index, np.int64) for index, (_, scores) in enumerate(sets)]),
        )
    return result


def build_clip(
    frames: list[FrameData],
    plan: ClipPlan,
    spec: ClipSpec,
    pseudo: dict | None,
    decoded: list[np.ndarray] | None = None,
) -> dict[str, Any]:
    """Decode, augment and package frames as the clip contract."""
    images, targets = [], []
    for t, frame in enumerate(frames):
        image = decoded[t] if decoded is not None else decode_image(frame.image)
        images.append(apply_image(image, plan, t))
        keep = ~frame.ignore
        xywh = frame.boxes[keep]
        xyxy = (
            np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
            if len(xywh)
            else np.zeros((0, 4))
        )
        boxes, kept = apply_boxes(xyxy, plan, t)
        ids = frame.ids[keep][kept]
        pseudo_boxes = np.zeros((0, 4), np.float32)
        pseudo_scores = np.zeros((0,), np.float32)
        pseudo_sources = np.zeros((0,), np.int64)
        if pseudo is not None and (frame.sequence, frame.frame) in pseudo:
            raw_boxes, raw_scores, raw_sources = pseudo[(frame.sequence, frame.frame)]
            pseudo_boxes, pseudo_kept = apply_boxes(raw_boxes, plan, t)
            pseudo_scores = raw_scores[pseudo_kept].astype(np.float32)
            pseudo_sources = raw_sources[pseudo_kept].astype(np.int64)
        targets.append(
            {
                "boxes": torch.from_numpy(boxes),
                "labels": torch.full((len(ids),), PERSON, dtype=torch.long),
                "obj_ids": torch.from_numpy(ids.astype(np.int64)),
                "pseudo_boxes": torch.from_numpy(pseudo_boxes),
                "pseudo_scores": torch.from_numpy(pseudo_scores),
                "pseudo_sources": torch.from_numpy(pseudo_sources),
            }
        )
    first = frames[0]
    return {
        "images": to_normalised_tensor(images),
        "targets": targets,
        "meta": {
            "sequence": spec.sequence,
            "frames": [int(f.frame) for f in frames],
            "orig_size": (int(first.height), int(first.width)),
            "size": tuple(int(v) for v in images[0].shape[:2]),
        },
    }


class ClipDataset(torch.utils.data.Dataset):
    """Training clips of a Parquet dataset, per the clip contract; `set_epoch` picks the epoch.

    `pseudo_labels`: a pseudo-label Parquet file/folder (`PSEUDO_LABEL_SCHEMA`); boxes below
    `pld_threshold` are dropped, only `pld_sources` are read (all, as source 0, when None) and each
    box keeps its source's index in `pld_sources` (`pseudo_sources`, for `pld.combine`). `train=False` gives eval clips: no augmentation, the minimum
    interval, `data.eval_size`.
    """

    def __init__(
        self,
        dataset_dir: str | Path,
        data,
        *,
        seed: int = 0,
        train: bool = True,
        pseudo_labels: str | Path | None = None,
        pld_threshold: float = 0.05,
        pld_sources: list[str] | None = None,
        epoch: int = 0,
    ):
        self.dataset_dir = Path(dataset_dir)
        self.reader = DatasetReader(self.dataset_dir)
        self.manifest = self.reader.manifest
        self.data = data
        self.seed = seed
        self.train = train
        self.pseudo = (
            read_pseudo_sources(pseudo_labels, pld_threshold, pld_sources) if pseudo_labels else None
        )
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.specs = epoch_clip_specs(self.manifest, self.data, self.seed, epoch, self.train)

    def __len__(self) -> int:
        return len(self.specs)

    def shard(self, rank: int, world_size: int, shuffle: bool = True) -> list[int]:
        return shard_indices(len(self.specs), rank, world_size, self.seed, self.epoch, shuffle)

    def plan(self, spec: ClipSpec, frame: FrameData) -> ClipPlan:
        rng = np.random.default_rng([self.seed, self.epoch, spec.index, 0xA06])
        return plan_clip(
            rng, frame.height, frame.width, len(spec.positions), self.data, self.train, spec.static
        )

    def __getitem__(self, index: int) -> dict[str, Any]:
        spec = self.specs[index]
        frames = self.reader.frames(spec.sequence, spec.positions)
        return build_clip(frames, self.plan(spec, frames[0]), spec, self.pseudo)


class ClipSampler(torch.utils.data.Sampler):
    """DistributedSampler without padding: each rank its own clips; call `set_epoch` every epoch."""

    def __init__(self, dataset: ClipDataset, rank: int = 0, world_size: int = 1, shuffle: bool = True):
        self.dataset, self.rank, self.world_size, self.shuffle = dataset, rank, world_size, shuffle

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        return iter(self.dataset.shard(self.rank, self.world_size, self.shuffle))

    def __len__(self) -> int:
        return len(self.dataset.shard(self.rank, self.world_size, self.shuffle))


def collate_clips(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A batch is a list of clips (never padded together)."""
    return batch


def clip_loader(
    dataset: ClipDataset,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    workers: int = 0,
    shuffle: bool = True,
):
    """A DataLoader over this rank's shard; call `loader.sampler.set_epoch(e)` before each epoch."""
    sampler = ClipSampler(dataset, rank, world_size, shuffle)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_clips,
        persistent_workers=False,
    )


# ---- Ray Data: distributed decoding/augmentation --------------------------------------------


class _SequenceClips:
    """map_groups UDF: all rows of one sequence in → that sequence's clips of the epoch out."""

    def __init__(self, dataset_dir: str, data, seed: int, epoch: int, train: bool):
        self.template = ClipDataset.__new__(ClipDataset)
        self.template.manifest = read_manifest(dataset_dir)
        self.template.data, self.template.seed, self.template.train = data, seed, train
        self.template.pseudo = None
        self.template.set_epoch(epoch)
        self.by_sequence: dict[str, list[ClipSpec]] = {}
        for spec in self.template.specs:
            self.by_sequence.setdefault(spec.sequence, []).append(spec)

    def __call__(self, table):
        from pipeline.data.parquet_io import table_to_frames

        table = table.sort_by("frame")
        frames = table_to_frames(table)
        specs = self.by_sequence.get(frames[0].sequence, []) if frames else []
        out = {"index": [], "sequence": [], "images": [], "targets": [], "meta": []}
        for spec in specs:
            chosen = [frames[p] for p in spec.positions]
            clip = build_clip(chosen, self.template.plan(spec, chosen[0]), spec, None)
            out["index"].append(spec.index)
            out["sequence"].append(spec.sequence)
            out["images"].append(clip["images"].numpy())
            out["targets"].append(
                json.dumps([{k: v.tolist() for k, v in t.items()} for t in clip["targets"]])
            )
            out["meta"].append(json.dumps(clip["meta"]))
        images = np.empty(len(out["images"]), dtype=object)
        images[:] = out["images"]
        out["images"] = images
        return out


def ray_clip_dataset(dataset_dir: str | Path, data, *, seed: int = 0, epoch: int = 0, train: bool = True):
    """A `ray.data.Dataset` of decoded, augmented clips of one epoch (the same clips as `ClipDataset`).

    Ray reads the Parquet files, groups rows by sequence and builds the clips in parallel tasks.
    Rows hold `index`, `sequence`, `images` [T, 3, H, W] float32, and `targets`/`meta` as JSON;
    `clip_from_ray_row` turns a row back into the clip contract.
    """
    import ray.data

    dataset_dir = Path(dataset_dir).resolve()
    manifest = read_manifest(dataset_dir)
    files = [str(dataset_dir / entry["file"]) for entry in manifest["sequences"].values()]
    rows = ray.data.read_parquet(files)
    # A partial of a plain function: map_groups runs it as tasks (a callable class would need actors).
    build = functools.partial(
        _sequence_clips, dataset_dir=str(dataset_dir), data=data, seed=seed, epoch=epoch, train=train
    )
    return rows.groupby("sequence").map_groups(build, batch_format="pyarrow")


def _sequence_clips(table, *, dataset_dir: str, data, seed: int, epoch: int, train: bool):
    return _SequenceClips(dataset_dir, data, seed, epoch, train)(table)


def clip_from_ray_row(row: dict[str, Any]) -> dict[str, Any]:
    targets = []
    for target in json.loads(row["targets"]):
        targets.append(
            {
                "boxes": torch.tensor(target["boxes"], dtype=torch.float32).reshape(-1, 4),
                "labels": torch.tensor(target["labels"], dtype=torch.long),
                "obj_ids": torch.tensor(target["obj_ids"], dtype=torch.long),
                "pseudo_boxes": torch.tensor(target["pseudo_boxes"], dtype=torch.float32).reshape(-1, 4),
                "pseudo_scores": torch.tensor(target["pseudo_scores"], dtype=torch.float32),
                "pseudo_sources": torch.tensor(target["pseudo_sources"], dtype=torch.long),
            }
        )
    meta = json.loads(row["meta"])
    meta["orig_size"], meta["size"] = tuple(meta["orig_size"]), tuple(meta["size"])
    return {
        "images": torch.from_numpy(np.array(row["images"], dtype=np.float32)),
        "targets": targets,
        "meta": meta,
    }


# ---- Tracking and evaluation -----------------------------------------------------------------


def list_sequences(dataset_dir: str | Path, include_static: bool = False) -> list[str]:
    """Sequence names of a complete dataset (static image sets such as CrowdHuman left out by default)."""
    manifest = read_manifest(dataset_dir)
    return [name for name, entry in manifest["sequences"].items() if include_static or not entry["static"]]


def iter_frames(dataset_dir: str | Path, sequence: str) -> Iterator[tuple[int, np.ndarray, FrameData]]:
    """(frame number, RGB uint8 HWC image, the frame's stored row) in frame order, streamed by row group."""
    reader = DatasetReader(dataset_dir, cache_bytes=0)
    for frame in reader.iter_sequence(sequence):
        yield frame.frame, decode_image(frame.image), frame


def export_motchallenge_gt(dataset_dir: str | Path, out_dir: str | Path) -> list[str]:
    """Write each annotated video sequence's gt back as `<out_dir>/<seq>/{gt/gt.txt,seqinfo.ini}` (TrackEval).

    Rows are the source's (original ids, class, consider flag, visibility), so TrackEval applies
    the benchmark's own rules. Returns the sequence names written.
    """
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    manifest = read_manifest(dataset_dir)
    reader = DatasetReader(dataset_dir, cache_bytes=0)
    written = []
    for name, entry in manifest["sequences"].items():
        if entry["static"] or not entry["has_gt"]:
            continue
        lines = []
        for frame in reader.iter_sequence(name):
            for k in range(len(frame.ids)):
                values = [
                    frame.frame,
                    int(frame.orig_ids[k]),
                    *frame.boxes[k].tolist(),
                    int(frame.consider[k]),
                    int(frame.classes[k]),
                    float(frame.visibility[k]),
                ]
                lines.append(",".join(format_number(v) for v in values))
        seq_dir = out_dir / name
        with atomic_path(seq_dir / "gt" / "gt.txt") as tmp:
            tmp.write_text("".join(line + "\n" for line in lines))
        frame_rate = entry["frame_rate"]
        write_text_atomic(
            seq_dir / "seqinfo.ini",
            "[Sequence]\n"
            f"name={name}\nimDir=img1\nframeRate={format_number(frame_rate) if not math.isnan(frame_rate) else 30}\n"
            f"seqLength={entry['last_frame']}\nimWidth={entry['width']}\nimHeight={entry['height']}\nimExt=.jpg\n",
        )
        written.append(name)
    return written
