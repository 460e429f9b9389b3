"""MOTR's supervision of one decoder layer: Eq. 2 for the identities, Eq. 1 over 𝔖_d for the rest."""

from __future__ import annotations

import torch

from motrv3.supervision.base import FrameContext, Supervision, Terms, supervised_layers


class StandardSupervision(Supervision):
    """Eq. 1 + Eq. 2 (MOTRv3 §3.2; MOTR/MOTRv2's `ClipMatcher.match_for_single_frame`).

    A track query carrying an identity keeps it (its label when the target is in the frame,
    background when it is not); the detect queries *and the track queries without an identity*
    are matched by Hungarian to the labels no track carries (matching space 𝔖_d). Applies to every
    supervised layer that RFS does not take (`replaced_layers`); the last layer is always here.
    """

    name = "det"
    target_keys = ("boxes", "labels", "obj_ids")
    writes_det = True

    def __init__(self, loss_cfg, matcher, replaced_layers=None) -> None:
        super().__init__(loss_cfg, matcher)
        self.replaced_layers = replaced_layers  # num_layers → layers another det supervision takes

    def layers(self, num_layers: int) -> list[int]:
        taken = set(self.replaced_layers(num_layers)) if self.replaced_layers else set()
        return [layer for layer in supervised_layers(self.loss_cfg, num_layers) if layer not in taken]

    def assign(self, ctx: FrameContext, layer: int) -> tuple[torch.Tensor, Terms]:
        frame = ctx.frame
        logits, boxes = ctx.originals(layer)
        cost = ctx.cost(layer)
        assigned = torch.cat([logits.new_full((ctx.num_det,), -1, dtype=torch.long), frame.track_target])
        rows, cols = self.matcher.solve(cost[frame.free_queries][:, frame.new_labels])
        assigned[frame.free_queries[rows]] = frame.new_labels[cols]
        ctx.det_assigned[layer] = assigned
        ctx.det_matched[layer] = assigned
        return assigned, self.loss(logits, boxes, assigned, frame.labels, frame.boxes)
