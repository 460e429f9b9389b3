"""The three MOTRv3 strategies in the criterion: RFS (§3.2), PLD (Eq. 3), TGD (§3.4); switches off = MOTR."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from scipy.optimize import linear_sum_assignment
from torchvision.ops import box_convert, generalized_box_iou_loss, sigmoid_focal_loss

from motrv3.config import LossConfig, PLDConfig, RFSConfig, TGDConfig, TrackingConfig
from motrv3.matcher import HungarianMatcher
from tests.model_configs import tiny_config
from tests.test_criterion import (
    FAR,
    focal_negative,
    focal_positive,
    make_criterion,
    make_output,
    make_target,
    tensor_ids,
)

A_BOX, B_BOX, C_BOX = [0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2], [0.3, 0.7, 0.2, 0.2]


# ----------------------------------------------------------------------------------------- RFS
def test_rfs_early_layer_gives_a_label_to_another_track_query_and_last_layer_to_its_identity():
    # track query 0 carries id 10 (label A) but sits on B; track query 1 carries id 20 and sits on A
    layer = [FAR, B_BOX, A_BOX]
    out = make_output([layer, layer, layer], num_det=1, num_track=2)
    target = make_target([A_BOX, B_BOX], [10, 20])
    with_rfs = make_criterion(rfs=True).frame_loss(out, target, tensor_ids(10, 20))
    assert with_rfs.assignments["det"].tolist() == [[-1, 1, 0], [-1, 1, 0], [-1, 0, 1]]
    without = make_criterion(rfs=False).frame_loss(out, target, tensor_ids(10, 20))
    assert without.assignments["det"].tolist() == [[-1, 0, 1]] * 3
    only_first = make_criterion(rfs=True, rfs_layers=[0]).frame_loss(out, target, tensor_ids(10, 20))
    assert only_first.assignments["det"].tolist() == [[-1, 1, 0], [-1, 0, 1], [-1, 0, 1]]


def test_rfs_releases_a_tracked_label_to_a_closer_detect_query_in_early_layers_only():
    # det0 sits on A (id 10), which track query 0 carries but misses; det1 sits on the new label C
    layer = [A_BOX, C_BOX, FAR]
    out = make_output([layer, layer], num_det=2, num_track=1)
    target = make_target([A_BOX, C_BOX], [10, 30])
    result = make_criterion(rfs=True).frame_loss(out, target, tensor_ids(10))
    assert result.assignments["det"][0].tolist() == [0, 1, -1]  # 𝔖_a: A released to det0
    assert result.assignments["det"][1].tolist() == [-1, 1, 0]  # last layer: Eq. 1 + Eq. 2
    # Eq. 2's propagation follows the last layer only: det0 does not become a track of id 10
    assert result.query_ids.tolist() == [-1, 30, 10]
    assert result.stats["early_det"] == 2.0 and result.stats["early_track"] == 0.0
    assert result.stats["last_det"] == 1.0 and result.stats["last_track"] == 1.0


def test_rfs_changes_the_loss_only_through_the_early_assignment():
    layer = [A_BOX, C_BOX, FAR]
    out = make_output([layer, layer], num_det=2, num_track=1)
    target = make_target([A_BOX, C_BOX], [10, 30])
    with_rfs = make_criterion(rfs=True).frame_loss(out, target, tensor_ids(10))
    without = make_criterion(rfs=False).frame_loss(out, target, tensor_ids(10))
    # without RFS both layers pay track query 0's far box; with RFS only the last layer does
    far_l1 = sum(abs(a - b) for a, b in zip(FAR, A_BOX, strict=True))
    assert without.losses["det_l1"].item() == pytest.approx(2 * 5 * far_l1, rel=1e-5)
    assert with_rfs.losses["det_l1"].item() == pytest.approx(5 * far_l1, rel=1e-5)


# ----------------------------------------------------------------------------------------- PLD
def test_pld_weights_each_query_loss_as_eq3():
    queries = [[0.32, 0.3, 0.2, 0.2], [0.5, 0.5, 0.1, 0.1], [0.7, 0.73, 0.2, 0.2]]  # det0, det1, track0
    logits = [[0.5, 1.0, -1.0]]
    out = make_output([queries], num_det=2, num_track=1, logits=logits)
    target = make_target(
        [],
        [],
        pseudo_boxes=[[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2], [0.5, 0.5, 0.1, 0.1]],
        pseudo_scores=[0.9, 0.3, 0.01],  # the last is under pld.threshold 0.05: discarded
    )
    result = make_criterion(pld=True).frame_loss(out, target, tensor_ids(-1))
    assert result.assignments["pld"][0].tolist() == [0, -1, 1]
    # det0 ↔ pseudo 0 (ω 0.9, shifted 0.02 in x), det1 unmatched (ω 0.5, background), track0 ↔
    # pseudo 1 (ω 0.3, shifted 0.03 in y). Equal-size boxes shifted by d: GIoU = (w − d) / (w + d).
    cls = 0.9 * focal_positive(0.5) + 0.5 * focal_negative(1.0) + 0.3 * focal_positive(-1.0)
    l1 = 0.9 * 0.02 + 0.3 * 0.03
    giou = 0.9 * (1 - 0.18 / 0.22) + 0.3 * (1 - 0.17 / 0.23)
    assert result.losses["pld_cls"].item() == pytest.approx(2 * cls, rel=1e-5)
    assert result.losses["pld_l1"].item() == pytest.approx(5 * l1, rel=1e-4)
    assert result.losses["pld_giou"].item() == pytest.approx(2 * giou, rel=1e-4)


def test_pld_without_pseudo_labels_adds_nothing():
    out = make_output([[A_BOX, FAR]], num_det=2, num_track=0)
    target = make_target([A_BOX], [1], pseudo_boxes=[B_BOX], pseudo_scores=[0.01])
    result = make_criterion(pld=True).frame_loss(out, target, tensor_ids())
    assert all(result.losses[f"pld_{t}"].item() == 0.0 for t in ("cls", "l1", "giou"))
    assert result.assignments["pld"].tolist() == [[-1, -1]]


def test_pld_matches_at_every_layer():
    out = make_output([[A_BOX, B_BOX], [B_BOX, A_BOX]], num_det=2, num_track=0)
    target = make_target([], [], pseudo_boxes=[A_BOX], pseudo_scores=[0.8])
    result = make_criterion(pld=True).frame_loss(out, target, tensor_ids())
    assert result.assignments["pld"].tolist() == [[0, -1], [-1, 0]]


# ----------------------------------------------------------------------------------------- TGD
def test_tgd_groups_take_the_original_track_assignment():
    generator = torch.Generator().manual_seed(3)
    num_det, num_track, groups, layers = 2, 3, 4, 3
    size = num_det + num_track + groups * num_track
    boxes = torch.cat(
        [torch.rand(layers, size, 2, generator=generator) * 0.6 + 0.2, torch.full((layers, size, 2), 0.1)], -1
    )
    out = make_output(boxes.tolist(), num_det, num_track, num_groups=groups)
    target = make_target([A_BOX, B_BOX, C_BOX], [10, 20, 30])
    track_ids = tensor_ids(20, -1, 10)
    for rfs in (False, True):
        result = make_criterion(rfs=rfs, tgd=True).frame_loss(out, target, track_ids)
        track_assigned = result.assignments["det"][-1, num_det:].tolist()
        assert track_assigned[0] == 1 and track_assigned[2] == 0  # Eq. 2: ids 20, 10
        # every copy group, in every layer, takes the last layer's assignment of the originals
        assert result.assignments["tgd"].tolist() == [track_assigned * groups] * layers


def test_tgd_loss_is_the_detection_loss_of_each_group():
    # groups that copy the original track queries exactly cost G times the track queries' loss
    groups = 3
    track = [[0.32, 0.3, 0.2, 0.2], [0.6, 0.6, 0.2, 0.3]]
    logits = [[0.3, -0.7] * (groups + 1)]
    out = make_output([track * (groups + 1)], num_det=0, num_track=2, num_groups=groups, logits=logits)
    result = make_criterion(tgd=True).frame_loss(out, make_target([A_BOX], [10]), tensor_ids(10, 20))
    for term in ("cls", "l1", "giou"):
        assert result.losses[f"tgd_{term}"].item() == pytest.approx(
            groups * result.losses[f"det_{term}"].item(), rel=1e-5
        )
    assert result.losses["tgd_l1"].item() > 0


def test_tgd_groups_without_tgd_enabled_are_an_error():
    out = make_output([[A_BOX, A_BOX]], num_det=0, num_track=1, num_groups=1)
    with pytest.raises(ValueError, match="tgd.enabled"):
        make_criterion(tgd=False).frame_loss(out, make_target([A_BOX], [1]), tensor_ids(1))


# ---------------------------------------------------------------------------- switches off = MOTR
def reference_motr_loss(out, target, track_ids, loss_cfg: LossConfig) -> float:
    """MOTR's frame loss written out directly (`ClipMatcher.match_for_single_frame`): Eq. 2 by
    identity, Eq. 1 by scipy between the `obj_idxes == -1` slots (detect queries and track queries
    without identity) and the untracked labels, every layer."""
    matcher = HungarianMatcher(loss_cfg.cls_weight, loss_cfg.l1_weight, loss_cfg.giou_weight)
    num_det, num_track = out.num_det, out.num_track
    obj_ids = target["obj_ids"].tolist()
    tracked = {j: obj_ids.index(i) for j, i in enumerate(track_ids.tolist()) if i in obj_ids}
    new = [k for k in range(len(obj_ids)) if k not in tracked.values()]
    free = list(range(num_det)) + [num_det + j for j, i in enumerate(track_ids.tolist()) if i < 0]
    total = 0.0
    for layer in range(out.num_layers):
        logits, boxes = out.logits[layer, : num_det + num_track], out.boxes[layer, : num_det + num_track]
        cost = matcher.cost_matrix(logits[free], boxes[free], target["labels"][new], target["boxes"][new])
        rows, cols = linear_sum_assignment(cost.numpy())
        pairs = [(free[r], new[c]) for r, c in zip(rows, cols, strict=True)]
        pairs += [(num_det + j, k) for j, k in tracked.items()]
        class_target = torch.zeros_like(logits)
        for q, k in pairs:
            class_target[q, target["labels"][k]] = 1
        total += loss_cfg.cls_weight * sigmoid_focal_loss(logits, class_target, 0.25, 2.0).sum().item()
        for q, k in pairs:
            source, goal = boxes[q : q + 1], target["boxes"][k : k + 1]
            total += loss_cfg.l1_weight * (source - goal).abs().sum().item()
            total += (
                loss_cfg.giou_weight
                * generalized_box_iou_loss(
                    box_convert(source, "cxcywh", "xyxy"), box_convert(goal, "cxcywh", "xyxy")
                )
                .sum()
                .item()
            )
    return total


def random_frame(seed: int, num_det=5, num_track=3, layers=3, groups=0):
    generator = torch.Generator().manual_seed(seed)
    size = num_det + num_track + groups * num_track
    centres = torch.rand(layers, size, 2, generator=generator) * 0.6 + 0.2
    sizes = torch.rand(layers, size, 2, generator=generator) * 0.2 + 0.05
    logits = torch.randn(layers, size, generator=generator)
    out = make_output(torch.cat([centres, sizes], -1).tolist(), num_det, num_track, groups, logits.tolist())
    gt = torch.cat(
        [
            torch.rand(5, 2, generator=generator) * 0.6 + 0.2,
            torch.rand(5, 2, generator=generator) * 0.2 + 0.05,
        ],
        -1,
    )
    pseudo = torch.cat([torch.rand(4, 2, generator=generator) * 0.6 + 0.2, torch.full((4, 2), 0.1)], -1)
    target = make_target(gt.tolist(), [11, 12, 13, 14, 15], pseudo.tolist(), [0.9, 0.6, 0.3, 0.1])
    return out, target, tensor_ids(11, 99, -1)  # a present identity, an absent one, a false positive


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_all_strategies_off_is_the_motr_baseline(seed):
    out, target, track_ids = random_frame(seed)
    result = make_criterion().frame_loss(out, target, track_ids)
    assert set(result.losses) == {"det_cls", "det_l1", "det_giou"}
    total = sum(value.item() for value in result.losses.values())
    assert total == pytest.approx(reference_motr_loss(out, target, track_ids, LossConfig()), rel=1e-5)


def test_inactive_strategies_give_the_baseline_loss_bit_for_bit():
    from motrv3.criterion import clip_loss

    out, target, track_ids = random_frame(4)
    baseline, _ = clip_loss([make_criterion().frame_loss(out, target, track_ids)])
    no_pseudo = dict(target, pseudo_boxes=torch.zeros(0, 4), pseudo_scores=torch.zeros(0))
    # RFS on an empty layer list, PLD on a frame without pseudo labels, TGD without groups
    inactive = make_criterion(rfs=True, pld=True, tgd=True, rfs_layers=[])
    loss, terms = clip_loss([inactive.frame_loss(out, no_pseudo, track_ids)])
    assert torch.equal(loss, baseline)
    assert terms["pld_cls"] == 0.0 and terms["tgd_cls"] == 0.0
    # and each switch really changes the loss when it has something to act on
    for switches in ({"rfs": True}, {"pld": True}):
        changed, _ = clip_loss([make_criterion(**switches).frame_loss(out, target, track_ids)])
        assert not torch.equal(changed, baseline), switches


# ------------------------------------------------------------------------ a training step (model)
RUNNER = Path(__file__).resolve().parents[1] / "motrv3" / "runner.py"


@pytest.mark.skipif(not RUNNER.exists(), reason="motrv3/runner.py (clip_forward) is not in the tree yet")
def test_a_training_step_runs_for_every_strategy_combination():
    import motrv3
    from motrv3.criterion import build_criterion

    model_cfg = tiny_config(backbone="resnet18", num_feature_levels=1, num_queries=8)
    # Random weights match no label with IoU > 0.5, so no identity survives to frame 2; keeping
    # every query as a false-positive track still gives frame 2 track queries (and TGD groups).
    tracking_cfg = TrackingConfig(fp_track_prob=0.5, fp_score_threshold=0.0)
    generator = torch.Generator().manual_seed(0)
    boxes = torch.tensor([[0.3, 0.4, 0.2, 0.4], [0.7, 0.5, 0.2, 0.5]])
    targets = [
        {
            "boxes": boxes + shift,
            "labels": torch.zeros(2, dtype=torch.long),
            "obj_ids": torch.tensor([1, 2]),
            "pseudo_boxes": boxes + shift + 0.01,
            "pseudo_scores": torch.tensor([0.9, 0.4]),
        }
        for shift in (0.0, 0.02)
    ]
    clip = {
        "images": torch.randn(2, 3, 64, 96, generator=generator),
        "targets": targets,
        "meta": {"sequence": "s", "frames": [1, 2], "orig_size": (64, 96), "size": (64, 96)},
    }
    for rfs, pld, tgd in itertools.product((False, True), repeat=3):
        torch.manual_seed(0)
        tgd_cfg = TGDConfig(enabled=tgd, groups=2)
        model = motrv3.build_model(model_cfg, tracking_cfg, tgd_cfg).train()
        criterion = build_criterion(
            model_cfg, LossConfig(), RFSConfig(enabled=rfs), PLDConfig(enabled=pld), tgd_cfg
        )
        result = motrv3.clip_forward(
            model, criterion, clip, tracking_cfg, generator=torch.Generator().manual_seed(1)
        )
        assert torch.isfinite(result.loss) and result.loss.requires_grad
        assert result.num_tracks[0] == 0 and result.num_tracks[1] > 0
        result.loss.backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        assert any(name.startswith("pld_") for name in result.terms) == pld, (rfs, pld, tgd)
        assert any(name.startswith("tgd_") for name in result.terms) == tgd, (rfs, pld, tgd)
        if tgd:
            assert result.terms["tgd_cls"] > 0, "frame 2's track groups got no loss"
        if pld:
            assert result.terms["pld_l1"] > 0
        assert math.isfinite(result.terms["loss"])
