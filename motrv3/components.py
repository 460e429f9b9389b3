"""`motrv3.build(cfg)`: the model, its criterion and its tracker from one `MOTRv3Config`."""

from __future__ import annotations

from dataclasses import dataclass

from motrv3.config import MOTRv3Config
from motrv3.criterion import ClipCriterion, build_criterion
from motrv3.model import MOTR, build_model
from motrv3.tracker import Tracker


@dataclass
class Components:
    """What one config builds. `tracker` wraps the same model for inference (same weights)."""

    cfg: MOTRv3Config
    model: MOTR
    criterion: ClipCriterion

    def tracker(self, size: int, max_size: int | None, device="cpu", optimize: bool = True) -> Tracker:
        """Online tracking with `cfg.tracking` at test scale `size` / `max_size` (shortest / longest side)."""
        return Tracker(self.model, self.cfg.tracking, size, max_size, device=device, optimize=optimize)


def build(cfg: MOTRv3Config | None = None) -> Components:
    """Model (TGD active in training when `cfg.tgd.enabled`), criterion and tracker factory of `cfg`."""
    cfg = cfg or MOTRv3Config()
    model = build_model(cfg.model, cfg.tracking, cfg.tgd)
    criterion = build_criterion(cfg.model, cfg.loss, cfg.rfs, cfg.pld, cfg.tgd)
    return Components(cfg, model, criterion)
