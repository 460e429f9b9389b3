"""Optimiser and learning-rate schedule of MOTRv3 §4.2 (inherited from MOTR / Deformable-DETR).

AdamW with lr 2e-4 for the transformer and heads, one tenth of it for the backbone
(`train.lr_backbone`) and for the deformable attention's sampling offsets and reference points
(`train.lr_linear_proj_mult`, Deformable DETR's `lr_linear_proj_mult` 0.1, which MOTR and MOTRv2
keep), weight decay 1e-4, and a single step-down (lr ÷ 10) at epoch `lr_drop` (DanceTrack: 5
epochs, drop at 4; MOT17: 50 / 40). An optional linear warm-up (`train.warmup_steps`) scales every
group's lr over the first steps (short CPU runs; 0 in the paper profile).
"""

from __future__ import annotations

import torch

BACKBONE_PREFIX = "backbone"  # parameters whose name starts with (or contains) this get lr_backbone
# Deformable DETR's `lr_linear_proj_names`: the layers that place the attention's sampling points.
LINEAR_PROJ_NAMES = ("sampling_offsets", "reference_points")


def is_backbone_parameter(name: str) -> bool:
    return name.startswith(BACKBONE_PREFIX) or f".{BACKBONE_PREFIX}" in name


def parameter_groups(
    model: torch.nn.Module, lr: float, lr_backbone: float, linear_proj_mult: float = 1.0
) -> list[dict]:
    """AdamW groups in a fixed order (the optimiser state in a checkpoint depends on it): main,
    backbone, and (when `linear_proj_mult` ≠ 1) the sampling-point layers at lr × linear_proj_mult."""
    main, backbone, linear_proj = [], [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue  # frozen BN statistics/affines, or a frozen backbone
        if is_backbone_parameter(name):
            backbone.append(parameter)
        elif linear_proj_mult != 1.0 and any(key in name for key in LINEAR_PROJ_NAMES):
            linear_proj.append(parameter)
        else:
            main.append(parameter)
    groups = [{"params": main, "lr": lr, "name": "main"}]
    if backbone:
        groups.append({"params": backbone, "lr": lr_backbone, "name": "backbone"})
    if linear_proj:
        groups.append({"params": linear_proj, "lr": lr * linear_proj_mult, "name": "linear_proj"})
    return groups


def build_optimizer(
    model: torch.nn.Module,
    lr: float,
    lr_backbone: float,
    weight_decay: float,
    lr_drop: int,
    linear_proj_mult: float = 1.0,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW (§4.2) + one step-down stepped per epoch: epochs [0, lr_drop) at lr, then lr ÷ 10.

    Epochs count from 0, as in MOTR's code (`lr_drop: 4` with 5 epochs: only the last at lr/10).
    """
    if lr_drop < 1:
        raise ValueError(f"train.lr_drop: must be ≥ 1 (the epoch at which lr drops), got {lr_drop}")
    groups = parameter_groups(model, lr, lr_backbone, linear_proj_mult)
    optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[lr_drop], gamma=0.1)
    return optimizer, scheduler


def warmup_factor(global_step: int, warmup_steps: int) -> float:
    """Linear warm-up: step s (from 0) runs at (s + 1) / warmup_steps of the scheduled lr, then 1."""
    return 1.0 if warmup_steps <= 0 else min(1.0, (global_step + 1) / warmup_steps)


def set_warmup(optimizer: torch.optim.Optimizer, scheduled: list[float], factor: float) -> None:
    """Each group's lr = its scheduled lr × factor (the epoch scheduler keeps the scheduled values)."""
    for group, lr in zip(optimizer.param_groups, scheduled, strict=True):
        group["lr"] = lr * factor


def current_lrs(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """{'lr': main lr, 'lr_backbone': backbone lr} as logged to MLflow."""
    out = {}
    for group in optimizer.param_groups:
        out["lr" if group.get("name", "main") == "main" else f"lr_{group['name']}"] = float(group["lr"])
    return out
