"""RFS, `rfs.reading: keep_identity`: 𝔖_a replaces Eq. 1 only; Eq. 2 stays (MOTRv3 §3.2)."""

from __future__ import annotations

import torch

from motrv3.supervision.base import FrameContext
from motrv3.supervision.rfs import RFSSupervision


class RFSKeepIdentity(RFSSupervision):
    """§3.2: "we only change the detection matching strategy in RFS and the matching strategy of the
    association part in Eq. (2) remains the same".

    In an early layer σ_a (all M+N queries × all K labels) gives each detect query (and each track
    query without an identity) its label; a track query with an identity is trained on its Eq. 2
    target whatever σ_a did. A label whose track query loses it in σ_a is therefore *released*: it
    trains the detect query that won it *and* stays on its track query. Who holds a label in σ_a
    (`FrameContext.det_matched`, Fig. 2(d)) moves back to the track queries as they learn to
    localise their targets: the *fetch*.
    """

    def training_assignment(self, ctx: FrameContext, matched: torch.Tensor) -> torch.Tensor:
        frame = ctx.frame
        has_identity = frame.track_ids >= 0
        track_part = torch.where(has_identity, frame.track_target, matched[ctx.num_det :])
        return torch.cat([matched[: ctx.num_det], track_part])
