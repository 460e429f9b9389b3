"""Clips for training: a torch Dataset over a Parquet clip dataset, with distributed shards.

A clip is `data.clip_length` frames of one sequence spaced by an interval drawn from
[`sample_interval_min`, `sample_interval_max`] (MOTRv3 §4.2: 5 frames, interval 1..10), with one
augmentation for the whole clip; the output is the clip contract of docs/architecture.md. Objects
whose ignore flag is set (MOT17 distractors and ignore regions, CrowdHuman `extra.ignore`, rows
with consider flag 0, custom data's classes outside `dataset.classes`) are removed from the
targets. A target's label is its gt class's position in the split's classes (the manifest's
`classes`, `dataset.classes` at conversion): 0..C-1, 0 for the one class of the paper's benchmarks.
Which clips an epoch holds, their intervals and their augmentations follow from (seed, epoch)
alone, so any worker can rebuild any clip.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.data.images import decode_image
from pipeline.data.pseudo_label_store import read_pseudo_sources
from pipeline.data.reader import DatasetReader, FrameData
from pipeline.data.transforms import ClipPlan, apply_boxes, apply_image, plan_clip, to_normalised_tensor
from pipeline.datasets import class_map
from pipeline.formats.errors import DataError

PERSON = 0  # the label of the default single class (MOTChallenge's class 1)


def label_lookup(classes: dict[int, str]) -> dict[int, int]:
    """gt class id → training label: its position in `classes` (`dataset.classes` order)."""
    return {cls: label for label, cls in enumerate(classes)}


def frame_labels(frame: FrameData, keep: np.ndarray, labels: dict[int, int]) -> np.ndarray:
    """Labels [K'] of a frame's kept objects; a kept class without a label is a `DataError`."""
    try:
        return np.asarray([labels[int(cls)] for cls in frame.classes[keep]], dtype=np.int64)
    except KeyError as error:
        raise DataError(
            frame.sequence,
            None,
            "classes",
            f"frame {frame.frame}: a target of gt class {error.args[0]}, not one of the split's classes "
            f"{sorted(labels)}; re-run convert",
            kind="bad_manifest",
        ) from None


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


def build_clip(
    frames: list[FrameData],
    plan: ClipPlan,
    spec: ClipSpec,
    pseudo: dict | None,
    decoded: list[np.ndarray] | None = None,
    labels: dict[int, int] | None = None,
) -> dict[str, Any]:
    """Decode, augment and package frames as the clip contract; `labels` (gt class id → label,
    `label_lookup`; None: every target `PERSON`)."""
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
        classes = frame_labels(frame, keep, labels)[kept] if labels is not None else np.full(len(ids), PERSON)
        pseudo_boxes = np.zeros((0, 4), np.float32)
        pseudo_scores = np.zeros((0,), np.float32)
        pseudo_sources = np.zeros((0,), np.int64)
        pseudo_labels = np.zeros((0,), np.int64)
        if pseudo is not None and (frame.sequence, frame.frame) in pseudo:
            raw_boxes, raw_scores, raw_sources, raw_labels = pseudo[(frame.sequence, frame.frame)]
            pseudo_boxes, pseudo_kept = apply_boxes(raw_boxes, plan, t)
            pseudo_scores = raw_scores[pseudo_kept].astype(np.float32)
            pseudo_sources = raw_sources[pseudo_kept].astype(np.int64)
            pseudo_labels = raw_labels[pseudo_kept].astype(np.int64)
        targets.append(
            {
                "boxes": torch.from_numpy(boxes),
                "labels": torch.from_numpy(classes.astype(np.int64)),
                "obj_ids": torch.from_numpy(ids.astype(np.int64)),
                "pseudo_boxes": torch.from_numpy(pseudo_boxes),
                "pseudo_scores": torch.from_numpy(pseudo_scores),
                "pseudo_sources": torch.from_numpy(pseudo_sources),
                "pseudo_labels": torch.from_numpy(pseudo_labels),
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
    box keeps its source's index in `pld_sources` (`pseudo_sources`, for `pld.combine`) and its class
    (`pseudo_labels`, a label as `labels`'). `train=False` gives eval clips: no augmentation, the minimum
    interval, `data.eval_size`. `classes` (`dataset.classes`): must be those the split was converted
    with (its manifest's), else a `DataError`; None takes the manifest's.
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
        classes: dict[int, str] | None = None,
    ):
        self.dataset_dir = Path(dataset_dir)
        self.reader = DatasetReader(self.dataset_dir)
        self.manifest = self.reader.manifest
        self.classes = check_classes(self.dataset_dir, self.manifest, classes)
        self.labels = label_lookup(self.classes)
        self.data = data
        self.seed = seed
        self.train = train
        self.pseudo = (
            read_pseudo_sources(pseudo_labels, pld_threshold, pld_sources, self.classes)
            if pseudo_labels
            else None
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
        return build_clip(frames, self.plan(spec, frames[0]), spec, self.pseudo, labels=self.labels)


def check_classes(
    dataset_dir: Path, manifest: dict[str, Any], classes: dict[int, str] | None
) -> dict[int, str]:
    """The split's classes (its manifest's); `classes` given and different is a `DataError`: the
    model would be trained on labels the data does not have."""
    stored = class_map(manifest.get("classes"))
    if classes is not None and dict(classes) != stored:
        raise DataError(
            dataset_dir / "manifest.json",
            None,
            "classes",
            f"converted with dataset.classes {stored}, the params say {dict(classes)}; re-run convert",
            kind="bad_manifest",
        )
    return stored


def step_clips(indices: list[int], step: int, per_step: int) -> list[int]:
    """The dataset indices one step reads: this rank's shard, round-robin from `step × per_step`."""
    return [indices[(step * per_step + k) % len(indices)] for k in range(per_step)]


