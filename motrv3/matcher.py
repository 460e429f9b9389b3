"""Bipartite matching between decoded queries and box labels (the argmin of Eq. 1, MOTRv3 §3.2).

The matching cost is Deformable-DETR's: λ_cls · focal cost + λ_L1 · L1 + λ_giou · (−GIoU), on
normalised cx, cy, w, h boxes. The criterion builds one cost matrix per decoder layer and solves
sub-blocks of it for the different matching spaces (𝔖_d of Eq. 1, 𝔖_a of RFS, pseudo labels of
PLD), so cost and solve are separate calls.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torchvision.ops import box_convert, generalized_box_iou

from motrv3.config import LossConfig

# Keeps log() finite for probabilities that saturate at 0 or 1.
_LOG_EPS = 1e-8


class HungarianMatcher:
    """One-to-one matching that minimises the summed cost (scipy's `linear_sum_assignment`)."""

    def __init__(
        self,
        cost_class: float = 2.0,
        cost_l1: float = 5.0,
        cost_giou: float = 2.0,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
    ) -> None:
        self.cost_class = cost_class
        self.cost_l1 = cost_l1
        self.cost_giou = cost_giou
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma

    @torch.no_grad()
    def cost_matrix(
        self, logits: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, target_boxes: torch.Tensor
    ) -> torch.Tensor:
        """Cost [Q, K] of giving label k to query q.

        logits [Q, C] (pre-sigmoid), boxes [Q, 4] and target_boxes [K, 4] cx, cy, w, h normalised,
        labels [K] class indices. The class term is the focal loss of the positive class minus the
        focal loss of calling that class negative (Deformable-DETR's focal matching cost).
        """
        num_queries, num_targets = logits.shape[0], labels.shape[0]
        if num_queries == 0 or num_targets == 0:
            return logits.new_zeros((num_queries, num_targets))
        prob = logits.float().sigmoid()[:, labels]  # [Q, K]
        alpha, gamma = self.focal_alpha, self.focal_gamma
        neg = (1 - alpha) * prob.pow(gamma) * -(1 - prob + _LOG_EPS).log()
        pos = alpha * (1 - prob).pow(gamma) * -(prob + _LOG_EPS).log()
        class_cost = pos - neg
        l1_cost = torch.cdist(boxes.float(), target_boxes.float(), p=1)
        giou = generalized_box_iou(
            box_convert(boxes.float(), "cxcywh", "xyxy"), box_convert(target_boxes.float(), "cxcywh", "xyxy")
        )
        return self.cost_class * class_cost + self.cost_l1 * l1_cost - self.cost_giou * giou

    @staticmethod
    def solve(cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Optimal one-to-one assignment of a cost [Q, K]: (query indices, label indices), sorted by query.

        min(Q, K) pairs; empty index tensors when Q or K is 0.
        """
        device = cost.device
        if cost.numel() == 0:
            empty = torch.zeros(0, dtype=torch.long, device=device)
            return empty, empty.clone()
        values = cost.detach().cpu().numpy()
        if not np.isfinite(values).all():
            raise ValueError(
                "matching cost has NaN/inf entries: check the predicted boxes/logits "
                "and that target boxes are cx, cy, w, h with w, h > 0"
            )
        rows, cols = linear_sum_assignment(values)
        return (
            torch.as_tensor(rows, dtype=torch.long, device=device),
            torch.as_tensor(cols, dtype=torch.long, device=device),
        )


def assignment_vector(num_queries: int, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Matched label index per query (−1: background) from solver pairs."""
    assigned = torch.full((num_queries,), -1, dtype=torch.long, device=rows.device)
    assigned[rows] = cols
    return assigned


def build_matcher(loss_cfg: LossConfig) -> HungarianMatcher:
    """The matcher whose costs are the loss weights (§4.2: λ_cls, λ_L1, λ_giou = 2, 5, 2), as in MOTR."""
    return HungarianMatcher(
        cost_class=loss_cfg.cls_weight,
        cost_l1=loss_cfg.l1_weight,
        cost_giou=loss_cfg.giou_weight,
        focal_alpha=loss_cfg.focal_alpha,
        focal_gamma=loss_cfg.focal_gamma,
    )
