"""Optimiser and learning-rate schedule of MOTRv3 §4.2 (inherited from MOTR / Deformable-DETR).

AdamW with lr 2e-4 for the transformer and heads, one tenth of it for the backbone
(`train.lr_backbone`), weight decay 1e-4, and a single step-down (lr ÷ 10) at epoch `lr_drop`
(DanceTrack: 5 epochs, drop at 4; MOT17: 50 / 40).
"""

from __future__ import annotations

import torch

BACKBONE_PREFIX = "backbone"  # parameters whose name starts with (or contains) this get lr_backbone


def is_backbone_parameter(name: str) -> bool:
    return name.startswith(BACKBONE_PREFIX) or f".{BACKBONE_PREFIX}" in name


def parameter_groups(model: torch.nn.Module, lr: float, lr_backbone: float) -> list[dict]:
    """Two AdamW groups, in a fixed order (the optimiser state in a checkpoint depends on it)."""
    main, backbone = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue  # frozen BN statistics/affines, or a frozen backbone
        (backbone if is_backbone_parameter(name) else main).append(parameter)
    groups = [{"params": main, "lr": lr, "name": "main"}]
    if backbone:
        groups.append({"params": backbone, "lr": lr_backbone, "name": "backbone"})
    return groups


def build_optimizer(
    model: torch.nn.Module, lr: float, lr_backbone: float, weight_decay: float, lr_drop: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW (§4.2) + one step-down stepped per epoch: epochs [0, lr_drop) at lr, then lr ÷ 10.

    Epochs count from 0, as in MOTR's code (`lr_drop: 4` with 5 epochs: only the last at lr/10).
    """
    if lr_drop < 1:
        raise ValueError(f"train.lr_drop: must be ≥ 1 (the epoch at which lr drops), got {lr_drop}")
    optimizer = torch.optim.AdamW(parameter_groups(model, lr, lr_backbone), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[lr_drop], gamma=0.1)
    return optimizer, scheduler


def current_lrs(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """{'lr': main lr, 'lr_backbone': backbone lr} as logged to MLflow."""
    out = {}
    for group in optimizer.param_groups:
        out["lr" if group.get("name", "main") == "main" else f"lr_{group['name']}"] = float(group["lr"])
    return out
