"""Checkpoints: our format round trip, bad files, and import of official layouts by key mapping."""

from __future__ import annotations

import pytest
import torch

from motrv3.checkpoint import import_state_dict, load_checkpoint, read_checkpoint, save_checkpoint
from motrv3.config import ModelConfig, TGDConfig, TrackingConfig, to_dict
from motrv3.model import build_model
from tests.model_configs import tiny_config as shared_tiny_config


def tiny_config(**overrides) -> ModelConfig:
    return shared_tiny_config(**{"enc_n_points": 1, "dec_n_points": 1, "num_feature_levels": 3, **overrides})


def _outputs(model, image):
    model.eval()
    with torch.no_grad():
        first = model.forward_frame(image)
        tracks = model.next_tracks(first, None, torch.tensor([0, 2]), torch.tensor([1, 2]))
        second = model.forward_frame(image, tracks)
    return first, second


def test_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config()
    model = build_model(cfg, TrackingConfig(miss_tolerance=7), TGDConfig(groups=2))
    config = {
        "model": to_dict(cfg),
        "tracking": to_dict(TrackingConfig(miss_tolerance=7)),
        "tgd": to_dict(TGDConfig(groups=2)),
    }
    path = save_checkpoint(tmp_path / "ckpt" / "checkpoint.pt", model, config, epoch=3)
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]  # no temp file left
    payload = read_checkpoint(path)
    assert payload["format"] == "motrv3" and payload["version"] == 1 and payload["epoch"] == 3

    loaded, loaded_config = load_checkpoint(path)
    assert loaded_config == config
    assert loaded.tracking_cfg.miss_tolerance == 7 and loaded.tgd_cfg.groups == 2
    image = torch.randn(1, 3, 64, 96)
    for a, b in zip(_outputs(model, image), _outputs(loaded, image), strict=True):
        assert torch.equal(a.logits, b.logits) and torch.equal(a.boxes, b.boxes)


def test_full_disk_names_the_checkpoint_and_keeps_the_old_one(tmp_path, monkeypatch):
    import errno
    import os

    model = build_model(tiny_config())
    path = save_checkpoint(tmp_path / "checkpoint.pt", model, {"model": to_dict(tiny_config())}, epoch=1)

    def disk_full(obj, handle, *args, **kwargs):
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left on device") as failed:
        save_checkpoint(path, model, {"model": to_dict(tiny_config())}, epoch=2)
    assert failed.value.errno == errno.ENOSPC and failed.value.filename == str(path)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temp file left
    assert read_checkpoint(path)["epoch"] == 1


def test_bad_checkpoint_names_the_field(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"format": "detr", "model": {}}, path)
    with pytest.raises(ValueError, match="'format'"):
        load_checkpoint(path)
    torch.save(
        {
            "format": "motrv3",
            "version": 1,
            "config": {"model": {"backbone": "resnet10t", "layers": 3}},
            "model": {},
        },
        path,
    )
    with pytest.raises(ValueError, match="unknown key"):
        load_checkpoint(path)


def _as_motrv2(state: dict) -> dict:
    """Our state dict written in MOTRv2's layout (what its `model.state_dict()` holds)."""
    official = {}
    for key, value in state.items():
        official[
            key.replace("backbone.body.", "backbone.0.body.", 1) if key.startswith("backbone.body.") else key
        ] = value
        if key.startswith("bbox_embed."):
            official["transformer.decoder." + key] = value  # MOTRv2's alias of the refinement heads
    official["yolox_embed.weight"] = torch.zeros(1, 32)
    official["transformer.reference_points.weight"] = torch.zeros(2, 32)
    official["transformer.reference_points.bias"] = torch.zeros(2)
    official["backbone.0.body.bn1.num_batches_tracked"] = torch.tensor(0)
    return official


def test_motrv2_layout_maps_key_for_key():
    torch.manual_seed(0)
    source = build_model(tiny_config())
    torch.manual_seed(1)
    target = build_model(tiny_config())
    report = import_state_dict(target, _as_motrv2(source.state_dict()), "motrv2")
    assert report.missing == [] and report.reinitialised == []
    assert report.unexpected == [
        "transformer.reference_points.bias",
        "transformer.reference_points.weight",
        "yolox_embed.weight",
    ]
    image = torch.randn(1, 3, 64, 96)
    for a, b in zip(_outputs(source, image), _outputs(target, image), strict=True):
        assert torch.equal(a.logits, b.logits) and torch.equal(a.boxes, b.boxes)


def test_deformable_detr_layout_converts_queries_and_reinitialises_the_class_head():
    torch.manual_seed(0)
    source = build_model(tiny_config())
    state = _as_motrv2(source.state_dict())
    del state["position.weight"], state["yolox_embed.weight"]
    query_pos = torch.randn(4, 32)
    state["query_embed.weight"] = torch.cat([query_pos, source.query_embed.weight.detach()], 1)
    state["transformer.reference_points.weight"] = torch.randn(2, 32)
    state["transformer.reference_points.bias"] = torch.randn(2)
    for i in range(2):
        state[f"class_embed.{i}.weight"] = torch.randn(91, 32)
        state[f"class_embed.{i}.bias"] = torch.randn(91)
    del state["track_embed.linear1.weight"]
    torch.manual_seed(1)
    target = build_model(tiny_config())
    report = import_state_dict(target, state, "deformable_detr")
    assert "track_embed.linear1.weight" in report.missing
    assert any(r.startswith("class_embed.0.weight (91, 32)->(1, 32)") for r in report.reinitialised)
    assert any(r.startswith("position.weight[:, 2:]") for r in report.reinitialised)
    assert report.unexpected == []
    assert torch.equal(target.query_embed.weight, source.query_embed.weight)
    expected_centres = torch.sigmoid(
        query_pos @ state["transformer.reference_points.weight"].t()
        + state["transformer.reference_points.bias"]
    )
    torch.testing.assert_close(target.position.weight[:, :2], expected_centres)
    assert torch.equal(target.transformer.level_embed, source.transformer.level_embed)
    with pytest.raises(ValueError, match="layout"):
        import_state_dict(target, state, "yolo")
