"""What every supervision of the criterion shares: the frame's context, the detection loss, the unit.

A supervision is one way of assigning a frame's labels to the decoder's queries and paying the
detection loss under that assignment (MOTR's Eq. 1 + 2, RFS's 𝔖_a, PLD's Eq. 3, TGD's groups).
`ClipCriterion.frame_loss` loops over a list of them (`motrv3.supervision.build_supervisions`), in
order: the ones that write `FrameContext.det_assigned` (standard, RFS) come before TGD, which reads
the originals' assignment.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torchvision.ops import box_convert, generalized_box_iou_loss, sigmoid_focal_loss

from motrv3.config import LossConfig
from motrv3.matcher import HungarianMatcher
from motrv3.structures import FrameOutput

LOSS_TERMS = ("cls", "l1", "giou")
Terms = dict[str, torch.Tensor]


@dataclass
class FrameTargets:
    """One frame's labels on the device, and what Eq. 2 fixes before any matching."""

    labels: torch.Tensor  # [K] classes
    boxes: torch.Tensor  # [K, 4] cx, cy, w, h
    obj_ids: torch.Tensor  # [K] identities
    track_ids: torch.Tensor  # [N] identity carried by each track query, −1 none
    track_target: torch.Tensor  # [N] Eq. 2: label index of the carried identity, −1 absent / none
    free_queries: torch.Tensor  # indices into [0, M+N): detect queries + track queries without identity
    new_labels: torch.Tensor  # label indices no track query carries (ŷ_d, the "free" labels)
    pseudo_sets: list[tuple[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]  # PLD (slot, set)


@dataclass
class FrameContext:
    """One frame's outputs and targets, with what the supervisions share within the frame.

    det_assigned [L, M+N]: the label each original query is trained on by the detection
    supervisions (standard / RFS), −1 background; det_matched [L, M+N]: the matching that decides
    who *holds* a label in that layer (what Fig. 2(d) and Fig. 6 count). They differ only for RFS
    readings that train a track query on its identity while 𝔖_a gave the label to a detect query.
    """

    out: FrameOutput
    frame: FrameTargets
    matcher: HungarianMatcher
    det_assigned: torch.Tensor
    det_matched: torch.Tensor
    _costs: dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def num_det(self) -> int:
        return self.out.num_det

    @property
    def num_original(self) -> int:
        return self.out.num_original

    def originals(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [M+N, C] and boxes [M+N, 4] of the original queries in `layer`."""
        return self.out.logits[layer, : self.num_original], self.out.boxes[layer, : self.num_original]

    def cost(self, layer: int) -> torch.Tensor:
        """Matching cost [M+N, K] of the originals against the frame's labels (computed once per layer)."""
        if layer not in self._costs:
            logits, boxes = self.originals(layer)
            self._costs[layer] = self.matcher.cost_matrix(logits, boxes, self.frame.labels, self.frame.boxes)
        return self._costs[layer]


def detection_loss(
    loss_cfg: LossConfig,
    logits: torch.Tensor,
    boxes: torch.Tensor,
    assigned: torch.Tensor,
    labels: torch.Tensor,
    target_boxes: torch.Tensor,
    query_weights: torch.Tensor | None = None,
) -> Terms:
    """§3.1: λ_cls · sigmoid focal loss over all queries + λ_L1 · L1 + λ_giou · (1 − GIoU) over the
    assigned pairs, as sums, under a fixed assignment.

    logits [Q, C], boxes [Q, 4] cxcywh, assigned [Q] label index (−1 background; a label may be
    assigned to several queries), labels [K], target_boxes [K, 4]; query_weights [Q] multiplies
    each query's three terms (Eq. 3's ω_j).
    """
    logits = logits.float()
    boxes = boxes.float()
    query_index = (assigned >= 0).nonzero(as_tuple=True)[0]
    label_index = assigned[query_index]
    class_target = torch.zeros_like(logits)
    class_target[query_index, labels[label_index]] = 1.0
    focal = sigmoid_focal_loss(
        logits, class_target, alpha=loss_cfg.focal_alpha, gamma=loss_cfg.focal_gamma
    ).sum(-1)
    source = boxes[query_index]
    target = target_boxes[label_index].float()
    l1 = (source - target).abs().sum(-1)
    giou = generalized_box_iou_loss(
        box_convert(source, "cxcywh", "xyxy"), box_convert(target, "cxcywh", "xyxy"), reduction="none"
    )
    if query_weights is not None:
        focal = focal * query_weights
        l1 = l1 * query_weights[query_index]
        giou = giou * query_weights[query_index]
    return {
        "cls": loss_cfg.cls_weight * focal.sum(),
        "l1": loss_cfg.l1_weight * l1.sum(),
        "giou": loss_cfg.giou_weight * giou.sum(),
    }


def supervised_layers(loss_cfg: LossConfig, num_layers: int) -> list[int]:
    """All layers with `loss.aux_loss` (auxiliary losses), else the last one only."""
    return list(range(num_layers)) if loss_cfg.aux_loss else [num_layers - 1]


class Supervision:
    """One supervision: its loss prefix, the target keys it needs, its layers, and `assign`.

    `assign(ctx, layer)` returns the layer's assignment (label index per query it supervises, −1
    background; its shape is the supervision's own) and the λ-weighted loss sums under it.
    Subclasses set `name` (the loss-term prefix `<name>_cls` …) and `target_keys`.
    """

    name: str = ""
    target_keys: tuple[str, ...] = ()
    # Written into FrameContext.det_assigned / det_matched (the detection supervisions).
    writes_det: bool = False

    def __init__(self, loss_cfg: LossConfig, matcher: HungarianMatcher) -> None:
        self.loss_cfg = loss_cfg
        self.matcher = matcher

    def layers(self, num_layers: int) -> list[int]:
        return supervised_layers(self.loss_cfg, num_layers)

    def active(self, ctx: FrameContext) -> bool:
        """Whether this frame has anything for the supervision (e.g. TGD needs track queries)."""
        return True

    def assign(self, ctx: FrameContext, layer: int) -> tuple[torch.Tensor, Terms]:
        raise NotImplementedError

    def record_shape(self, ctx: FrameContext) -> tuple[int, ...]:
        """Shape of one layer's assignment, for the [L, …] record kept when asked for."""
        return (ctx.num_original,)

    def loss(self, logits, boxes, assigned, labels, target_boxes, weights=None) -> Terms:
        return detection_loss(self.loss_cfg, logits, boxes, assigned, labels, target_boxes, weights)
