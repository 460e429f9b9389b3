"""The criterion's supervisions as a list (DETR's `SetCriterion` losses, one unit each).

`build_supervisions` turns the strategy configs into the ordered list `ClipCriterion.frame_loss`
loops over. A new variant of a strategy is one module with a `Supervision` subclass, one entry in
its table below and the config field that selects it (docs/strategies.md, "Adding a variant").
"""

from __future__ import annotations

from motrv3.config import LossConfig, PLDConfig, RFSConfig, TGDConfig
from motrv3.matcher import HungarianMatcher
from motrv3.supervision.base import (
    LOSS_TERMS,
    FrameContext,
    FrameTargets,
    Supervision,
    Terms,
    detection_loss,
    supervised_layers,
)
from motrv3.supervision.pld import PLDConsistent, PLDSupervision, PLDTrackAware, pseudo_label_sets
from motrv3.supervision.rfs import RFSSupervision, rfs_layers
from motrv3.supervision.rfs_keep_identity import RFSKeepIdentity
from motrv3.supervision.standard import StandardSupervision
from motrv3.supervision.tgd import TGDSupervision

# `rfs.reading` → the class implementing it (docs/strategies.md records each reading's evidence).
RFS_READINGS: dict[str, type[RFSSupervision]] = {
    "literal": RFSSupervision,
    "keep_identity": RFSKeepIdentity,
}
# `pld.reading` → the class implementing it.
PLD_READINGS: dict[str, type[PLDSupervision]] = {
    "literal": PLDSupervision,
    "track_aware": PLDTrackAware,
    "consistent": PLDConsistent,
}


def build_supervisions(
    loss_cfg: LossConfig,
    matcher: HungarianMatcher,
    rfs_cfg: RFSConfig,
    pld_cfg: PLDConfig,
    tgd_cfg: TGDConfig,
) -> list[Supervision]:
    """Standard (Eq. 1 + 2) on the layers RFS leaves, RFS (𝔖_a), PLD (Eq. 3), TGD — in that order:
    TGD reads the detection supervisions' assignment of the original track queries."""
    supervisions: list[Supervision] = []
    rfs = None
    if rfs_cfg.enabled:
        if rfs_cfg.reading not in RFS_READINGS:
            raise ValueError(f"rfs.reading = {rfs_cfg.reading!r}: expected one of {sorted(RFS_READINGS)}")
        rfs = RFS_READINGS[rfs_cfg.reading](loss_cfg, matcher, rfs_cfg)
    supervisions.append(StandardSupervision(loss_cfg, matcher, rfs.layers if rfs else None))
    if rfs:
        supervisions.append(rfs)
    if pld_cfg.enabled:
        supervisions.append(PLD_READINGS[pld_cfg.reading](loss_cfg, matcher, pld_cfg))
    if tgd_cfg.enabled:
        supervisions.append(TGDSupervision(loss_cfg, matcher, tgd_cfg))
    return supervisions


__all__ = [
    "LOSS_TERMS",
    "PLD_READINGS",
    "PLDConsistent",
    "PLDTrackAware",
    "RFS_READINGS",
    "FrameContext",
    "FrameTargets",
    "PLDSupervision",
    "RFSKeepIdentity",
    "RFSSupervision",
    "StandardSupervision",
    "Supervision",
    "TGDSupervision",
    "Terms",
    "build_supervisions",
    "detection_loss",
    "pseudo_label_sets",
    "rfs_layers",
    "supervised_layers",
]
