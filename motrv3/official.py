"""Official Deformable-DETR / MOTR / MOTRv2 checkpoints → ours (`motrv3 import`).

Their training scripts save `{"model", "optimizer", "lr_scheduler", "epoch", "args"}`, `args` being
the script's `argparse.Namespace`. The architecture is read from `args` and from the tensor shapes
(they describe the weights, so they win over any other config); the weights are mapped by
`motrv3.import_state_dict`. The written checkpoint records the source, the layout, the file's
args and the load report under `imported`.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from motrv3.backbone import LoadReport
from motrv3.checkpoint import import_state_dict, save_checkpoint, torch_load
from motrv3.config import ModelConfig, TGDConfig, TrackingConfig, from_dict

# `motrv3 import --layout` names → `import_state_dict` layouts
LAYOUT_NAMES = {
    "deformable": "deformable_detr",
    "deformable_detr": "deformable_detr",
    "motr": "motr",
    "motrv2": "motrv2",
}

# official argparse name → ModelConfig field (Deformable-DETR's main.py, shared by MOTR and MOTRv2)
ARGS_TO_MODEL = {
    "backbone": "backbone",  # resnet50 / resnet101: the same key names in timm
    "hidden_dim": "d_model",
    "nheads": "nheads",
    "enc_layers": "enc_layers",
    "dec_layers": "dec_layers",
    "dim_feedforward": "dim_feedforward",
    "num_queries": "num_queries",
    "num_feature_levels": "num_feature_levels",
    "enc_n_points": "enc_n_points",
    "dec_n_points": "dec_n_points",
    "with_box_refine": "box_refine",
}
# Variants this model has no counterpart for: importing them would run different arithmetic silently.
UNSUPPORTED_ARGS = {
    "two_stage": "two-stage encoder proposals",
    "dilation": "a dilated (DC5) last backbone stage",
}


def read_official(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], Any]:
    """(state dict, args as a dict ({} without), epoch) of an official checkpoint or a bare state dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    payload = torch_load(path)
    if not isinstance(payload, dict):
        raise ValueError(
            f"{path}: expected a dict (a state dict or {{'model': ..., 'args': ...}}), got {type(payload).__name__}"
        )
    if payload.get("format") == "motrv3":
        raise ValueError(f"{path}: already a motrv3 checkpoint; use it as is")
    state = payload["model"] if isinstance(payload.get("model"), dict) else payload
    if not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ValueError(f"{path}: field 'model' is not a state dict (name → tensor)")
    raw_args = payload.get("args")
    args = dict(vars(raw_args)) if raw_args is not None and hasattr(raw_args, "__dict__") else {}
    return state, json.loads(json.dumps(args, default=str)), payload.get("epoch")


def detect_layout(state: dict[str, Any]) -> str:
    """The layout a state dict was written in: MOTRv2 (anchor positions, YOLOX embedding), MOTR
    (track query interaction, no anchors), else Deformable-DETR."""
    if "position.weight" in state or "yolox_embed.weight" in state:
        return "motrv2"
    if any(key.startswith("track_embed.") for key in state):
        return "motr"
    return "deformable_detr"


def _layer_count(state: dict[str, Any], prefix: str) -> int | None:
    indices = {int(m.group(1)) for key in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", key))}
    return max(indices) + 1 if indices else None


def official_model_fields(
    state: dict[str, torch.Tensor], args: dict[str, Any], layout: str, source=""
) -> dict:
    """ModelConfig fields the file fixes: from its args, then from its tensor shapes (which win)."""
    for name, what in UNSUPPORTED_ARGS.items():
        if args.get(name):
            raise ValueError(
                f"{source}: args.{name} is true ({what}); this model has no counterpart, so its weights "
                "would compute something else: import a checkpoint trained without it"
            )
    fields: dict[str, Any] = {ARGS_TO_MODEL[k]: v for k, v in args.items() if k in ARGS_TO_MODEL}
    fields["frozen_bn"] = True  # every official backbone is a FrozenBatchNorm ResNet
    if isinstance(state.get("transformer.level_embed"), torch.Tensor):
        fields["num_feature_levels"], fields["d_model"] = state["transformer.level_embed"].shape
    for name, prefix in (
        ("enc_layers", "transformer.encoder.layers."),
        ("dec_layers", "transformer.decoder.layers."),
    ):
        count = _layer_count(state, prefix)
        if count:
            fields[name] = count
    linear1 = state.get("transformer.encoder.layers.0.linear1.weight")
    if isinstance(linear1, torch.Tensor):
        fields["dim_feedforward"] = linear1.shape[0]
    if isinstance(state.get("query_embed.weight"), torch.Tensor):
        fields["num_queries"] = state["query_embed.weight"].shape[0]
    head = state.get("class_embed.0.weight")
    if layout in ("motr", "motrv2") and isinstance(head, torch.Tensor):
        fields["num_classes"] = head.shape[0]  # a tracker's own classes; COCO's 91 stay ours (re-initialised)
    fields["pretrained"] = None  # the file holds the backbone
    return fields


def import_checkpoint(
    source: str | Path,
    layout: str,
    out: str | Path,
    config: dict[str, Any] | None = None,
    seed: int = 0,
    strict: bool = False,
) -> tuple[Path, LoadReport, dict[str, Any]]:
    """Write an official checkpoint as ours → (path, load report, the config written).

    `config`: the sections to build the model from ({"model", "tracking", "tgd", ...}, as the train
    stage writes them); its model section should already hold `official_model_fields`. None: the
    library's defaults with the file's architecture. `strict`: a tensor of ours missing from the
    file, or of another shape, is an error (nothing written).
    """
    layout = LAYOUT_NAMES.get(layout, layout)
    if layout not in ("deformable_detr", "motr", "motrv2"):
        raise ValueError(f"layout {layout!r}: expected one of {sorted(LAYOUT_NAMES)}")
    state, args, epoch = read_official(source)
    if config is None:
        fields = official_model_fields(state, args, layout, source)
        config = {"model": asdict(from_dict(ModelConfig, fields))}
    from motrv3.model import build_model

    sections = dict(config) if isinstance(config.get("model"), dict) else {"model": config}
    sections["model"] = {**sections["model"], "pretrained": None}  # the file holds the backbone
    config = sections
    model_cfg = from_dict(ModelConfig, dict(sections["model"]))
    tracking = from_dict(TrackingConfig, dict(sections["tracking"])) if "tracking" in sections else None
    tgd = from_dict(TGDConfig, dict(sections["tgd"])) if "tgd" in sections else None
    torch.manual_seed(seed)  # what the file lacks keeps a reproducible initialisation
    model = build_model(model_cfg, tracking, tgd)
    report = import_state_dict(model, state, layout)
    if strict and (report.missing or report.reinitialised):
        raise ValueError(
            f"{source}: not every tensor of the model comes from the file ({report}); check --layout and "
            "the architecture, or drop --strict to keep those at random initialisation"
        )
    record = {"source": str(source), "layout": layout, "epoch": epoch, "args": args, "report": asdict(report)}
    path = save_checkpoint(out, model, config, imported=record)
    return path, report, config
