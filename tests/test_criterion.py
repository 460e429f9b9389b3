"""ClipCriterion: the loss terms by hand, MOTR's assignment (Eqs. 1, 2), Eq. 5, and input checks."""

from __future__ import annotations

import math

import pytest
import torch

from motrv3.config import LossConfig, ModelConfig, PLDConfig, RFSConfig, TGDConfig
from motrv3.criterion import ClipCriterion, build_criterion, clip_loss, identity_assignment, validate_output
from motrv3.matcher import build_matcher
from motrv3.structures import FrameLossResult, FrameOutput

FAR = [0.9, 0.9, 0.05, 0.05]  # a box overlapping nothing in these tests


def make_output(boxes, num_det, num_track, num_groups=0, logits=None) -> FrameOutput:
    """FrameOutput from boxes [L][S][4] (and logits [L][S], default 0: only boxes decide matches)."""
    boxes = torch.tensor(boxes, dtype=torch.float32)
    logits = torch.zeros(boxes.shape[:2]) if logits is None else torch.tensor(logits, dtype=torch.float32)
    return FrameOutput(
        logits=logits[..., None],
        boxes=boxes,
        hidden=torch.zeros(boxes.shape[1], 8),
        num_det=num_det,
        num_track=num_track,
        num_groups=num_groups,
    )


def make_target(boxes, obj_ids, pseudo_boxes=(), pseudo_scores=()) -> dict:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.zeros(len(obj_ids), dtype=torch.long),
        "obj_ids": torch.tensor(obj_ids, dtype=torch.long),
        "pseudo_boxes": torch.tensor(pseudo_boxes, dtype=torch.float32).reshape(-1, 4),
        "pseudo_scores": torch.tensor(pseudo_scores, dtype=torch.float32),
    }


def make_criterion(
    rfs=False, pld=False, tgd=False, rfs_layers=None, aux_loss=True, rfs_reading="literal", **tgd_options
) -> ClipCriterion:
    loss_cfg = LossConfig(aux_loss=aux_loss)
    return ClipCriterion(
        build_matcher(loss_cfg),
        loss_cfg,
        RFSConfig(enabled=rfs, layers=rfs_layers, reading=rfs_reading),
        PLDConfig(enabled=pld),
        TGDConfig(enabled=tgd, **tgd_options),
        num_classes=1,
        record_assignments=True,
    )


def focal_positive(logit: float, alpha=0.25, gamma=2.0) -> float:
    p = 1 / (1 + math.exp(-logit))
    return alpha * (1 - p) ** gamma * -math.log(p)


def focal_negative(logit: float, alpha=0.25, gamma=2.0) -> float:
    p = 1 / (1 + math.exp(-logit))
    return (1 - alpha) * p**gamma * -math.log(1 - p)


def tensor_ids(*ids: int) -> torch.Tensor:
    return torch.tensor(ids, dtype=torch.long)


def test_loss_terms_of_one_query_and_one_box_by_hand():
    criterion = make_criterion()
    out = make_output([[[0.5, 0.5, 0.2, 0.2]]], num_det=1, num_track=0, logits=[[0.5]])
    result = criterion.frame_loss(out, make_target([[0.6, 0.6, 0.2, 0.2]], [7]), tensor_ids())
    losses = {name: value.item() for name, value in result.losses.items()}
    assert set(losses) == {"det_cls", "det_l1", "det_giou"}
    assert losses["det_cls"] == pytest.approx(2 * focal_positive(0.5), rel=1e-5)
    assert losses["det_l1"] == pytest.approx(5 * 0.2, rel=1e-5)
    giou = 0.01 / 0.07 - (0.09 - 0.07) / 0.09  # hand-worked in test_matcher
    assert losses["det_giou"] == pytest.approx(2 * (1 - giou), rel=1e-5)
    assert result.num_objects == 1.0
    assert result.query_ids.tolist() == [7] and result.query_labels.tolist() == [0]


def test_background_query_pays_only_the_negative_focal_term():
    criterion = make_criterion()
    out = make_output([[[0.5, 0.5, 0.2, 0.2], FAR]], num_det=2, num_track=0, logits=[[0.5, 1.5]])
    result = criterion.frame_loss(out, make_target([[0.5, 0.5, 0.2, 0.2]], [7]), tensor_ids())
    expected = 2 * (focal_positive(0.5) + focal_negative(1.5))
    assert result.losses["det_cls"].item() == pytest.approx(expected, rel=1e-5)
    assert result.losses["det_l1"].item() == pytest.approx(0.0, abs=1e-6)
    assert result.query_ids.tolist() == [7, -1]


