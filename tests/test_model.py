"""The MOTR-with-anchor-queries network: backbones, sine embeddings, frame output, Ψ in training."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import timm
import torch
from torchvision.ops import FrozenBatchNorm2d

from motrv3.backbone import Backbone
from motrv3.config import LossConfig, PLDConfig, RFSConfig, TGDConfig, TrackingConfig
from motrv3.model import build_model
from motrv3.position_encoding import box_sine_embedding, sine_position_encoding
from motrv3.runner import clip_forward, training_track_update
from motrv3.structures import FrameLossResult, FrameOutput
from motrv3.tracks import TrackState
from tests.model_configs import tiny_config


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(tiny_config(), TrackingConfig(), TGDConfig(enabled=False)).eval()


@pytest.mark.parametrize(
    "name, channels",
    [
        ("resnet50", [512, 1024, 2048]),
        ("convnext_tiny", [192, 384, 768]),
        ("convnext_small", [192, 384, 768]),
        ("convnext_base", [256, 512, 1024]),
        ("resnet18", [128, 256, 512]),
        ("resnet10t", [128, 256, 512]),
    ],
)
def test_backbone_levels_have_strides_8_16_32(name, channels):
    # Shapes only: the meta device runs the real modules without allocating or computing.
    with torch.device("meta"):
        backbone = Backbone(name)
        maps = backbone(torch.zeros(1, 3, 64, 96))
        full = build_model(tiny_config(backbone=name))
    assert backbone.num_channels == channels
    assert [tuple(m.shape) for m in maps] == [
        (1, c, 64 // s, 96 // s) for c, s in zip(channels, (8, 16, 32), strict=True)
    ]
    assert [p[0].in_channels for p in full.input_proj] == channels + [channels[-1]]
    assert full.input_proj[3][0].stride == (2, 2) and full.input_proj[3][0].kernel_size == (3, 3)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in backbone.modules())


@pytest.mark.parametrize("name", ["resnet10t", "convnext_tiny"])
def test_stem_then_trunk_is_the_timm_feature_model(name):
    torch.manual_seed(0)
    backbone = Backbone(name).eval()
    image = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = [backbone.body(image)[i] for i in backbone.level_indices]
        stem = backbone.stem(image)
        got = backbone.trunk(stem)
    assert not stem.requires_grad
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b)


def test_stem_frozen_only_when_weights_were_loaded(tmp_path):
    """Deformable DETR freezes the pretrained stem and layer1; from scratch they would stay random."""
    scratch = Backbone("resnet10t")
    assert any(isinstance(m, FrozenBatchNorm2d) for m in scratch.modules())
    assert not scratch.stem_frozen and all(p.requires_grad for p in scratch.body.parameters())
    path = tmp_path / "resnet10t.pth"
    torch.save(timm.create_model("resnet10t", pretrained=False).state_dict(), path)
    for backbone in (Backbone("resnet10t", pretrained=str(path)), scratch):
        if backbone is scratch:
            scratch.freeze_stem()  # what an imported checkpoint with backbone weights does
        named = dict(backbone.body.named_parameters())
        assert backbone.stem_frozen
        assert not any(p.requires_grad for k, p in named.items() if k.startswith(("conv1", "layer1")))
        assert all(p.requires_grad for k, p in named.items() if k.startswith(("layer2", "layer3", "layer4")))


def test_fused_frozen_batch_norm_matches_torchvision():
    # The one-pass kernel must give torchvision's (x − mean)/sqrt(var + eps)·w + b, and its input gradient.
    from motrv3.backbone import FusedFrozenBatchNorm2d

    torch.manual_seed(0)
    plain = FrozenBatchNorm2d(6, eps=1e-5)
    for buffer, value in zip(
        ("weight", "bias", "running_mean", "running_var"),
        (torch.randn(6), torch.randn(6), torch.randn(6), torch.rand(6) + 0.5),
        strict=True,
    ):
        getattr(plain, buffer).copy_(value)
    fused = FusedFrozenBatchNorm2d(6, eps=1e-5)
    fused.load_state_dict(plain.state_dict())
    x = torch.randn(2, 6, 5, 7, requires_grad=True)
    expected = plain(x)
    (expected_grad,) = torch.autograd.grad(expected.square().sum(), x)
    got = fused(x)
    (got_grad,) = torch.autograd.grad(got.square().sum(), x)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got_grad, expected_grad)
    assert set(fused.state_dict()) == set(plain.state_dict())


def test_backbone_weights_come_from_a_local_file(tmp_path):
    torch.manual_seed(3)
    classifier = timm.create_model("resnet10t", pretrained=False)
    path = tmp_path / "resnet10t.pth"
    torch.save({"state_dict": classifier.state_dict()}, path)
    backbone = Backbone("resnet10t", pretrained=str(path))
    report = backbone.load_pretrained(path)
    assert report.missing == [] and "fc.weight" in report.unexpected
    torch.testing.assert_close(backbone.body.layer3[0].conv1.weight, classifier.layer3[0].conv1.weight)
    frozen_bn = backbone.body.bn1 if hasattr(backbone.body, "bn1") else None
    assert isinstance(frozen_bn, FrozenBatchNorm2d)
    torch.testing.assert_close(frozen_bn.running_var, classifier.bn1.running_var)
    with pytest.raises(FileNotFoundError, match="model.pretrained"):
        Backbone("resnet10t", pretrained=str(tmp_path / "absent.pth"))
    # the paper profile's file: the error says where to obtain it
    with pytest.raises(FileNotFoundError, match="huggingface.co/timm/convnext_base.fb_in22k_ft_in1k"):
        Backbone("resnet10t", pretrained=str(tmp_path / "convnext_base.fb_in22k_ft_in1k.safetensors"))
    from safetensors.torch import save_file

    save_file(classifier.state_dict(), tmp_path / "resnet10t.safetensors")
    from_safetensors = Backbone("resnet10t", pretrained=str(tmp_path / "resnet10t.safetensors"))
    torch.testing.assert_close(
        from_safetensors.body.layer3[0].conv1.weight, classifier.layer3[0].conv1.weight
    )


def test_box_sine_embedding_by_hand():
    # d_model 8: two features per coordinate, both with frequency 1 (10000^(2·⌊i/2⌋/2) = 1).
    box = torch.tensor([0.25, 0.5, 0.0, 0.0])
    expected = torch.tensor([1.0, 0.0, 0.0, -1.0, 0.0, 1.0, 0.0, 1.0])  # sin(2πx), cos(2πx) per coord
    torch.testing.assert_close(box_sine_embedding(box, 8), expected, atol=1e-6, rtol=0)


def test_pixel_sine_encoding_by_hand():
    pos = sine_position_encoding(1, 2, 4)  # [4, 1, 2]: (sin y, cos y, sin x, cos x) with y/x normalised
    y = 0.5 / (1 + 1e-6) * 2 * math.pi
    xs = [0.5 / (2 + 1e-6) * 2 * math.pi, 1.5 / (2 + 1e-6) * 2 * math.pi]
    # dim_t = 10000^(2·⌊i/2⌋/2) = [1, 1] for 2 features per axis
    expected = torch.tensor(
        [[[math.sin(y)] * 2], [[math.cos(y)] * 2], [[math.sin(x) for x in xs]], [[math.cos(x) for x in xs]]]
    )
    torch.testing.assert_close(pos, expected.float(), atol=1e-6, rtol=0)


def test_frame_output_shapes_and_init(model):
    image = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        out = model.forward_frame(image)
    assert out.logits.shape == (2, 4, 1) and out.boxes.shape == (2, 4, 4) and out.hidden.shape == (4, 32)
    assert (out.num_det, out.num_track, out.num_groups) == (4, 0, 0)
    assert ((out.boxes > 0) & (out.boxes < 1)).all()
    assert torch.allclose(model.class_embed[0].bias, torch.tensor([-math.log(99.0)]))
    # box heads start at zero except the first layer's w/h bias −2 (Deformable DETR): centres are
    # the anchors', sizes σ(σ⁻¹(w) − 2)
    anchors = model.position.weight.clamp(1e-5, 1 - 1e-5)
    torch.testing.assert_close(out.boxes[0, :, :2], anchors[:, :2], atol=1e-5, rtol=0)
    torch.testing.assert_close(
        out.boxes[0, :, 2:], torch.sigmoid(torch.logit(anchors[:, 2:]) - 2), atol=1e-5, rtol=0
    )
    # box refinement: distinct heads per layer, the second layer starts from the first's boxes
    assert model.bbox_embed[0] is not model.bbox_embed[1]


def test_track_queries_enter_after_detect_queries(model):
    image = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        first = model.forward_frame(image)
        tracks = model.next_tracks(first, None, torch.tensor([1, 3]), torch.tensor([7, 9]))
        second = model.forward_frame(image, tracks)
    assert len(tracks) == 2 and tracks.ids.tolist() == [7, 9]
    torch.testing.assert_close(tracks.boxes, first.boxes[-1, [1, 3]])  # reference = predicted box
    assert second.num_track == 2 and second.logits.shape[1] == 6
    assert not torch.allclose(tracks.content, model.query_embed.weight[[1, 3]])  # QIM updated the content


def _hand_output(num_det: int, boxes: list[list[float]], scores: list[float], d_model: int) -> FrameOutput:
    logit = torch.logit(torch.tensor(scores))[:, None]
    box = torch.tensor(boxes)
    return FrameOutput(
        logits=logit[None].repeat(2, 1, 1),
        boxes=box[None].repeat(2, 1, 1),
        hidden=torch.randn(len(scores), d_model),
        num_det=num_det,
        num_track=len(scores) - num_det,
    )


def _state(ids: list[int], boxes: list[list[float]], d_model: int) -> TrackState:
    n = len(ids)
    return TrackState(
        torch.randn(n, d_model),
        torch.tensor(boxes),
        torch.tensor(ids),
        torch.ones(n),
        torch.zeros(n, dtype=torch.long),
    )


def test_training_psi_by_hand():
    """Ψ (Eq. 2) as MOTRv2: identities carried (absent ones too), drifted ones withdrawn but kept."""
    torch.manual_seed(0)
    model = build_model(tiny_config(num_queries=4)).train()
    box = [0.5, 0.5, 0.2, 0.2]
    far = [0.1, 0.1, 0.05, 0.05]
    # queries: det 0 matched to id 7 (good box), det 1 matched to id 8 (bad box), det 2 unmatched
    # but confident, det 3 unmatched; track 4 carries id 5 (present), track 5 carries id 6 (gone)
    out = _hand_output(
        4,
        [box, far, far, far, [0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]],
        [0.2, 0.2, 0.8, 0.1, 0.3, 0.1],
        32,
    )
    tracks = _state([5, 6], [[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]], 32)
    result = FrameLossResult(
        losses={},
        num_objects=3.0,
        query_ids=torch.tensor([7, 8, -1, -1, 5, 6]),
        query_labels=torch.tensor([0, 1, -1, -1, 2, -1]),
    )
    target = {
        "boxes": torch.tensor([box, [0.8, 0.2, 0.1, 0.1], [0.3, 0.3, 0.2, 0.2]]),
        "labels": torch.zeros(3, dtype=torch.long),
        "obj_ids": torch.tensor([7, 8, 5]),
    }
    cfg = TrackingConfig(drop_track_prob=0.0, fp_track_prob=0.0, fp_score_threshold=0.5)
    nxt = training_track_update(model, out, tracks, result, target, cfg, torch.Generator().manual_seed(0))
    # kept: det 0 (id 7), det 1 (IoU ≤ 0.5: identity withdrawn, kept although its score is 0.2),
    # det 2 (no identity, score 0.8), track 4 (id 5), track 5 (id 6 absent: kept, score 0.1); det 3 not
    assert nxt.ids.tolist() == [7, -1, -1, 5, 6]
    torch.testing.assert_close(nxt.boxes, out.boxes[-1, [0, 1, 2, 4, 5]])

    dropped = training_track_update(
        model, out, tracks, result, target, TrackingConfig(drop_track_prob=1.0, fp_track_prob=0.0), None
    )
    assert dropped.ids.tolist() == [-1, -1]  # every identity-carrying track dropped

    cfg_fp = TrackingConfig(drop_track_prob=0.0, fp_track_prob=1.0, fp_score_threshold=0.95)
    with_fp = training_track_update(
        model, out, tracks, result, target, cfg_fp, torch.Generator().manual_seed(0)
    )
    # identities 7, 5, 6 ask for 3 false positives; only det 2 and det 3 are left: both added
    assert with_fp.ids.tolist() == [7, -1, -1, -1, 5, 6]


class ScriptedTrainingMOTR(torch.nn.Module):
    """The real tiny network in training, with last-layer-and-every-layer scores and boxes set by a
    script: script[frame] maps ("det", slot) or ("track", identity) to (score, box); unscripted
    queries score 0.01. Records the identities of the track queries entering each frame."""

    def __init__(self, script):
        super().__init__()
        torch.manual_seed(0)
        self.net = build_model(tiny_config(num_queries=3), TrackingConfig(), TGDConfig(enabled=False)).train()
        self.script = script
        self.seen_track_ids = []

    def forward_frame(self, image, tracks=None, num_groups=None, generator=None, checkpointed=True):
        out = self.net.forward_frame(image, tracks, num_groups, generator, checkpointed=checkpointed)
        ids = tracks.ids.tolist() if tracks is not None else []
        frame = len(self.seen_track_ids)
        self.seen_track_ids.append(ids)
        logits = torch.full_like(out.logits, float(torch.logit(torch.tensor(0.01))))
        boxes = out.boxes.detach().clone()
        for (kind, key), (score, box) in self.script[frame].items():
            if kind == "track" and key not in ids:
                continue  # that track query does not exist (the assertions on `seen` say so)
            slot = key if kind == "det" else out.num_det + ids.index(key)
            logits[:, slot] = float(torch.logit(torch.tensor(score)))
            boxes[:, slot] = torch.tensor(box)
        out.logits, out.boxes = logits + 0 * out.logits, boxes
        return out

    def next_tracks(self, *args, **kwargs):
        return self.net.next_tracks(*args, **kwargs)


def _scripted_clip(labels_per_frame):
    targets = [
        {
            "boxes": torch.tensor([box for box, _ in frame]).reshape(-1, 4),
            "labels": torch.zeros(len(frame), dtype=torch.long),
            "obj_ids": torch.tensor([identity for _, identity in frame], dtype=torch.long),
        }
        for frame in labels_per_frame
    ]
    images = torch.randn(len(targets), 3, 64, 96, generator=torch.Generator().manual_seed(0))
    return {"images": images, "targets": targets, "meta": {"sequence": "scripted"}}


def _run_scripted(script, labels_per_frame):
    from motrv3.criterion import build_criterion

    model = ScriptedTrainingMOTR(script)
    off = dict(enabled=False)
    criterion = build_criterion(
        model.net.model_cfg, LossConfig(), RFSConfig(**off), PLDConfig(**off), TGDConfig(**off)
    )
    tracking = TrackingConfig(drop_track_prob=0.0, fp_track_prob=0.0)
    result = clip_forward(model, criterion, _scripted_clip(labels_per_frame), tracking)
    return model.seen_track_ids, result


A_BOX, B_BOX, C_BOX = [0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2], [0.5, 0.3, 0.2, 0.2]
NEAR_A = [0.31, 0.3, 0.2, 0.2]  # IoU with A ≈ 0.9
FAR_BOX = [0.9, 0.9, 0.05, 0.05]


def test_training_target_missing_for_one_frame_returns_to_the_same_track_query():
    """MOTR/MOTRv2: a track keeps its identity while its target is absent (trained as no object)
    and gets the label back when the target reappears, even with a detect query sitting on it."""
    script = [
        {("det", 0): (0.9, A_BOX)},  # frame 1: det0 finds A (id 10)
        {("det", 1): (0.9, B_BOX), ("track", 10): (0.2, NEAR_A)},  # frame 2: A absent, B new
        {("det", 0): (0.9, A_BOX), ("track", 10): (0.9, NEAR_A), ("track", 20): (0.9, B_BOX)},
    ]
    labels = [[(A_BOX, 10)], [(B_BOX, 20)], [(A_BOX, 10), (B_BOX, 20)]]
    seen, result = _run_scripted(script, labels)
    assert seen == [[], [10], [20, 10]]  # the query of 10 lives through frame 2
    # frame 3: A and B both go to their track queries (Eq. 2), none to det0 although it sits on A;
    # frames 1-2 gave A and B to detect queries (Eq. 1)
    assert result.stats["last_track"] == 2.0 and result.stats["last_det"] == 2.0


def test_training_drifting_track_loses_identity_and_then_takes_a_new_born_label():
    """IoU ≤ 0.5 with its label: the identity is withdrawn, the query stays (MOTRv2, whatever its
    score) and, without identity, joins the next frame's matching with the new-born labels."""
    script = [
        {("det", 0): (0.9, A_BOX)},  # frame 1: det0 finds A (id 10)
        {("track", 10): (0.3, FAR_BOX)},  # frame 2: the track of 10 drifts away from A (IoU 0)
        {("track", -1): (0.9, C_BOX)},  # frame 3: the identity-less track sits on new-born C
        {},
    ]
    labels = [[(A_BOX, 10)], [(A_BOX, 10)], [(C_BOX, 30)], [(C_BOX, 30)]]
    seen, result = _run_scripted(script, labels)
    assert seen[:3] == [[], [10], [-1]]  # identity withdrawn after frame 2, query kept
    assert seen[3] == [30]  # matched to C in frame 3: it carries 30 from now on
    # labels to track queries at the last layer: A (frame 2, Eq. 2), C (frame 3), C (frame 4)
    assert result.stats["last_track"] == 3.0


