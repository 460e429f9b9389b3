"""Training state inside a Ray Train checkpoint (model, optimiser, schedule, progress, RNG) and the
weights a run starts from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

import motrv3
from motrv3.checkpoint import ForeignCheckpointError, read_checkpoint
from motrv3.official import detect_layout, read_official
from pipeline.steps.train.distributed import rng_state

STATE_FILE = "state.pt"  # inside a Ray Train checkpoint directory
RNG_FILE = "rng.json"


def stats_state(stats) -> dict[str, Any]:
    return {"counts": dict(stats.counts), "slots": stats.slots.clone()}


def load_stats_state(stats, state: dict[str, Any]) -> None:
    # Counts added since the checkpoint was written start at zero.
    stats.counts = {**dict.fromkeys(stats.counts, 0.0), **{k: float(v) for k, v in state["counts"].items()}}
    stats.slots = state["slots"].clone()


def save_state(directory: Path, state: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(state, directory / STATE_FILE)
    (directory / RNG_FILE).write_text(json.dumps(rng_state()))


def load_state(directory: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    state = torch.load(Path(directory) / STATE_FILE, map_location=map_location, weights_only=True)
    rng_file = Path(directory) / RNG_FILE
    if rng_file.exists():
        state["rng_python_numpy"] = json.loads(rng_file.read_text())
    return state


def load_init_checkpoint(model: torch.nn.Module, path: str) -> bool:
    """`train.init_checkpoint`: one of ours (an import included), or an official Deformable-DETR /
    MOTR / MOTRv2 checkpoint (§4.2), its layout read from its keys.

    Returns whether it held the backbone's weights; then the backbone stem is frozen, as Deformable
    DETR freezes its pretrained stem (a backbone from another architecture stays as it was).
    """
    try:
        payload = read_checkpoint(path)
    except ForeignCheckpointError:
        state, _, _ = read_official(path)
        report = motrv3.import_state_dict(model, state, detect_layout(state))
        missing = report.missing
    else:
        missing = model.load_state_dict(payload["model"], strict=False).missing_keys
    loaded_backbone = not any(key.startswith("backbone.") for key in missing)
    if loaded_backbone:
        model.backbone.freeze_stem()
    return loaded_backbone
