"""Release-fetch supervision (MOTRv3 §3.2): the matching space 𝔖_a in the early decoder layers.

"For the first L−1 decoder layers, we modify the detection matching space 𝔖_d as 𝔖_a", the
matching between all M+N queries and all K labels; the last layer keeps Eq. 1 + 2. The text leaves
open what happens to a track query that carries an identity when 𝔖_a gives its label to a detect
query; each answer is a reading (`rfs.reading`, docs/strategies.md), one class each:

- `literal` (this module): the 𝔖_a assignment is the whole early-layer assignment. A track query
  that loses its label in 𝔖_a is trained as background in that layer.
- `keep_identity` (`rfs_keep_identity.py`): "we only change the detection matching strategy in RFS
  and the matching strategy of the association part in Eq. (2) remains the same": 𝔖_a decides the
  detect queries' labels, every track query with an identity keeps its Eq. 2 target.
"""

from __future__ import annotations

import torch

from motrv3.config import RFSConfig
from motrv3.matcher import assignment_vector
from motrv3.supervision.base import FrameContext, Supervision, Terms, supervised_layers


def rfs_layers(rfs_cfg: RFSConfig, loss_cfg, num_layers: int) -> list[int]:
    """The decoder layers that use 𝔖_a (`rfs.layers`, default the first L−1), supervised ones only.

    The statistics measure `early_layers` with or without RFS, so the two runs compare (Fig. 2, 6).
    """
    if rfs_cfg.layers is None:
        layers = list(range(num_layers - 1))
    else:
        layers = sorted(set(rfs_cfg.layers))
        bad = [layer for layer in layers if not 0 <= layer < num_layers - 1]
        if bad:
            raise ValueError(
                f"rfs.layers: {bad} out of range for {num_layers} decoder layers; "
                f"allowed 0..{num_layers - 2} (the last layer always keeps Eq. 1 + Eq. 2)"
            )
    return layers


class RFSSupervision(Supervision):
    """RFS, `rfs.reading: literal`: one Hungarian matching of all M+N queries to all K labels (𝔖_a)."""

    name = "det"
    target_keys = ("boxes", "labels", "obj_ids")
    writes_det = True

    def __init__(self, loss_cfg, matcher, rfs_cfg: RFSConfig) -> None:
        super().__init__(loss_cfg, matcher)
        self.rfs_cfg = rfs_cfg

    def layers(self, num_layers: int) -> list[int]:
        supervised = set(supervised_layers(self.loss_cfg, num_layers))
        return [layer for layer in rfs_layers(self.rfs_cfg, self.loss_cfg, num_layers) if layer in supervised]

    def match_all(self, ctx: FrameContext, layer: int) -> torch.Tensor:
        """σ_a: label index per original query from one matching over 𝔖_a, −1 unmatched."""
        return assignment_vector(ctx.num_original, *self.matcher.solve(ctx.cost(layer)))

    def training_assignment(self, ctx: FrameContext, matched: torch.Tensor) -> torch.Tensor:
        """The labels the loss trains on, given σ_a: here σ_a itself."""
        return matched

    def assign(self, ctx: FrameContext, layer: int) -> tuple[torch.Tensor, Terms]:
        matched = self.match_all(ctx, layer)
        assigned = self.training_assignment(ctx, matched)
        ctx.det_assigned[layer] = assigned
        ctx.det_matched[layer] = matched
        logits, boxes = ctx.originals(layer)
        return assigned, self.loss(logits, boxes, assigned, ctx.frame.labels, ctx.frame.boxes)