def test_clip_forward_with_the_real_criterion():
    from motrv3.criterion import build_criterion

    torch.manual_seed(0)
    cfg = tiny_config()
    tgd_cfg = TGDConfig(groups=2)
    model = build_model(cfg, TrackingConfig(), tgd_cfg).train()
    criterion = build_criterion(cfg, LossConfig(), RFSConfig(), PLDConfig(), tgd_cfg)
    boxes = torch.tensor([[0.3, 0.4, 0.2, 0.4], [0.7, 0.5, 0.2, 0.5]])
    targets = [
        {
            "boxes": boxes,
            "labels": torch.zeros(2, dtype=torch.long),
            "obj_ids": torch.tensor([1, 2]),
            "pseudo_boxes": boxes,
            "pseudo_scores": torch.tensor([0.9, 0.6]),
        }
        for _ in range(2)
    ]
    clip = {"images": torch.randn(2, 3, 64, 96), "targets": targets, "meta": {"sequence": "s"}}
    # FP insertion certain: from frame 2 on there are track queries whatever the matching did
    tracking = TrackingConfig(fp_track_prob=1.0, fp_score_threshold=0.0, drop_track_prob=0.0)
    result = clip_forward(model, criterion, clip, tracking, generator=torch.Generator().manual_seed(0))
    assert result.num_tracks[0] == 0 and result.num_tracks[1] > 0
    assert torch.isfinite(result.loss) and result.loss.requires_grad
    assert any(k.startswith("tgd_") for k in result.terms) and math.isfinite(result.terms["loss"])
    result.loss.backward()
    assert (
        model.query_embed.weight.grad is not None and model.track_embed.linear_feat1.weight.grad is not None
    )

    detector = clip_forward(model, criterion, clip, tracking, detection_only=True)
    assert detector.num_tracks == [0, 0]


