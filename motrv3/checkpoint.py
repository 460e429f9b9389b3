"""Checkpoints in our format, and import of Deformable DETR / MOTR / MOTRv2 state dicts.

Our format: {"format": "motrv3", "version": 1, "config": {...}, "model": state_dict, **extra},
written atomically and read with `torch.load(weights_only=True)`.

Key mapping of `import_state_dict` (official name -> ours; everything else kept by name):

| official key                               | ours                          | layouts          |
|--------------------------------------------|-------------------------------|------------------|
| backbone.0.body.*                          | backbone.body.*               | all              |
| input_proj.*, transformer.encoder.*,       | same                          | all              |
| transformer.decoder.layers.*,              |                               |                  |
| transformer.level_embed, class_embed.*,    |                               |                  |
| bbox_embed.*                               |                               |                  |
| position.weight, query_embed.weight        | same                          | motrv2           |
| track_embed.* (QIMv2)                      | same                          | motrv2, motr     |
| query_embed.weight [Q, 2D] = (pos, content)| query_embed = content half;   | deformable_detr, |
|                                            | position[:, :2] = σ(W·pos+b)  | motr             |
|                                            | (transformer.reference_points)|                  |
| transformer.decoder.{bbox,class}_embed.*   | dropped: aliases of the heads | all              |
| transformer.reference_points.* (motrv2),   | dropped, reported unexpected  |                  |
| yolox_embed, refine_embed, num_batches_... |                               |                  |

A tensor whose shape differs from ours (a 91-class COCO head against 1 class, another number of
queries) keeps our initialisation and is listed as re-initialised.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import re
import tempfile
from pathlib import Path

import torch

from motrv3.backbone import LoadReport
from motrv3.config import ModelConfig, TGDConfig, TrackingConfig, from_dict

log = logging.getLogger(__name__)

FORMAT = "motrv3"
VERSION = 1
LAYOUTS = ("motrv3", "deformable_detr", "motr", "motrv2")
_ALIASES = ("transformer.decoder.bbox_embed.", "transformer.decoder.class_embed.")
# Besides tensors, the official Deformable-DETR / MOTR / MOTRv2 scripts save their `argparse` args:
# the weights-only load allows exactly this class too, never `weights_only=False`.
OFFICIAL_GLOBALS = (argparse.Namespace,)


def torch_load(path: str | Path, map_location="cpu", **kwargs):
    """`torch.load(weights_only=True)` that also opens official checkpoints (their `args`)."""
    try:
        with torch.serialization.safe_globals(list(OFFICIAL_GLOBALS)):
            return torch.load(path, map_location=map_location, weights_only=True, **kwargs)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL (\S+)", str(error))
        detail = f"global {found.group(1)}" if found else type(error).__name__
        raise ValueError(
            f"{path}: holds Python objects beyond tensors and argparse args, which a weights-only load "
            f'refuses ({detail}); if you trust the file, re-save its weights alone: python -c "import '
            f"torch; torch.save({{'model': torch.load('{path}', weights_only=False)['model']}}, 'weights.pth')\""
        ) from None


class ForeignCheckpointError(ValueError):
    """A file that is not a motrv3 checkpoint (e.g. an official one: `motrv3 import` converts it)."""


def foreign_message(path: Path, payload) -> str:
    """The format error, naming `motrv3 import` when the file is an official checkpoint."""
    message = f"{path}: not a motrv3 checkpoint (field 'format' is not {FORMAT!r})"
    if isinstance(payload, dict) and isinstance(payload.get("model"), dict) and "format" not in payload:
        from motrv3.official import detect_layout

        layout = detect_layout(payload["model"])
        option = "deformable" if layout == "deformable_detr" else layout
        message += (
            f"; it looks like an official {layout} checkpoint: convert it once with "
            f"`motrv3 import --layout {option} {path} --out checkpoint.pt`"
        )
    return message


def save_checkpoint(path: str | Path, model, config: dict, **extra) -> Path:
    """Write {"format", "version", "config", "model", **extra} to `path` atomically (temp file + rename).

    `config` holds the sections needed to rebuild the model: {"model": {...}, "tracking": {...},
    "tgd": {...}} (extra sections are kept), or just the model section.
    """
    if getattr(model, "inference_only", False):
        raise ValueError(
            f"save_checkpoint {path}: the model was prepared by motrv3.optimize_for_inference "
            "(batch norm folded into convolutions); save the original model"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, "config": config, "model": model.state_dict(), **extra}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
        os.replace(tmp, path)
    except OSError as err:  # a full disk: the error names the checkpoint, not an anonymous handle
        Path(tmp).unlink(missing_ok=True)
        raise OSError(err.errno, err.strerror or str(err), str(path)) from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """The raw payload of one of our checkpoints, validated."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    payload = torch_load(path, map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ForeignCheckpointError(foreign_message(path, payload))
    if payload.get("version") != VERSION:
        raise ValueError(f"{path}: field 'version' is {payload.get('version')!r}, this code reads {VERSION}")
    for field_name in ("config", "model"):
        if not isinstance(payload.get(field_name), dict):
            raise ValueError(f"{path}: field {field_name!r} missing or not a dict")
    return payload