def test_track_query_keeps_its_identity_even_when_a_detect_query_is_closer():
    # labels: A (id 10, carried by track query 0) and C (id 30, newly appeared)
    a_box, c_box = [0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]
    layer = [
        a_box,
        c_box,
        [0.35, 0.6, 0.2, 0.2],
        a_box,
    ]  # det0 on A, det1 on C, track0 off A, track1 (FP) on A
    out = make_output([layer, layer], num_det=2, num_track=2)
    result = make_criterion().frame_loss(out, make_target([a_box, c_box], [10, 30]), tensor_ids(10, -1))
    for assigned in result.assignments["det"]:
        assert assigned.tolist() == [-1, 1, 0, -1]  # det0 background, det1 → C, track0 → A, FP track bg
    # Ψ: det1 becomes identity 30, track0 keeps 10; the FP track found no free label (C went to det1)
    assert result.query_ids.tolist() == [-1, 30, 10, -1]
    assert result.query_labels.tolist() == [-1, 1, 0, -1]
    assert result.num_objects == 2.0


def test_track_query_of_an_absent_identity_is_background():
    assert identity_assignment(tensor_ids(5, 7, -1), tensor_ids(7, 9)).tolist() == [-1, 0, -1]
    assert identity_assignment(tensor_ids(5), tensor_ids()).tolist() == [-1]


def test_detect_queries_match_at_every_layer_independently():
    a_box, b_box = [0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]
    out = make_output([[a_box, b_box], [b_box, a_box]], num_det=2, num_track=0)
    result = make_criterion().frame_loss(out, make_target([a_box, b_box], [1, 2]), tensor_ids())
    assert result.assignments["det"].tolist() == [[0, 1], [1, 0]]
    assert result.query_ids.tolist() == [2, 1]  # from the last layer


def test_aux_loss_off_supervises_only_the_last_layer():
    a_box = [0.3, 0.3, 0.2, 0.2]
    out = make_output([[[0.5, 0.5, 0.3, 0.3]], [a_box]], num_det=1, num_track=0)
    target = make_target([a_box], [1])
    with_aux = make_criterion(aux_loss=True).frame_loss(out, target, tensor_ids())
    without = make_criterion(aux_loss=False).frame_loss(out, target, tensor_ids())
    assert without.losses["det_l1"].item() == pytest.approx(0.0, abs=1e-6)
    assert with_aux.losses["det_l1"].item() == pytest.approx(5 * (0.2 + 0.2 + 0.1 + 0.1), rel=1e-5)
    assert without.assignments["det"][0].tolist() == [-1]


def test_empty_frame_and_no_queries():
    out = make_output([[[0.5, 0.5, 0.2, 0.2]]], num_det=1, num_track=0, logits=[[0.0]])
    result = make_criterion().frame_loss(out, make_target([], []), tensor_ids())
    assert result.num_objects == 1.0  # clamped
    assert result.losses["det_cls"].item() == pytest.approx(2 * focal_negative(0.0), rel=1e-5)
    assert result.query_ids.tolist() == [-1]
    empty = FrameOutput(torch.zeros(2, 0, 1), torch.zeros(2, 0, 4), torch.zeros(0, 8), 0, 0)
    result = make_criterion(rfs=True).frame_loss(
        empty, make_target([[0.5, 0.5, 0.2, 0.2]], [3]), tensor_ids()
    )
    assert result.losses["det_cls"].item() == 0.0
    assert result.query_ids.numel() == 0


def test_loss_has_gradients_for_the_supervised_queries():
    out = make_output([[[0.5, 0.5, 0.2, 0.2], FAR]], num_det=2, num_track=0)
    out.boxes.requires_grad_(True)
    out.logits.requires_grad_(True)
    result = make_criterion().frame_loss(out, make_target([[0.6, 0.6, 0.2, 0.2]], [1]), tensor_ids())
    loss, _ = clip_loss([result])
    loss.backward()
    assert out.boxes.grad[0, 0].abs().sum() > 0
    assert out.boxes.grad[0, 1].abs().sum() == 0  # background queries get no box loss
    assert out.logits.grad[0, 1].abs().sum() > 0


def test_clip_loss_is_eq5():
    def frame(values: dict[str, float], num_objects: float) -> FrameLossResult:
        return FrameLossResult(
            losses={k: torch.tensor(v) for k, v in values.items()},
            num_objects=num_objects,
            query_ids=tensor_ids(),
            query_labels=tensor_ids(),
        )

    frames = [frame({"det_cls": 3.0, "pld_cls": 1.5}, 3.0), frame({"det_cls": 2.0, "pld_cls": 0.5}, 1.0)]
    loss, terms = clip_loss(frames)
    assert loss.item() == pytest.approx((3.0 + 1.5) / 3 + (2.0 + 0.5) / 1)
    assert terms["det_cls"] == pytest.approx(3.0 / 3 + 2.0)
    assert terms["pld_cls"] == pytest.approx(0.5 + 0.5)
    assert terms["loss"] == pytest.approx(loss.item())
    # a DDP-style hook: every O_i replaced by the workers' mean (here: doubled)
    loss, _ = clip_loss(frames, num_objects_reduce=lambda counts: counts * 2)
    assert loss.item() == pytest.approx((3.0 + 1.5) / 6 + (2.0 + 0.5) / 2)
    loss, _ = clip_loss(frames, num_objects_reduce=lambda counts: counts * 0)
    assert loss.item() == pytest.approx(3.0 + 1.5 + 2.0 + 0.5)  # clamped to 1
    with pytest.raises(ValueError, match="no frames"):
        clip_loss([])


