"""Official checkpoints as their scripts save them (`model`, `optimizer`, `lr_scheduler`, `epoch`,
`args`) → `motrv3 import` → tracked and scored by `motrv3 track` / `evaluate` and the stages."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
import yaml

import motrv3
from motrv3.checkpoint import ForeignCheckpointError, read_checkpoint
from pipeline.cli import main as cli
from pipeline.formats import motchallenge
from pipeline.params import resolve
from pipeline.steps.train.checkpoints import load_init_checkpoint
from tests.model_configs import tiny_config
from tests.test_track import TINY_SYNTHETIC, make_synthetic_split

TINY_CFG = tiny_config(num_feature_levels=3, enc_n_points=1, dec_n_points=1)


class Foreign:
    """A class no weights-only load may unpickle."""


def official_args(cfg, **extra) -> argparse.Namespace:
    """The architecture part of Deformable-DETR's / MOTR's / MOTRv2's `main.py` arguments, plus some others."""
    return argparse.Namespace(
        backbone=cfg.backbone,
        hidden_dim=cfg.d_model,
        nheads=cfg.nheads,
        enc_layers=cfg.enc_layers,
        dec_layers=cfg.dec_layers,
        dim_feedforward=cfg.dim_feedforward,
        num_queries=cfg.num_queries,
        num_feature_levels=cfg.num_feature_levels,
        enc_n_points=cfg.enc_n_points,
        dec_n_points=cfg.dec_n_points,
        with_box_refine=True,
        two_stage=False,
        dilation=False,
        masks=False,
        lr=2e-4,
        lr_drop=4,
        sampler_lengths=[5],
        device="cuda",
        **extra,
    )


def official_state(model, layout: str) -> dict[str, torch.Tensor]:
    """`model` written in the official layout (MOTRv2's, or Deformable-DETR's with COCO's 91 classes)."""
    generator = torch.Generator().manual_seed(5)
    d_model, state = model.d_model, {}
    for key, value in model.state_dict().items():
        official = (
            key.replace("backbone.body.", "backbone.0.body.", 1) if key.startswith("backbone.") else key
        )
        state[official] = value.clone()
        if key.startswith("bbox_embed."):
            state["transformer.decoder." + key] = value.clone()  # box refinement's alias
    state["transformer.reference_points.weight"] = torch.randn(2, d_model, generator=generator)
    state["transformer.reference_points.bias"] = torch.randn(2, generator=generator)
    if layout == "motrv2":
        state["yolox_embed.weight"] = torch.randn(1, d_model, generator=generator)
        return state
    del state["position.weight"]
    for key in [k for k in state if k.startswith("track_embed.")]:
        del state[key]
    query_pos = torch.randn(model.query_embed.weight.shape[0], d_model, generator=generator)
    state["query_embed.weight"] = torch.cat([query_pos, state["query_embed.weight"]], 1)
    for key in [k for k in state if k.startswith("class_embed.")]:
        state[key] = torch.randn(91, *state[key].shape[1:], generator=generator)
    return state


