"""Readings of the MOTRv3 strategies (`rfs.reading`, `tgd.follow` / `reduce` / `mask`), hand-worked.

Each reading is one `motrv3.supervision` class selected by one config field (docs/strategies.md).
"""

from __future__ import annotations

import math

import pytest
import torch

from motrv3.config import PLD_READING_NAMES, RFS_READING_NAMES, PLDConfig, RFSConfig
from motrv3.stats import tracking_counts
from motrv3.supervision import PLD_READINGS, RFS_READINGS
from motrv3.tgd import attention_mask
from tests.test_criterion import FAR, make_criterion, make_output, make_target, tensor_ids

A_BOX, C_BOX = [0.3, 0.3, 0.2, 0.2], [0.3, 0.7, 0.2, 0.2]


def test_keep_identity_releases_a_tracked_label_without_training_its_track_as_background():
    # det0 sits on A (id 10), which track query 0 carries but misses; det1 sits on the new label C
    layer = [A_BOX, C_BOX, FAR]
    out = make_output([layer, layer], num_det=2, num_track=1)
    target = make_target([A_BOX, C_BOX], [10, 30])
    result = make_criterion(rfs=True, rfs_reading="keep_identity").frame_loss(out, target, tensor_ids(10))
    # early layer: 𝔖_a releases A to det0, and track 0 keeps Eq. 2's A: A trains both
    assert result.assignments["det"][0].tolist() == [0, 1, 0]
    assert result.assignments["det"][1].tolist() == [-1, 1, 0]  # last layer: Eq. 1 + Eq. 2
    # Fig. 2(d) counts who holds a label in 𝔖_a: both labels went to detect queries (released)
    assert result.stats["early_det"] == 2.0 and result.stats["early_track"] == 0.0
    assert result.query_ids.tolist() == [-1, 30, 10]
    # the track query pays its far box in both layers (literal: only in the last)
    literal = make_criterion(rfs=True, rfs_reading="literal").frame_loss(out, target, tensor_ids(10))
    far_l1 = sum(abs(a - b) for a, b in zip(FAR, A_BOX, strict=True))
    det0_l1 = 0.0  # det0 sits exactly on A
    assert result.losses["det_l1"].item() == pytest.approx(2 * 5 * far_l1 + det0_l1, rel=1e-5)
    assert literal.losses["det_l1"].item() == pytest.approx(5 * far_l1, rel=1e-5)


def test_keep_identity_fetches_the_label_back_once_the_track_query_localises_it():
    # track query 0 now sits on A: 𝔖_a gives A to it, det0 (far) goes background
    layer = [FAR, C_BOX, A_BOX]
    out = make_output([layer, layer], num_det=2, num_track=1)
    target = make_target([A_BOX, C_BOX], [10, 30])
    result = make_criterion(rfs=True, rfs_reading="keep_identity").frame_loss(out, target, tensor_ids(10))
    assert result.assignments["det"][0].tolist() == [-1, 1, 0]
    assert result.stats["early_track"] == 1.0 and result.stats["early_det"] == 1.0


def test_keep_identity_keeps_an_absent_identity_as_background():
    # track 0 carries id 99, absent from the frame; 𝔖_a would give it A, Eq. 2 says background
    layer = [FAR, A_BOX]
    out = make_output([layer, layer], num_det=1, num_track=1)
    result = make_criterion(rfs=True, rfs_reading="keep_identity").frame_loss(
        out, make_target([A_BOX], [10]), tensor_ids(99)
    )
    assert result.assignments["det"][0].tolist() == [-1, -1]
    assert result.stats["early_track"] == 1.0  # σ_a matched A to the track slot all the same


def test_every_reading_is_a_supervision_class_and_an_unknown_one_names_the_choices():
    # the names params are checked against (without torch) are exactly the implemented readings
    assert set(RFS_READINGS) == set(RFS_READING_NAMES) >= {"literal", "keep_identity"}
    assert set(PLD_READINGS) == set(PLD_READING_NAMES) >= {"literal", "track_aware", "consistent"}
    with pytest.raises(ValueError, match=r"rfs.reading = 'nope'.*keep_identity"):
        RFSConfig(reading="nope")
    with pytest.raises(ValueError, match=r"pld.reading = 'nope'.*track_aware"):
        PLDConfig(reading="nope")


def test_tgd_follow_layer_and_mean_reduce():
    # 1 detect query on A (free label), track 0 carries id 10 (label A) but sits far away
    groups = 2
    layer = [A_BOX, FAR] + [FAR] * groups
    out = make_output([layer, layer], num_det=1, num_track=1, num_groups=groups)
    target = make_target([A_BOX], [10])
    kwargs = dict(rfs=True, tgd=True, rfs_reading="literal")
    last = make_criterion(**kwargs, follow="last").frame_loss(out, target, tensor_ids(10))
    same = make_criterion(**kwargs, follow="layer").frame_loss(out, target, tensor_ids(10))
    # literal RFS: the early layer gives A to det0 and trains track 0 as background
    assert last.assignments["det"][0].tolist() == [0, -1]
    assert last.assignments["tgd"].tolist() == [[0, 0], [0, 0]]  # copies follow the last layer
    assert same.assignments["tgd"].tolist() == [[-1, -1], [0, 0]]  # ... or their own layer
    mean = make_criterion(**kwargs, reduce="mean").frame_loss(out, target, tensor_ids(10))
    for term in ("cls", "l1", "giou"):
        assert mean.losses[f"tgd_{term}"].item() == pytest.approx(last.losses[f"tgd_{term}"].item() / groups)


