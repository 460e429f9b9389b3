"""Inference-only speed-ups (motrv3.inference): same outputs as the trained network, original untouched."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

import motrv3
from motrv3.backbone import Backbone
from motrv3.config import TGDConfig, TrackingConfig
from motrv3.inference import (
    OneDNNLinear,
    fold_batch_norm_into_conv,
    fold_frozen_batch_norms,
    optimize_for_inference,
    use_onednn_linears,
)
from motrv3.model import build_model
from tests.model_configs import tiny_config


def test_fold_batch_norm_by_hand():
    # 1×1 conv, one input channel: y = 2x + 1, then BN with γ=3, β=0.5, μ=1, σ²=3.99, ε=0.01:
    # (y − 1)·3/2 + 0.5 = 3x + 0.5 → the folded conv has weight 3, bias 0.5.
    conv = nn.Conv2d(1, 1, 1)
    bn = FrozenBatchNorm2d(1, eps=0.01)
    with torch.no_grad():
        conv.weight.fill_(2.0)
        conv.bias.fill_(1.0)
        bn.weight.fill_(3.0)
        bn.bias.fill_(0.5)
        bn.running_mean.fill_(1.0)
        bn.running_var.fill_(3.99)
    fold_batch_norm_into_conv(conv, bn)
    assert conv.weight.item() == pytest.approx(3.0)
    assert conv.bias.item() == pytest.approx(0.5)
    x = torch.tensor([[[[0.0, 1.0, -2.0]]]])
    torch.testing.assert_close(conv(x), torch.tensor([[[[0.5, 3.5, -5.5]]]]))


def test_fold_without_conv_bias_and_every_resnet50_norm_folds():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(4, 6, 3, bias=False), FrozenBatchNorm2d(6)
    with torch.no_grad():
        for buffer in (bn.weight, bn.bias, bn.running_mean):
            buffer.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 4, 9, 9)
    expected = bn(conv(x))
    fold_batch_norm_into_conv(conv, bn)
    torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)

    with torch.device("meta"):
        backbone = Backbone("resnet50")
    assert fold_frozen_batch_norms(backbone) == 53  # stem + 16 bottlenecks × 3 + 4 downsamples
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in backbone.modules())


@pytest.mark.parametrize("backbone", ["resnet10t", "resnet18", "convnext_tiny"])
def test_optimized_copy_gives_the_same_tracks_and_leaves_the_original(backbone):
    torch.manual_seed(0)
    model = build_model(tiny_config(backbone=backbone, deform_attn_impl="auto"), TrackingConfig())
    _randomise_batch_norms(model)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = optimize_for_inference(model)

    assert model.training and all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert fast is not model and fast.inference_only and not any(p.requires_grad for p in fast.parameters())
    assert fast.backbone.memory_format == torch.channels_last
    if backbone != "convnext_tiny":  # ConvNeXt has no batch norm to fold
        assert not any(isinstance(m, FrozenBatchNorm2d) for m in fast.backbone.modules())

    model.eval()
    frames = torch.randn(3, 3, 96, 160, generator=torch.Generator().manual_seed(2))
    tracks_ref = tracks_fast = None
    with torch.inference_mode():
        for frame in frames:
            ref = model.forward_frame(frame[None], tracks_ref)
            out = fast.forward_frame(frame[None], tracks_fast)
            torch.testing.assert_close(out.logits, ref.logits, rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(out.boxes, ref.boxes, rtol=1e-4, atol=1e-4)
            keep = torch.arange(2)
            tracks_ref = model.next_tracks(ref, tracks_ref, keep, keep + 1)
            tracks_fast = fast.next_tracks(out, tracks_fast, keep, keep + 1)


def test_optimized_copy_refuses_training_and_checkpointing(tmp_path):
    fast = optimize_for_inference(build_model(tiny_config()))
    with pytest.raises(RuntimeError, match="optimize_for_inference"):
        fast.train()
    with pytest.raises(ValueError, match="optimize_for_inference"):
        motrv3.save_checkpoint(tmp_path / "x.pt", fast, {})
    assert optimize_for_inference(fast) is fast
    assert not (tmp_path / "x.pt").exists()


def test_fold_that_breaks_the_function_is_rolled_back(caplog):
    # Register bn1 after conv2 (module order no longer follows data flow): the fold would put bn1's
    # statistics into conv2; the probe comparison must catch it and keep the batch norms.
    torch.manual_seed(0)
    model = build_model(tiny_config(backbone="resnet18"))
    _randomise_batch_norms(model)
    block = model.backbone.body.layer1[0]
    order = ["conv1", "conv2", "bn1"] + [n for n in block._modules if n not in ("conv1", "conv2", "bn1")]
    block._modules = {name: block._modules[name] for name in order}
    with caplog.at_level(logging.WARNING, logger="motrv3.inference"):
        fast = optimize_for_inference(model)
    assert "kept unfolded" in caplog.text
    assert any(isinstance(m, FrozenBatchNorm2d) for m in fast.backbone.modules())
    image = torch.randn(1, 3, 96, 160)
    with torch.inference_mode():
        torch.testing.assert_close(
            fast.forward_frame(image).logits, model.eval().forward_frame(image).logits, rtol=1e-4, atol=1e-4
        )


@pytest.mark.skipif(not OneDNNLinear.available(), reason="oneDNN fused linear not available in this build")
def test_onednn_linears_fuse_the_ffn_relu():
    torch.manual_seed(0)
    model = build_model(tiny_config()).eval()
    transformer = model.transformer
    reference_layer = transformer.encoder.layers[0]
    src = torch.randn(1, 40, 32)
    with torch.inference_mode():
        expected = reference_layer.linear2(reference_layer.activation(reference_layer.linear1(src)))
    swapped = use_onednn_linears(transformer)
    # encoder: 4 attention + 2 FFN linears; decoder layers: 4 cross-attention + 2 FFN each
    assert swapped == 6 * (1 + 2)
    layer = transformer.encoder.layers[0]
    assert isinstance(layer.activation, nn.Identity) and layer.linear1.attr == "relu"
    assert isinstance(transformer.decoder.layers[0].self_attn.out_proj, nn.Linear)
    with torch.inference_mode():
        torch.testing.assert_close(layer.linear2(layer.linear1(src)), expected, rtol=1e-5, atol=1e-5)


def test_tracker_runs_the_optimized_copy():
    model = build_model(tiny_config(), TrackingConfig(), TGDConfig(enabled=False))
    tracker = motrv3.Tracker(model, TrackingConfig(), size=96, max_size=160)
    assert tracker.model.inference_only and tracker.model is not model
    plain = motrv3.Tracker(model, TrackingConfig(), size=96, max_size=160, optimize=False)
    assert plain.model is model


def _randomise_batch_norms(model: nn.Module) -> None:
    """Non-trivial frozen statistics, so that a wrong fold shows in the outputs."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, FrozenBatchNorm2d):
                n = module.weight.numel()
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
