"""Pseudo label distillation (MOTRv3 §3.3, Eq. 3)."""

from __future__ import annotations

import torch
from torchvision.ops import box_convert, box_iou

from motrv3.config import PLDConfig
from motrv3.matcher import assignment_vector
from motrv3.supervision.base import FrameContext, Supervision, Terms, supervised_layers


class PLDSupervision(Supervision):
    """Eq. 3: a Hungarian matching of all M+N queries to one set of pseudo labels, each query's loss
    weighted by ω_j (the matched label's confidence, `pld.background_weight` when none).

    Eq. 3 writes Σ_{j=1..P} yet gives ω_j a case for "no label matched"; we follow the text: the sum
    runs over the M+N queries. With `pld.combine = parallel` and several `pld.sources` (Table 4 row
    3) every source is its own label set and matching, and the per-source losses add up. "Used as
    pseudo labels to train the queries of all 6 decoders": every supervised layer unless
    `pld.layers` names a subset.
    """

    name = "pld"
    target_keys = ("pseudo_boxes", "pseudo_scores")

    def __init__(self, loss_cfg, matcher, pld_cfg: PLDConfig) -> None:
        super().__init__(loss_cfg, matcher)
        self.pld_cfg = pld_cfg
        self.num_slots = len(pld_cfg.sources) if self.parallel else 1

    @property
    def parallel(self) -> bool:
        return self.pld_cfg.combine == "parallel" and len(self.pld_cfg.sources) > 1

    def layers(self, num_layers: int) -> list[int]:
        supervised = supervised_layers(self.loss_cfg, num_layers)
        if self.pld_cfg.layers is None:
            return supervised
        bad = [layer for layer in self.pld_cfg.layers if not 0 <= layer < num_layers]
        if bad:
            raise ValueError(f"pld.layers: {bad} out of range for {num_layers} decoder layers")
        return [layer for layer in supervised if layer in set(self.pld_cfg.layers)]

    def active(self, ctx: FrameContext) -> bool:
        return bool(ctx.frame.pseudo_sets)

    def record_shape(self, ctx: FrameContext) -> tuple[int, ...]:
        return (self.num_slots, ctx.num_original) if self.parallel else (ctx.num_original,)

    def assign(self, ctx: FrameContext, layer: int) -> tuple[torch.Tensor, Terms]:
        logits, boxes = ctx.originals(layer)
        assigned = torch.full((self.num_slots, ctx.num_original), -1, dtype=torch.long, device=logits.device)
        total: Terms = {}
        for slot, (labels, pseudo_boxes, scores) in ctx.frame.pseudo_sets:
            assigned[slot], terms = self.assign_set(ctx, layer, logits, boxes, labels, pseudo_boxes, scores)
            total = {term: total.get(term, 0.0) + value for term, value in terms.items()}
        return (assigned if self.parallel else assigned[0]), total

    def assign_set(
        self, ctx, layer, logits, boxes, labels, pseudo_boxes, scores
    ) -> tuple[torch.Tensor, Terms]:
        """Eq. 3 for one label set: the assignment [M+N] (index into the set, −1 none) and its sums."""
        num_queries = logits.shape[0]
        cost = self.matcher.cost_matrix(logits, boxes, labels, pseudo_boxes)
        assigned = assignment_vector(num_queries, *self.matcher.solve(cost))
        return assigned, self.loss(
            logits, boxes, assigned, labels, pseudo_boxes, self.weights(assigned, scores)
        )

    def weights(self, assigned: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Eq. 3's ω per query: the matched pseudo label's confidence, `pld.background_weight` if none."""
        return torch.where(
            assigned >= 0,
            scores[assigned.clamp(min=0)],
            scores.new_full(assigned.shape, self.pld_cfg.background_weight),
        )


def pseudo_label_sets(
    pld_cfg: PLDConfig, target: dict, device: torch.device
) -> list[tuple[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:
    """(slot, (classes, boxes, scores)) sets Eq. 3 matches separately, confidence ≥ `pld.threshold`.

    Parallel mode: one set per source (a source without labels in this frame adds nothing, like a
    frame without pseudo labels); else one set of all. Classes are 0 unless `pseudo_labels` given.
    """
    if not pld_cfg.enabled:
        return []
    scores = target["pseudo_scores"].to(device).float()
    keep = scores >= pld_cfg.threshold
    boxes = target["pseudo_boxes"].to(device)[keep]
    classes = target.get("pseudo_labels")
    classes = (
        torch.zeros(scores.shape[0], dtype=torch.long, device=device)
        if classes is None
        else classes.to(device=device, dtype=torch.long)
    )[keep]
    scores = scores[keep]
    if scores.shape[0] == 0:
        return []
    sources = target.get("pseudo_sources")
    parallel = pld_cfg.combine == "parallel" and len(pld_cfg.sources) > 1
    if not parallel or sources is None:
        return [(0, (classes, boxes, scores))]
    sources = sources.to(device=device, dtype=torch.long)[keep]
    return [
        (source, (classes[sources == source], boxes[sources == source], scores[sources == source]))
        for source in sources.unique().tolist()
    ]


class PLDTrackAware(PLDSupervision):
    """PLD, `pld.reading: track_aware`: Eq. 2's rule for pseudo labels of tracked targets.

    A pseudo label overlapping (IoU > 0.5) the ground-truth box of a target a track query carries
    goes to that track query, one each (best overlap first); the others are matched as in Eq. 3
    among the detect queries and the track queries without an identity. Track queries with an
    identity that get no pseudo label have no PLD loss (ω = 0): Eq. 2 already trains them. Without
    this, a detect query that wins a tracked target's pseudo label in the last layer is trained as
    a positive by Eq. 3 and as background by Eq. 1 on the same output.
    """

    def assign_set(
        self, ctx, layer, logits, boxes, labels, pseudo_boxes, scores
    ) -> tuple[torch.Tensor, Terms]:
        frame, num_det = ctx.frame, ctx.num_det
        num_queries = logits.shape[0]
        assigned = torch.full((num_queries,), -1, dtype=torch.long, device=logits.device)
        present = (frame.track_target >= 0).nonzero(as_tuple=True)[0]  # tracks whose target is here
        taken = torch.zeros(pseudo_boxes.shape[0], dtype=torch.bool, device=logits.device)
        if present.numel() and pseudo_boxes.shape[0]:
            tracked = frame.boxes[frame.track_target[present]]
            overlap = box_iou(
                box_convert(tracked, "cxcywh", "xyxy"), box_convert(pseudo_boxes, "cxcywh", "xyxy")
            )
            overlap = torch.where(overlap > TRACKED_IOU, overlap, torch.zeros_like(overlap))
            rows, cols = self.matcher.solve(-overlap)
            keep = overlap[rows, cols] > 0
            assigned[num_det + present[rows[keep]]] = cols[keep]
            taken[cols[keep]] = True
        free = frame.free_queries
        rest = (~taken).nonzero(as_tuple=True)[0]
        cost = self.matcher.cost_matrix(logits[free], boxes[free], labels[rest], pseudo_boxes[rest])
        rows, cols = self.matcher.solve(cost)
        assigned[free[rows]] = rest[cols]
        weights = self.weights(assigned, scores)
        exempt = torch.zeros(num_queries, dtype=torch.bool, device=logits.device)
        exempt[num_det:] = frame.track_ids >= 0
        exempt |= self.exempt_from_background(ctx, layer)
        weights = torch.where(exempt & (assigned < 0), torch.zeros_like(weights), weights)
        return assigned, self.loss(logits, boxes, assigned, labels, pseudo_boxes, weights)

    def exempt_from_background(self, ctx: FrameContext, layer: int) -> torch.Tensor:
        """Queries (besides the identities) that pay no ω background term when no pseudo label is theirs."""
        return torch.zeros(ctx.num_original, dtype=torch.bool, device=ctx.det_assigned.device)


class PLDConsistent(PLDTrackAware):
    """PLD, `pld.reading: consistent`: `track_aware`, and Eq. 3 never contradicts the layer's ground truth.

    Eq. 3's ω background term skips every query that the layer's detection supervision trains
    positive (`FrameContext.det_assigned`: Eq. 1 + 2, or RFS's 𝔖_a in the early layers). Two
    contradictions `track_aware` leaves go with it: a detect query RFS gives a tracked target's
    label in an early layer (its pseudo label goes to the track query, so Eq. 3 pushed the detect
    query down where 𝔖_a pushes it up), and a detect query Eq. 1 trains on a new target the
    teacher missed. The paper does not say how Eq. 3 composes with 𝔖_a; docs/strategies.md.
    """

    def exempt_from_background(self, ctx: FrameContext, layer: int) -> torch.Tensor:
        return ctx.det_assigned[layer] >= 0


TRACKED_IOU = 0.5  # as MOTR's IoU rule for keeping an identity (motrv3.runner.MIN_TRACK_IOU)