def test_tgd_mask_readings_differ_only_in_what_a_copy_sees():
    eq4 = attention_mask(1, 1, 2)
    one_way = attention_mask(1, 1, 2, mode="one_way")
    replica = attention_mask(1, 1, 2, mode="replica")
    # query order: det0, track0, copy group 0, copy group 1 (True = blocked); the originals' rows
    # are the same in all three: they never see a copy
    assert eq4.int().tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 0, 1], [1, 1, 1, 0]]
    assert one_way.int().tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1], [0, 0, 1, 0]]
    # a copy sees det0 and its own group, as track0 sees det0 and itself
    assert replica.int().tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [0, 1, 0, 1], [0, 1, 1, 0]]
    with pytest.raises(ValueError, match="not one of"):
        attention_mask(1, 1, 2, mode="both")


def test_tracking_counts_duplicates_and_track_scores():
    # det0 (score 0.73) on tracked A: a duplicate at birth 0.5, not at 0.8; det1 on untracked C
    logits = torch.tensor([[1.0], [2.0], [0.0]])
    boxes = torch.tensor([A_BOX, C_BOX, [0.31, 0.3, 0.2, 0.2]])
    labels = torch.tensor([-1, 1, 0])  # last layer: det1 ↔ C, track 0 ↔ A (Eq. 2)
    targets = torch.tensor([A_BOX, C_BOX])
    counts = tracking_counts(logits, boxes, 2, tensor_ids(10), labels, targets, birth_score=0.5)
    assert counts["track_queries"] == 1.0 and counts["tracked_present"].item() == 1
    assert counts["track_score_sum"].item() == pytest.approx(0.5)
    assert counts["duplicates"].item() == 1
    strict = tracking_counts(logits, boxes, 2, tensor_ids(10), labels, targets, birth_score=0.8)
    assert strict["duplicates"].item() == 0


def test_pld_track_aware_gives_a_tracked_targets_pseudo_label_to_its_track_query():
    # det0 sits exactly on pseudo box P_A; track 0 carries id 10 (label A) and sits a bit off it
    from motrv3.config import LossConfig, PLDConfig, RFSConfig, TGDConfig
    from motrv3.criterion import ClipCriterion
    from motrv3.matcher import build_matcher

    off_a = [0.33, 0.3, 0.2, 0.2]
    out = make_output([[A_BOX, C_BOX, off_a]], num_det=2, num_track=1, logits=[[0.0, 0.0, 0.0]])
    target = make_target([A_BOX], [10], pseudo_boxes=[A_BOX, [0.3, 0.7, 0.2, 0.2]], pseudo_scores=[0.9, 0.6])

    def criterion(reading):
        return ClipCriterion(
            build_matcher(LossConfig()), LossConfig(), RFSConfig(enabled=False),
            PLDConfig(enabled=True, reading=reading), TGDConfig(enabled=False), record_assignments=True,
        )  # fmt: skip

    literal = criterion("literal").frame_loss(out, target, tensor_ids(10))
    aware = criterion("track_aware").frame_loss(out, target, tensor_ids(10))
    # Eq. 3 over all queries: det0 wins P_A (a positive on a tracked target), det1 takes P_C
    assert literal.assignments["pld"][0].tolist() == [0, 1, -1]
    # track-aware: P_A (IoU 0.74 with A) goes to track 0, det0 is background (ω 0.5), det1 takes P_C
    assert aware.assignments["pld"][0].tolist() == [-1, 1, 0]
    l1 = 0.9 * 0.03
    assert aware.losses["pld_l1"].item() == pytest.approx(5 * l1, rel=1e-4)


def test_pld_consistent_spares_the_query_the_layers_ground_truth_trains_positive():
    # RFS keep_identity + PLD. det0 sits on A (id 10), which track 0 carries but misses (far);
    # det1 sits on the new label C. Pseudo labels P_A = A (0.9) and P_C = C (0.6). All logits 0.
    from motrv3.config import LossConfig, PLDConfig, RFSConfig, TGDConfig
    from motrv3.criterion import ClipCriterion
    from motrv3.matcher import build_matcher

    layer = [A_BOX, C_BOX, FAR]
    out = make_output([layer, layer], num_det=2, num_track=1)
    target = make_target([A_BOX, C_BOX], [10, 30], pseudo_boxes=[A_BOX, C_BOX], pseudo_scores=[0.9, 0.6])

    def criterion(reading):
        return ClipCriterion(
            build_matcher(LossConfig()), LossConfig(), RFSConfig(enabled=True, reading="keep_identity"),
            PLDConfig(enabled=True, reading=reading), TGDConfig(enabled=False), record_assignments=True,
        )  # fmt: skip

    aware = criterion("track_aware").frame_loss(out, target, tensor_ids(10))
    consistent = criterion("consistent").frame_loss(out, target, tensor_ids(10))
    # early layer: 𝔖_a trains det0 positive on A; the last layer: Eq. 1 trains det0 as background
    assert aware.assignments["det"][:, 0].tolist() == [0, -1]
    # both readings give P_A to track 0 and P_C to det1 in both layers: det0 has no pseudo label
    for result in (aware, consistent):
        assert result.assignments["pld"].tolist() == [[-1, 1, 0], [-1, 1, 0]]
    # track_aware: det0 pays ω = 0.5 background in both layers; consistent only in the last one,
    # where the ground truth trains it as background too. Focal background at p = 0.5:
    # (1 − α) · p^γ · −log(1 − p) = 0.75 · 0.25 · ln 2, λ_cls = 2.
    background = 0.75 * 0.25 * math.log(2)
    gap = aware.losses["pld_cls"].item() - consistent.losses["pld_cls"].item()
    assert gap == pytest.approx(2 * 0.5 * background, rel=1e-5)
    assert consistent.losses["pld_l1"].item() == pytest.approx(aware.losses["pld_l1"].item())
