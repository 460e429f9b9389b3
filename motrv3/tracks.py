"""Track query state carried from frame to frame (MOTR), and the runtime life cycle of a track."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TrackState:
    """The N track queries of the current frame, batch-free.

    `ids` is the track id at inference and the ground-truth identity in training (−1: a
    false-positive track query, trained towards background).
    """

    content: torch.Tensor  # [N, D] query content (decoder input tgt)
    boxes: torch.Tensor  # [N, 4] reference boxes, sigmoid cx, cy, w, h (no gradient)
    ids: torch.Tensor  # [N] long
    scores: torch.Tensor  # [N] last score
    misses: torch.Tensor  # [N] long, consecutive frames below the keep score

    @classmethod
    def empty(cls, d_model: int, device=None, dtype=torch.float32) -> TrackState:
        return cls(
            content=torch.zeros(0, d_model, device=device, dtype=dtype),
            boxes=torch.zeros(0, 4, device=device, dtype=dtype),
            ids=torch.zeros(0, dtype=torch.long, device=device),
            scores=torch.zeros(0, device=device, dtype=dtype),
            misses=torch.zeros(0, dtype=torch.long, device=device),
        )

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def select(self, index: torch.Tensor) -> TrackState:
        """Rows picked by a bool mask or an index tensor."""
        return TrackState(
            self.content[index], self.boxes[index], self.ids[index], self.scores[index], self.misses[index]
        )


@dataclass
class RuntimeDecision:
    """Per query of a frame (detect then track): the identity after the frame, what is reported, what lives on."""

    ids: torch.Tensor  # [M+N] long, −1 none
    misses: torch.Tensor  # [M+N] long
    keep: torch.Tensor  # [M+N] bool: becomes/stays a track query for the next frame
    report: torch.Tensor  # [M+N] bool: output as a track of this frame
    next_id: int


def runtime_update(
    scores: torch.Tensor,
    track_ids: torch.Tensor,
    track_misses: torch.Tensor,
    num_det: int,
    next_id: int,
    new_track_score: float,
    keep_track_score: float,
    miss_tolerance: int,
) -> RuntimeDecision:
    """Inference life cycle of MOTR/MOTRv2 (`RuntimeTrackerBase`), vectorised.

    scores [M+N]: last-layer confidences of detect then track queries. A detect query with
    score ≥ new_track_score starts a new track (fresh id); a track below keep_track_score counts a
    miss, any score ≥ new_track_score resets the count; after miss_tolerance consecutive misses
    the track is dropped. Reported: tracks with score ≥ keep_track_score.
    """
    device = scores.device
    ids = torch.cat([torch.full((num_det,), -1, dtype=torch.long, device=device), track_ids])
    misses = torch.cat([torch.zeros(num_det, dtype=torch.long, device=device), track_misses])
    misses = torch.where(scores >= new_track_score, torch.zeros_like(misses), misses)
    new = (ids < 0) & (scores >= new_track_score)
    num_new = int(new.sum())
    ids[new] = torch.arange(next_id, next_id + num_new, device=device)
    missed = (ids >= 0) & (scores < keep_track_score)
    misses = misses + missed.long()
    ids = torch.where(missed & (misses >= miss_tolerance), torch.full_like(ids, -1), ids)
    keep = ids >= 0
    return RuntimeDecision(ids, misses, keep, keep & (scores >= keep_track_score), next_id + num_new)