def test_bad_input_names_the_field():
    criterion = make_criterion()
    out = make_output([[[0.5, 0.5, 0.2, 0.2]] * 3], num_det=1, num_track=1)  # 3 queries, expected 2
    with pytest.raises(ValueError, match="M \\+ N \\+ G·N"):
        validate_output(out, 1, tensor_ids(1))
    out = make_output([[[0.5, 0.5, 0.2, 0.2]] * 2], num_det=1, num_track=1)
    with pytest.raises(ValueError, match="track_ids"):
        validate_output(out, 1, tensor_ids(1, 2))
    with pytest.raises(ValueError, match="1 classes, criterion built for 2"):
        validate_output(out, 2, tensor_ids(1))
    good = make_target([[0.5, 0.5, 0.2, 0.2]], [1])
    target = make_target([[0.5, 0.5, 0.2, 0.2]], [1])
    del target["obj_ids"]
    with pytest.raises(ValueError, match="frame 1: target: missing key.*obj_ids"):
        criterion.validate_targets([good, target])
    with pytest.raises(ValueError, match="frame 1: target obj_ids repeats"):
        criterion.validate_targets([good, make_target([[0.5, 0.5, 0.2, 0.2]] * 2, [4, 4])])
    bad_class = make_target([[0.5, 0.5, 0.2, 0.2]], [1])
    bad_class["labels"] = torch.tensor([1])
    with pytest.raises(ValueError, match="frame 0: target labels \\[1\\] outside 0..0"):
        criterion.validate_targets([bad_class])
    target = make_target([[0.5, 0.5, 0.2, 0.2]], [1])
    del target["pseudo_boxes"]
    with pytest.raises(ValueError, match="pseudo_boxes"):
        make_criterion(pld=True).validate_targets([target])
    criterion.validate_targets([good, good])  # a good clip passes
    with pytest.raises(ValueError, match="rfs.layers"):
        build_criterion(
            ModelConfig(dec_layers=3), LossConfig(), RFSConfig(layers=[2]), PLDConfig(), TGDConfig()
        )
    with pytest.raises(ValueError, match="tgd.groups"):
        build_criterion(ModelConfig(), LossConfig(), RFSConfig(), PLDConfig(), TGDConfig(groups=0))


def test_validation_is_once_per_clip_not_in_frame_loss():
    """frame_loss is the hot path: it trusts its input (checked by the runner per clip)."""
    out = make_output([[[0.5, 0.5, 0.2, 0.2]]], num_det=1, num_track=0)
    target = make_target([[0.5, 0.5, 0.2, 0.2]], [1])
    del target["pseudo_boxes"]  # would fail validate_targets with PLD on; PLD is off here
    make_criterion().frame_loss(out, target, tensor_ids())


# ------------------------------------------------------------- Ψ of Eq. 2 in the criterion (MOTR)
def test_track_query_without_identity_is_matched_to_a_new_born_label():
    """MOTR/MOTRv2 match every `obj_idxes == -1` slot, track or detect, to the untracked labels."""
    c_box = [0.7, 0.7, 0.2, 0.2]
    layer = [FAR, c_box]  # det0 far away, track0 (no identity) sits on the new-born label C
    out = make_output([layer, layer], num_det=1, num_track=1)
    result = make_criterion().frame_loss(out, make_target([c_box], [30]), tensor_ids(-1))
    assert result.assignments["det"].tolist() == [[-1, 0], [-1, 0]]
    assert result.query_ids.tolist() == [-1, 30]  # the track query carries 30 from now on
    assert result.stats["last_track"] == 1.0 and result.stats["last_det"] == 0.0


def test_track_query_keeps_an_absent_identity_as_background():
    """A target missing from the frame: its track query is trained as "no object" and keeps the id."""
    a_box = [0.3, 0.3, 0.2, 0.2]
    layer = [FAR, a_box]  # track0 carries 10, whose target is not in this frame
    out = make_output([layer, layer], num_det=1, num_track=1)
    result = make_criterion().frame_loss(out, make_target([[0.7, 0.7, 0.2, 0.2]], [20]), tensor_ids(10))
    assert result.assignments["det"][-1].tolist() == [0, -1]  # 20 to det0; track0 background
    assert result.query_ids.tolist() == [20, 10] and result.query_labels.tolist() == [0, -1]
