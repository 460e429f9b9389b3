"""AssignmentStats (Fig. 2 / Fig. 6 statistics) on a constructed two-frame clip, counted by hand."""

from __future__ import annotations

import pytest
import torch

from motrv3.stats import AssignmentStats, sum_stats
from tests.test_criterion import make_criterion, make_output, make_target, tensor_ids

A_BOX, B_BOX, C_BOX = [0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2], [0.3, 0.7, 0.2, 0.2]
FAR1, FAR2, FAR3 = [0.9, 0.1, 0.05, 0.05], [0.1, 0.9, 0.05, 0.05], [0.9, 0.9, 0.05, 0.05]


def two_frames(rfs: bool):
    """Frame 1: labels A (id 10, tracked by t0), B, C (new); frame 2: A and B, both tracked.

    Frame 1, layer 0: d0 on A, d1 on B, d2 on C, t0 far; layer 1 (last): d0 on B, d1 far, d2 on C.
    Frame 2, both layers: detect queries far, t0 on A, t1 on B.
    """
    criterion = make_criterion(rfs=rfs)
    first = make_output([[A_BOX, B_BOX, C_BOX, FAR1], [B_BOX, FAR2, C_BOX, FAR1]], num_det=3, num_track=1)
    first_result = criterion.frame_loss(
        first, make_target([A_BOX, B_BOX, C_BOX], [10, 20, 30]), tensor_ids(10)
    )
    layer = [FAR1, FAR2, FAR3, A_BOX, B_BOX]
    second = make_output([layer, layer], num_det=3, num_track=2)
    second_result = criterion.frame_loss(second, make_target([A_BOX, B_BOX], [10, 20]), tensor_ids(10, 20))
    return first_result, second_result


def test_counts_with_rfs_match_hand_counts():
    first, second = two_frames(rfs=True)
    # frame 1: 𝔖_a in layer 0 gives A, B, C to d0, d1, d2; the last layer gives A to t0 (Eq. 2)
    # and B, C to d0, d2 (Eq. 1). Detect query of each label, layer 0 → last: A d0 → none,
    # B d1 → d0, C d2 → d2: labels A and B are misaligned, C is not.
    assert first.assignments["det"].tolist() == [[0, 1, 2, -1], [1, -1, 2, 0]]
    assert second.assignments["det"].tolist() == [[-1, -1, -1, 0, 1]] * 2
    stats = AssignmentStats(num_queries=3)
    stats.update([first.stats, second.stats])
    # activations over both supervised layers: d0 twice (A, then B), d1 once (B), d2 twice (C)
    assert stats.slot_histogram() == [2, 1, 2]
    summary = stats.summary()
    assert summary["assign/frames"] == 2
    assert summary["assign/labels"] == 5
    assert summary["assign/last_det_share"] == pytest.approx(2 / 5)  # B, C of frame 1
    assert summary["assign/last_track_share"] == pytest.approx(3 / 5)  # A of frame 1, A, B of frame 2
    assert summary["assign/early_det_share"] == pytest.approx(3 / 5)  # one early layer per frame
    assert summary["assign/early_track_share"] == pytest.approx(2 / 5)
    assert summary["assign/misaligned_share"] == pytest.approx(2 / 5)  # A, B of 5 labels
    assert summary["assign/det_slots_active"] == pytest.approx(3 / 3)
    assert summary["assign/det_slot_matches_mean"] == pytest.approx(5 / 3)
    assert summary["assign/det_slot_matches_max"] == 2.0