def test_activation_checkpointing_gives_the_same_gradients_and_skips_what_it_can():
    """Same loss and gradients on a 3-frame clip; the frozen stem runs once per frame, the trunk is
    recomputed for every frame but the last (MOTR's checkpointing)."""
    from motrv3.criterion import build_criterion

    boxes = torch.tensor([[0.3, 0.4, 0.2, 0.4], [0.7, 0.5, 0.2, 0.5]])
    target = {"boxes": boxes, "labels": torch.zeros(2, dtype=torch.long), "obj_ids": torch.tensor([1, 2])}
    clip = {"images": torch.randn(3, 3, 64, 96, generator=torch.Generator().manual_seed(1))}
    clip["targets"] = [target] * 3
    runs = []
    # Per frame without checkpointing, with checkpointing, and the default batched backbone pass.
    for checkpointing, batch_frames in ((False, False), (True, True), (False, True)):
        torch.manual_seed(0)
        cfg = tiny_config(activation_checkpointing=checkpointing)
        model = build_model(cfg, TrackingConfig(), TGDConfig(enabled=False)).train()
        criterion = build_criterion(
            cfg, LossConfig(), RFSConfig(enabled=False), PLDConfig(enabled=False), TGDConfig(enabled=False)
        )
        calls = Counter()
        for part, module in (("stem", model.backbone.body.conv1), ("trunk", model.backbone.body.layer2)):
            module.register_forward_hook(lambda *_, part=part, calls=calls: calls.update([part]))
        result = clip_forward(
            model,
            criterion,
            clip,
            TrackingConfig(),
            generator=torch.Generator().manual_seed(0),
            batch_frames=batch_frames,
        )
        result.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        runs.append((result.loss.detach(), grads, calls))
    (loss_plain, grads_plain, calls_plain), (loss_ckpt, grads_ckpt, calls_ckpt), batched = runs
    torch.testing.assert_close(batched[0], loss_plain)  # frozen BN: batching changes nothing
    assert batched[2] == {"stem": 1, "trunk": 1}  # one pass over the clip's 3 frames
    torch.testing.assert_close(loss_ckpt, loss_plain)
    assert grads_ckpt.keys() == grads_plain.keys() and any(
        k.startswith("backbone.body.layer2") for k in grads_plain
    )
    for name, grad in grads_plain.items():
        torch.testing.assert_close(grads_ckpt[name], grad, msg=name)
    assert calls_plain == {"stem": 3, "trunk": 3}
    assert calls_ckpt == {"stem": 3, "trunk": 3 + 2}