def load_checkpoint(path: str | Path, map_location="cpu"):
    """Rebuild the model of a checkpoint and load its weights -> (model, config)."""
    from motrv3.model import build_model

    payload = read_checkpoint(path, map_location)
    config = payload["config"]
    sections = config if isinstance(config.get("model"), dict) else {"model": config}
    try:
        model_cfg = from_dict(ModelConfig, dict(sections["model"]))
        tracking_cfg = (
            from_dict(TrackingConfig, dict(sections["tracking"])) if "tracking" in sections else None
        )
        tgd_cfg = from_dict(TGDConfig, dict(sections["tgd"])) if "tgd" in sections else None
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: field 'config': {err}") from err
    model_cfg.pretrained = None  # the checkpoint holds the backbone weights
    model = build_model(model_cfg, tracking_cfg, tgd_cfg)
    result = model.load_state_dict(payload["model"], strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{path}: field 'model' does not fit the configured model: missing {result.missing_keys[:8]}, "
            f"unexpected {result.unexpected_keys[:8]}"
        )
    return model.to(map_location), config


def import_state_dict(model, state_dict: dict, layout: str) -> LoadReport:
    """Load an official checkpoint's state dict (`layout` in LAYOUTS) into `model` by the table above.

    Never silent: returns (and logs) our keys left initialised (missing), the file's keys not
    used (unexpected) and the tensors kept at our initialisation for a shape mismatch.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"import_state_dict: layout {layout!r}; expected one of {LAYOUTS}")
    if isinstance(state_dict.get("model"), dict):
        state_dict = state_dict["model"]
    ours = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    report = LoadReport()
    d_model = model.d_model
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked"):
            continue  # frozen batch norm keeps no counter
        if key.startswith(_ALIASES):
            continue  # the same tensors as the top-level heads
        target = (
            "backbone.body." + key[len("backbone.0.body.") :] if key.startswith("backbone.0.body.") else key
        )
        if layout in ("deformable_detr", "motr"):
            if key.startswith("transformer.reference_points."):
                continue  # consumed by the anchor-centre conversion below
            if key == "query_embed.weight" and value.shape[-1] == 2 * d_model:
                mapped["query_embed.weight"] = value[:, d_model:]
                if not _derive_anchor_centres(state_dict, value[:, :d_model], mapped, ours):
                    report.reinitialised.append("position.weight (query count or reference_points missing)")
                continue
        if target not in ours:
            report.unexpected.append(key)
            continue
        mapped[target] = value
    for key, value in list(mapped.items()):
        if ours[key].shape != value.shape:
            report.reinitialised.append(f"{key} {tuple(value.shape)}->{tuple(ours[key].shape)}")
            del mapped[key]
    if "position.weight" in mapped and "position.weight" not in state_dict:
        report.reinitialised.append("position.weight[:, 2:] (w, h: no counterpart in this layout)")
    result = model.load_state_dict(mapped, strict=False)
    report.missing = sorted(k for k in result.missing_keys if not k.endswith("num_batches_tracked"))
    report.unexpected.sort()
    log.warning("import_state_dict(%s): %s", layout, report)
    return report


def _derive_anchor_centres(state_dict, query_pos, mapped, ours) -> bool:
    """Deformable DETR/MOTR: reference point = σ(reference_points(query_pos)); it becomes the anchor centre."""
    weight = state_dict.get("transformer.reference_points.weight")
    bias = state_dict.get("transformer.reference_points.bias")
    position = ours["position.weight"].clone()
    if weight is None or bias is None or position.shape[0] != query_pos.shape[0]:
        return False
    position[:, :2] = torch.sigmoid(query_pos.float() @ weight.float().t() + bias.float())
    mapped["position.weight"] = position
    return True