def test_counts_without_rfs_match_hand_counts():
    first, second = two_frames(rfs=False)
    # layer 0 now uses Eq. 1 + 2: A stays with t0; B → d1, C → d2 (d0 sits on A, which is not free)
    assert first.assignments["det"].tolist() == [[-1, 1, 2, 0], [1, -1, 2, 0]]
    stats = AssignmentStats(num_queries=3)
    for frame in (first, second):
        stats.update(frame.stats)
    summary = stats.summary()
    assert summary["assign/early_det_share"] == pytest.approx(2 / 5)
    assert summary["assign/early_track_share"] == pytest.approx(3 / 5)
    # only B moves (d1 → d0); the old count of detect queries (d0 and d1) gave 2 / 5 for it
    assert summary["assign/misaligned_share"] == pytest.approx(1 / 5)
    # Fig. 2 a/b: without RFS layer 0 trains d1, d2 (not d0): the histograms differ from RFS's
    assert stats.slot_histogram() == [1, 1, 2]


def test_merge_reset_and_clip_sums():
    first, second = two_frames(rfs=True)
    one, other = AssignmentStats(3), AssignmentStats(3)
    one.update(first.stats)
    other.update(second.stats)
    one.merge(other)
    together = AssignmentStats(3)
    together.update(sum_stats([first.stats, second.stats]))  # a clip's stats, summed by the runner
    assert one.summary() == together.summary()
    assert one.slot_histogram() == together.slot_histogram()
    one.reset()
    assert one.slot_histogram() == [0, 0, 0] and one.summary()["assign/labels"] == 0.0
    assert together.summary()["assign/misaligned_share"] == pytest.approx(2 / 5)
    with pytest.raises(ValueError, match="detect queries"):
        AssignmentStats(4).update(first.stats)
    with pytest.raises(ValueError, match="detect queries"):
        AssignmentStats(4).merge(one)
    assert isinstance(together.slots, torch.Tensor)


def test_aux_loss_off_measures_no_early_layers():
    criterion = make_criterion(rfs=True, aux_loss=False)
    out = make_output([[A_BOX, FAR1], [A_BOX, FAR1]], num_det=2, num_track=0)
    result = criterion.frame_loss(out, make_target([A_BOX], [1]), tensor_ids())
    assert result.stats["early_layers"] == 0.0 and result.stats["misaligned_of"] == 0.0
    assert "misaligned" not in result.stats
    assert result.stats["det_slot_matches"].tolist() == [1, 0]  # the last layer only
    assert result.stats["last_det"] == 1.0


def test_rfs_changes_the_activation_histogram_fig2ab():
    """Fig. 2 a/b: a label tracked by t0 is released by RFS to d0 in the early layers only."""
    out = make_output([[A_BOX, FAR1, FAR2], [A_BOX, FAR1, FAR2], [FAR3, FAR1, A_BOX]], num_det=2, num_track=1)
    target = make_target([A_BOX], [10])
    histograms = {}
    for rfs in (False, True):
        stats = AssignmentStats(num_queries=2)
        stats.update(make_criterion(rfs=rfs).frame_loss(out, target, tensor_ids(10)).stats)
        histograms[rfs] = stats.slot_histogram()
    assert histograms == {False: [0, 0], True: [2, 0]}  # layers 0 and 1 give A to d0 under 𝔖_a


def test_misaligned_share_is_a_share_of_labels_fig6():
    """One label, held by d0 in the early layer and by d1 in the last: 1 of 1 label (100 %), where
    counting queries gave 2 of 1 (200 %)."""
    out = make_output([[A_BOX, FAR1], [FAR2, A_BOX]], num_det=2, num_track=0)
    result = make_criterion().frame_loss(out, make_target([A_BOX], [1]), tensor_ids())
    assert result.assignments["det"].tolist() == [[0, -1], [-1, 0]]
    stats = AssignmentStats(num_queries=2)
    stats.update(result.stats)
    assert stats.summary()["assign/misaligned_share"] == 1.0
    aligned = make_output([[A_BOX, FAR1], [A_BOX, FAR1]], num_det=2, num_track=0)
    stats.update(make_criterion().frame_loss(aligned, make_target([A_BOX], [1]), tensor_ids()).stats)
    assert stats.summary()["assign/misaligned_share"] == pytest.approx(1 / 2)
    assert all(0.0 <= value <= 1.0 for key, value in stats.summary().items() if key.endswith("_share"))