class StepSampler(torch.utils.data.Sampler[int]):
    """The clips of steps `start`..`stop - 1` in training order, so a resumed epoch starts at its step."""

    def __init__(self, indices: list[int], per_step: int, start: int, stop: int):
        self.indices, self.per_step, self.start, self.stop = indices, per_step, start, stop

    def __iter__(self) -> Iterator[int]:
        for step in range(self.start, self.stop):
            yield from step_clips(self.indices, step, self.per_step)

    def __len__(self) -> int:
        return max(0, self.stop - self.start) * self.per_step


def _one_clip(clip: dict[str, Any]) -> dict[str, Any]:
    return clip  # clips stay as built (no collation: a step reads them one by one)


def _seed_loader_worker(worker_id: int) -> None:
    """A loader process: its global generators seeded from the loader's generator (the run seed).

    OpenCV's thread count is left as inherited: `cv2.setNumThreads` in a forked child waits forever
    on the parent's thread-pool state (measured: benchmarks/bench_loader.py hung there).
    """
    seed = torch.initial_seed() % 2**32  # base seed (from `seed`) + worker_id, set by the DataLoader
    np.random.seed(seed)
    random.seed(seed)


def clip_stream(
    dataset: ClipDataset,
    indices: list[int],
    per_step: int,
    start: int,
    stop: int,
    *,
    workers: int = 0,
    prefetch: int = 2,
    seed: int | None = None,
    pin_memory: bool = False,
) -> Iterator[dict[str, Any]]:
    """The clips of steps `start`..`stop - 1` (`StepSampler`) in order, read in this process
    (`workers` 0) or by `workers` loader processes that each keep `prefetch` clips ready.

    The same clips either way: a clip follows from (seed, epoch, index) alone (`ClipDataset`), the
    loader's processes only change where it is built. Call after `dataset.set_epoch`: the
    processes take the dataset as it is when the stream starts. The processes' global generators
    are seeded from `seed` (default: the dataset's run seed and epoch), process k from seed + k.
    """
    sampler = StepSampler(indices, per_step, start, stop)
    if workers == 0:
        return (dataset[index] for index in sampler)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        sampler=sampler,
        num_workers=workers,
        prefetch_factor=prefetch,
        collate_fn=_one_clip,
        worker_init_fn=_seed_loader_worker,
        generator=torch.Generator().manual_seed(
            int(np.random.default_rng([dataset.seed, dataset.epoch, 0x10AD]).integers(2**62))
            if seed is None
            else seed
        ),
        pin_memory=pin_memory,
    )
    return iter(loader)
