"""The clip loader: the clip contract, augmentation, determinism, sharding, pseudo labels, Ray Data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.data.loader import ClipDataset, clip_stream, epoch_clip_specs, step_clips
from pipeline.data.pseudo_label_store import write_pseudo_labels
from pipeline.data.transforms import ClipPlan, apply_boxes, resized_shape
from pipeline.params import DataParams
from pipeline.steps.convert import convert_split
from tests.test_data_helpers import write_crowdhuman, write_sequence

DATA = DataParams(
    train_scales=[32, 48],
    train_max_size=80,
    eval_size=48,
    eval_max_size=80,
    clip_length=3,
    sample_interval_min=1,
    sample_interval_max=3,
)
GT = [(f, i, 5 + f + 20 * (i - 1), 6, 10, 20, 1, 1, 1) for f in range(1, 9) for i in (1, 2)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader")
    gt = [*GT, (1, 3, 50, 20, 10, 10, 0, 1, 1)]  # consider 0 → ignore flag (MOT17 rules)
    write_sequence(root / "raw" / "train" / "seq-a", frames=8, gt_rows=gt)
    write_sequence(root / "raw" / "train" / "seq-b", frames=6, gt_rows=[r for r in GT if r[0] <= 6], seed=3)
    convert_split(
        root / "raw",
        "train",
        "mot17",
        root / "clips",
        dataset="custom",
        row_group_frames=4,
        lenient=False,
        crowdhuman_root=write_crowdhuman(root / "ch"),
        progress=False,
    )
    return root


def test_clip_contract(dataset):
    clips = ClipDataset(dataset / "clips", DATA, seed=0)
    for index in range(len(clips)):
        clip = clips[index]
        images, targets, meta = clip["images"], clip["targets"], clip["meta"]
        assert images.dtype == torch.float32 and images.shape[:2] == (3, 3)
        assert meta["size"] == tuple(images.shape[2:]) and (
            min(meta["size"]) in (32, 48) or max(meta["size"]) == 80
        )
        assert -2.2 < images.mean() < 2.7  # ImageNet-normalised, not 0..255
        assert len(targets) == 3 and len(meta["frames"]) == 3
        for target in targets:
            assert target["boxes"].dtype == torch.float32 and target["boxes"].shape[1] == 4
            assert ((target["boxes"] >= 0) & (target["boxes"] <= 1)).all()
            assert target["labels"].dtype == torch.long and (target["labels"] == 0).all()
            assert target["obj_ids"].dtype == torch.long and len(target["obj_ids"]) == len(target["boxes"])
            assert target["pseudo_boxes"].shape == (0, 4) and target["pseudo_scores"].shape == (0,)
        if meta["sequence"] == "seq-a" and meta["frames"][0] == 1:
            # The consider-0 object (id 3) is ignore-flagged and never a target.
            assert 3 not in targets[0]["obj_ids"].tolist()


def test_intervals_cover_1_to_max_and_frames_stay_in_sequence(dataset):
    specs = [
        s
        for e in range(6)
        for s in epoch_clip_specs(ClipDataset(dataset / "clips", DATA).manifest, DATA, 0, e)
    ]
    video = [s for s in specs if not s.static]
    steps = {s.positions[1] - s.positions[0] for s in video}
    assert steps == {1, 2, 3}
    assert all(s.positions[-1] < (8 if s.sequence == "seq-a" else 6) for s in video)
    static = [s for s in specs if s.static]
    assert static and all(len(set(s.positions)) == 1 for s in static)


def test_sampling_and_augmentation_reproducible_from_seed_and_epoch(dataset):
    one = ClipDataset(dataset / "clips", DATA, seed=5, epoch=2)
    two = ClipDataset(dataset / "clips", DATA, seed=5)
    two.set_epoch(2)
    assert one.specs == two.specs
    for index in (0, 3, len(one) - 1):
        a, b = one[index], two[index]
        assert torch.equal(a["images"], b["images"]) and a["meta"] == b["meta"]
        assert all(
            torch.equal(x["boxes"], y["boxes"]) for x, y in zip(a["targets"], b["targets"], strict=True)
        )
    two.set_epoch(3)
    assert [s.positions for s in one.specs] != [s.positions for s in two.specs]


def test_shards_cover_every_clip_exactly_once(dataset):
    clips = ClipDataset(dataset / "clips", DATA, seed=1)
    for world_size in (1, 2, 3):
        for epoch in (0, 1):
            clips.set_epoch(epoch)
            shards = [clips.shard(rank, world_size) for rank in range(world_size)]
            merged = sorted(i for shard in shards for i in shard)
            assert merged == list(range(len(clips)))
            assert max(map(len, shards)) - min(map(len, shards)) <= 1
    clips.set_epoch(0)
    first = clips.shard(0, 2)
    clips.set_epoch(1)
    assert clips.shard(0, 2) != first  # reshuffled per epoch


def test_boxes_partly_outside_are_clipped_and_flip_mirrors():
    plan = ClipPlan([(0, 0, 64, 48)], flip=False, size=48, max_size=None)
    boxes, kept = apply_boxes(np.array([[-4.0, 10, 8, 34], [70, 0, 80, 10]]), plan, 0)
    assert kept.tolist() == [True, False]
    assert boxes[0].tolist() == pytest.approx([4 / 64, 22 / 48, 8 / 64, 24 / 48])
    flipped, _ = apply_boxes(np.array([[-4.0, 10, 8, 34]]), ClipPlan([(0, 0, 64, 48)], True, 48, None), 0)
    assert flipped[0, 0] == pytest.approx(1 - 4 / 64)
    cropped, _ = apply_boxes(np.array([[10.0, 10, 20, 20]]), ClipPlan([(10, 10, 42, 26)], False, 48, None), 0)
    assert cropped[0].tolist() == pytest.approx([5 / 32, 5 / 16, 10 / 32, 10 / 16])
    assert resized_shape(48, 64, 32, None) == (32, 43) and resized_shape(48, 640, 32, 100) == (8, 100)


def test_static_images_become_shifted_clips(dataset):
    data = DATA.model_copy(update={"static_shift": 0.2, "random_crop": False, "flip_prob": 0.0})
    clips = ClipDataset(dataset / "clips", data, seed=0)
    index = next(i for i, s in enumerate(clips.specs) if s.sequence == "crowdhuman-train")
    clip = clips[index]
    ids = [t["obj_ids"].tolist() for t in clip["targets"]]
    assert all(i == ids[0] for i in ids) and len(ids[0]) == 1
    centres = {tuple(t["boxes"][0, :2].tolist()) for t in clip["targets"]}
    assert len(centres) > 1  # the same object moves between the frames of the clip
    assert len(set(clip["meta"]["frames"])) == 1


def test_pseudo_labels_join_by_sequence_and_frame(dataset, tmp_path):
    write_pseudo_labels(
        [
            {
                "sequence": "seq-a",
                "frame": 1,
                "boxes": [[0, 0, 32, 24], [1, 1, 5, 5]],
                "scores": [0.9, 0.01],
                "source": "detector",
            },
            {
                "sequence": "seq-a",
                "frame": 2,
                "boxes": [[32, 24, 64, 48]],
                "scores": [0.5],
                "source": "detector",
            },
        ],
        tmp_path / "pl.parquet",
    )
    data = DATA.model_copy(
        update={"train_scales": [48], "random_crop": False, "flip_prob": 0.0, "sample_interval_max": 1}
    )
    clips = ClipDataset(
        dataset / "clips", data, seed=0, pseudo_labels=tmp_path / "pl.parquet", pld_threshold=0.05
    )
    clip = clips[next(i for i, s in enumerate(clips.specs) if s.sequence == "seq-a" and s.positions[0] == 0)]
    assert clip["meta"]["frames"] == [1, 2, 3]
    first, second, third = clip["targets"]
    assert first["pseudo_boxes"].tolist() == [[0.25, 0.25, 0.5, 0.5]] and first[
        "pseudo_scores"
    ].tolist() == pytest.approx([0.9])
    assert second["pseudo_boxes"].tolist() == [[0.75, 0.75, 0.5, 0.5]]
    assert third["pseudo_boxes"].shape == (0, 4)


def _same_clips(left, right) -> bool:
    return (
        len(left) == len(right)
        and all(
            a["meta"] == b["meta"] and torch.equal(a["images"], b["images"])
            for a, b in zip(left, right, strict=True)
        )
        and all(
            torch.equal(x[key], y[key])
            for a, b in zip(left, right, strict=True)
            for x, y in zip(a["targets"], b["targets"], strict=True)
            for key in x
        )
    )


def test_loader_workers_give_the_in_process_clips_and_resume_at_the_step(dataset):
    clips = ClipDataset(dataset / "clips", DATA, seed=4)
    clips.set_epoch(1)
    indices, per_step, steps = clips.shard(0, 1), 2, 5
    in_process = list(clip_stream(clips, indices, per_step, 0, steps))
    expected = [clips[i] for step in range(steps) for i in step_clips(indices, step, per_step)]
    assert _same_clips(in_process, expected)
    # Two loader processes (prefetch 2): the same clips in the same order.
    assert _same_clips(
        list(clip_stream(clips, indices, per_step, 0, steps, workers=2, prefetch=2)), in_process
    )
    # A run resumed at step 3 reads the clips the uninterrupted run read from step 3 on.
    resumed = list(clip_stream(clips, indices, per_step, 3, steps, workers=2))
    assert _same_clips(resumed, in_process[3 * per_step :])
