"""Track group denoising's supervision (MOTRv3 §3.4, appendix B); the groups and Eq. 4 are `motrv3.tgd`."""

from __future__ import annotations

import torch

from motrv3.config import TGDConfig
from motrv3.supervision.base import FrameContext, Supervision, Terms


class TGDSupervision(Supervision):
    """The (G−1)·N group copies take their original's assignment ("the assignment between each track
    query group and GT is the same as the original track query"; appendix B: no matching of its own).

    Which assignment of the original (`tgd.follow`): `last`, the last layer's (Eq. 2, what Ψ
    propagates), in every layer; `layer`, the original's assignment in the same layer (differs from
    `last` only where an RFS reading retrains a track query in an early layer). How the G−1 groups
    add up (`tgd.reduce`): `sum` (each copy group weighs as much as the originals) or `mean` (the
    copy groups together weigh as one group, as Group DETR averages its groups).
    """

    name = "tgd"
    target_keys = ("boxes", "labels", "obj_ids")

    def __init__(self, loss_cfg, matcher, tgd_cfg: TGDConfig) -> None:
        super().__init__(loss_cfg, matcher)
        self.tgd_cfg = tgd_cfg

    def active(self, ctx: FrameContext) -> bool:
        return bool(ctx.out.num_groups and ctx.out.num_track)

    def record_shape(self, ctx: FrameContext) -> tuple[int, ...]:
        return (ctx.out.num_groups * ctx.out.num_track,)

    def assign(self, ctx: FrameContext, layer: int) -> tuple[torch.Tensor, Terms]:
        out = ctx.out
        source_layer = out.num_layers - 1 if self.tgd_cfg.follow == "last" else layer
        track_assigned = ctx.det_assigned[source_layer, ctx.num_det :]
        copies = slice(ctx.num_original, ctx.num_original + out.num_groups * out.num_track)
        assigned = track_assigned.repeat(out.num_groups)
        terms = self.loss(
            out.logits[layer, copies], out.boxes[layer, copies], assigned, ctx.frame.labels, ctx.frame.boxes
        )
        if self.tgd_cfg.reduce == "mean":
            terms = {term: value / out.num_groups for term, value in terms.items()}
        return assigned, terms