def save_official(path: Path, model, layout: str, **args) -> Path:
    """As the official `main.py` saves (`utils.save_on_master`): state, optimiser, schedule, epoch, args."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4)
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()  # AdamW state tensors, as in a real file
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 4)
    torch.save(
        {
            "model": official_state(model, layout),
            "optimizer": optimizer.state_dict(),
            "lr_scheduler": scheduler.state_dict(),
            "epoch": 4,
            "args": official_args(TINY_CFG, **args),
        },
        path,
    )
    return path


def _source_model(seed: int = 0):
    torch.manual_seed(seed)
    return motrv3.build_model(TINY_CFG).eval()


def _frames_output(model, image):
    with torch.no_grad():
        return model.forward_frame(image)


def test_motrv2_checkpoint_imported_tracked_and_scored(tmp_path, monkeypatch, capsys):
    from stages.evaluate import main as evaluate_stage
    from stages.track import main as track_stage

    source = _source_model()
    official = save_official(tmp_path / "motrv2_dancetrack.pth", source, "motrv2")
    # The pipeline's params give tracking and test size; the file's args give the architecture.
    params = resolve(
        {},
        [
            *TINY_SYNTHETIC,
            "model.backbone=resnet18",
            "model.d_model=64",
            "model.num_queries=40",
            "model.deform_attn_impl=pytorch",  # not in the file's args: the params decide
            "data.eval_size=64",
            "data.eval_max_size=96",
            "tracking.new_track_score=0.0",  # random weights: every query becomes a track
            "tracking.keep_track_score=0.0",
            "track.cpus_per_worker=1",
            "track.device=cpu",
        ],
    )
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params.as_dict()))
    checkpoint = tmp_path / "models" / "motrv2" / "checkpoint.pt"
    cli(
        [
            "import",
            "--layout",
            "motrv2",
            str(official),
            "--out",
            str(checkpoint),
            "--params",
            str(params_file),
        ]
    )
    assert "load report: missing 0; unexpected 3" in capsys.readouterr().out

    payload = read_checkpoint(checkpoint)
    imported = payload["imported"]
    assert imported["layout"] == "motrv2" and imported["epoch"] == 4 and imported["args"]["hidden_dim"] == 32
    assert imported["report"]["missing"] == [] and imported["report"]["reinitialised"] == []
    assert "yolox_embed.weight" in imported["report"]["unexpected"]
    model_section = payload["config"]["model"]
    assert (model_section["backbone"], model_section["d_model"], model_section["num_queries"]) == (
        "resnet10t",
        32,
        4,
    )
    assert payload["config"]["data"]["eval_size"] == 64 and model_section["pretrained"] is None
    assert model_section["deform_attn_impl"] == "pytorch"
    loaded, _ = motrv3.load_checkpoint(checkpoint)
    image = torch.randn(1, 3, 64, 96)
    first, again = _frames_output(source, image), _frames_output(loaded.eval(), image)
    assert torch.equal(first.logits, again.logits) and torch.equal(first.boxes, again.boxes)

    # The track and evaluate stages on a converted split.
    raw_split, clips = make_synthetic_split(tmp_path / "data", params)
    results = tmp_path / "results" / "motrv2" / "val"
    common = [
        "--params",
        str(params_file),
        "--method",
        "motrv2",
        "--split",
        "val",
        "--clips-dir",
        str(clips.parent),
    ]
    track_stage([*common, "--checkpoint", str(checkpoint), "--out", str(results), "--no-progress"])
    monkeypatch.chdir(tmp_path)
    evaluate_stage([*common, "--results", str(results), "--metrics-dir", "metrics", "--no-mlflow"])
    stage_metrics = json.loads((tmp_path / "metrics" / "motrv2.json").read_text())
    assert 0.0 <= stage_metrics["HOTA"] <= 100.0 and stage_metrics["Dets"] > 0

    # `motrv3 track` over the raw split folder, then `motrv3 evaluate`: the same tracks, the same HOTA.
    out = tmp_path / "cli_results"
    cli(
        [
            "track",
            str(raw_split),
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(out),
            "--no-video",
            "--threads",
            "1",
        ]
    )
    cli(["evaluate", "--gt", str(raw_split), "--results", str(out), "--json", str(tmp_path / "cli.json")])
    for name in (p.name for p in raw_split.iterdir()):
        ours = motchallenge.read_results(out / f"{name}.txt")
        assert (ours == motchallenge.read_results(results / f"{name}.txt")).all()
    assert not list(out.glob("*.mp4"))
    assert json.loads((tmp_path / "cli.json").read_text())["HOTA"] == pytest.approx(stage_metrics["HOTA"])

    # The official file itself: the stages name the conversion; training starts from it as is.
    with pytest.raises(SystemExit, match=r"motrv3 import --layout motrv2 .*motrv2_dancetrack\.pth"):
        track_stage([*common, "--checkpoint", str(official), "--out", str(tmp_path / "x")])
    target = _source_model(seed=1)
    assert load_init_checkpoint(target, str(official))  # the backbone came with it
    assert torch.equal(_frames_output(target, image).logits, first.logits)


def test_deformable_detr_checkpoint_opens_weights_only_and_imports_as_a_starting_point(tmp_path, capsys):
    source = _source_model()
    official = save_official(tmp_path / "r50_deformable_detr.pth", source, "deformable")
    # `train.init_checkpoint` (the paper profile's first step): an UnpicklingError before.
    target = _source_model(seed=1)
    assert load_init_checkpoint(target, str(official))
    assert torch.equal(target.transformer.level_embed, source.transformer.level_embed)
    with pytest.raises(ForeignCheckpointError, match="motrv3 import --layout deformable"):
        motrv3.load_checkpoint(official)

    out = tmp_path / "deformable.pt"
    with pytest.raises(SystemExit, match="not every tensor of the model comes from the file"):
        cli(["import", "--layout", "deformable", str(official), "--out", str(out), "--strict"])
    assert not out.exists()
    cli(["import", "--layout", "deformable", str(official), "--out", str(out)])  # the repo's params.yaml
    captured = capsys.readouterr()
    assert "keep a random initialisation" in captured.err
    report = read_checkpoint(out)["imported"]["report"]
    assert any(key.startswith("track_embed.") for key in report["missing"])  # a detector has no QIM
    assert any(item.startswith("class_embed.0.weight (91, 32)->(1, 32)") for item in report["reinitialised"])
    loaded, config = motrv3.load_checkpoint(out)
    assert config["model"]["num_queries"] == 4
    assert torch.equal(loaded.query_embed.weight, source.query_embed.weight)  # the content half

    # Variants without a counterpart, and files holding more than tensors and args, are refused by name.
    two_stage = save_official(tmp_path / "two_stage.pth", source, "deformable")
    payload = torch.load(two_stage, weights_only=False)
    payload["args"].two_stage = True
    torch.save(payload, two_stage)
    with pytest.raises(SystemExit, match=r"args.two_stage is true"):
        cli(["import", "--layout", "deformable", str(two_stage), "--out", str(out)])
    payload["args"].two_stage, payload["extra"] = False, Foreign()
    torch.save(payload, two_stage)
    with pytest.raises(
        SystemExit,
        match=r"two_stage\.pth: holds Python objects .*global tests\.test_import_checkpoint\.Foreign.*re-save",
    ):
        cli(["import", "--layout", "deformable", str(two_stage), "--out", str(out)])