def test_training_track_without_identity_takes_a_new_born_label():
    """A confident unmatched query goes on without identity (MOTRv2); MOTR's matcher then matches it,
    like a detect query, to the labels no track carries: here the new-born C."""
    script = [
        {("det", 0): (0.9, C_BOX)},  # frame 1: no labels; det0 confident → a track without identity
        {("track", -1): (0.9, C_BOX)},  # frame 2: C (id 30) is born where that track sits
        {},
    ]
    labels = [[], [(C_BOX, 30)], [(C_BOX, 30)]]
    seen, result = _run_scripted(script, labels)
    assert seen == [[], [-1], [30]]
    assert result.stats["last_track"] == 2.0 and result.stats["last_det"] == 0.0


def test_build_composes_model_criterion_and_tracker_from_one_config():
    import motrv3

    cfg = motrv3.MOTRv3Config(model=tiny_config(), tgd=TGDConfig(groups=3))
    built = motrv3.build(cfg)
    assert isinstance(built.criterion, torch.nn.Module) and built.criterion.matcher.cost_l1 == 5.0
    assert built.model.tgd_cfg.groups == 3 and built.criterion.tgd_cfg is cfg.tgd
    tracker = built.tracker(size=64, max_size=96, optimize=False)
    assert tracker.model is built.model and tracker.cfg is cfg.tracking
    again = motrv3.MOTRv3Config.from_dict({"model": {"backbone": "resnet10t"}, "tgd": {"groups": 5}})
    assert again.model.backbone == "resnet10t" and again.tgd.groups == 5
    with pytest.raises(ValueError, match="unknown section"):
        motrv3.MOTRv3Config.from_dict({"optimizer": {}})
