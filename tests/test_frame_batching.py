"""Training batches a clip's frames through the backbone (and, detection-only, the whole network):
the same loss and gradients as the frame-by-frame path, and Group DETR's query groups."""

from __future__ import annotations

import torch

import motrv3
from motrv3.config import LossConfig, PLDConfig, RFSConfig, TGDConfig, TrackingConfig
from tests.model_configs import tiny_config


def _clip(frames: int = 3) -> dict:
    generator = torch.Generator().manual_seed(0)
    boxes = torch.tensor([[0.3, 0.4, 0.2, 0.4], [0.7, 0.5, 0.2, 0.5]])
    targets = [
        {
            "boxes": boxes + 0.02 * t,
            "labels": torch.zeros(2, dtype=torch.long),
            "obj_ids": torch.tensor([1, 2]),
        }
        for t in range(frames)
    ]
    return {
        "images": torch.randn(frames, 3, 64, 96, generator=generator),
        "targets": targets,
        "meta": {"sequence": "s", "frames": list(range(frames)), "orig_size": (64, 96), "size": (64, 96)},
    }


def _loss_and_grads(model_cfg, tracking_cfg, detection_only: bool, batch_frames: bool):
    torch.manual_seed(0)
    model = motrv3.build_model(model_cfg, tracking_cfg, TGDConfig(enabled=False)).train()
    criterion = motrv3.build_criterion(
        model_cfg, LossConfig(), RFSConfig(enabled=False), PLDConfig(enabled=False), TGDConfig(enabled=False)
    )
    result = motrv3.clip_forward(
        model,
        criterion,
        _clip(),
        tracking_cfg,
        generator=torch.Generator().manual_seed(1),
        detection_only=detection_only,
        batch_frames=batch_frames,
    )
    result.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return result, grads


def test_batched_frames_give_the_per_frame_loss_and_gradients():
    # Frozen BN: per-frame and batched backbones compute the same function of each frame.
    tracking_cfg = TrackingConfig(fp_track_prob=0.0, drop_track_prob=0.0, fp_score_threshold=0.0)
    for detection_only in (False, True):
        cfg = tiny_config(frozen_bn=True)
        per_frame, grads_a = _loss_and_grads(cfg, tracking_cfg, detection_only, batch_frames=False)
        batched, grads_b = _loss_and_grads(cfg, tracking_cfg, detection_only, batch_frames=True)
        assert torch.allclose(per_frame.loss, batched.loss, rtol=1e-5, atol=1e-5), detection_only
        assert per_frame.num_tracks == batched.num_tracks
        assert grads_a.keys() == grads_b.keys()
        for name in grads_a:
            # atol 5e-5: a bias in front of a GroupNorm has a near-zero gradient (≈ 1e-6) made of
            # float rounding, which differs between the two summation orders.
            assert torch.allclose(grads_a[name], grads_b[name], rtol=1e-3, atol=5e-5), name


def test_group_detr_groups_are_matched_each_and_only_in_detection_training():
    cfg = tiny_config(detect_query_groups=3)
    model = motrv3.build_model(cfg).train()
    images = _clip()["images"]
    outs = model.detect_frames(images)
    assert [len(groups) for groups in outs] == [3, 3, 3]
    assert all(out.logits.shape[1] == cfg.num_queries for groups in outs for out in groups)
    # Groups never attend to each other: group 0 alone gives the same outputs.
    model.eval()
    alone = model.detect_frames(images)
    assert [len(groups) for groups in alone] == [1, 1, 1]
    assert torch.allclose(alone[0][0].logits, outs[0][0].logits, atol=1e-5)
    # Three groups → three matchings per frame: about three times one group's loss at init.
    tracking_cfg = TrackingConfig()
    one, _ = _loss_and_grads(tiny_config(), tracking_cfg, True, True)
    three, _ = _loss_and_grads(cfg, tracking_cfg, True, True)
    assert 2.0 < three.loss.item() / one.loss.item() < 4.0
