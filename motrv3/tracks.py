"""Track query state carried from frame to frame (MOTR), and the runtime life cycle of a track."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import box_convert, box_iou


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
    boxes: torch.Tensor | None = None,
    birth_overlap: float | None = None,
    track_overlap: float | None = None,
) -> RuntimeDecision:
    """Inference life cycle of MOTR/MOTRv2 (`RuntimeTrackerBase`), vectorised.

    scores [M+N]: last-layer confidences of detect then track queries. A detect query with
    score ≥ new_track_score starts a new track (fresh id); a track below keep_track_score counts a
    miss, any score ≥ new_track_score resets the count; after miss_tolerance consecutive misses
    the track is dropped. Reported: tracks with score ≥ keep_track_score.

    `birth_overlap` (not in MOTR/MOTRv2; None there): with `boxes` [M+N, 4] cxcywh, a detect query
    starts no track where its box overlaps (IoU ≥ birth_overlap) a track reported this frame or a
    higher-scoring birth of this frame: a second track on a target someone already holds.

    `track_overlap` (not in MOTR/MOTRv2; None there): a track whose box overlaps (IoU ≥
    track_overlap) the box of an older reported track this frame is dropped, as ByteTrack's
    `remove_duplicate_stracks` keeps the longer-tracked of two duplicates (older = smaller id).
    """
    device = scores.device
    ids = torch.cat([torch.full((num_det,), -1, dtype=torch.long, device=device), track_ids])
    misses = torch.cat([torch.zeros(num_det, dtype=torch.long, device=device), track_misses])
    misses = torch.where(scores >= new_track_score, torch.zeros_like(misses), misses)
    new = (ids < 0) & (scores >= new_track_score)
    if birth_overlap is not None and boxes is not None and bool(new.any()):
        held = (ids >= 0) & (scores >= keep_track_score)
        new &= ~duplicate_births(scores, boxes, new, held, birth_overlap)
    num_new = int(new.sum())
    ids[new] = torch.arange(next_id, next_id + num_new, device=device)
    if track_overlap is not None and boxes is not None:
        reported = (ids >= 0) & (scores >= keep_track_score)
        ids = torch.where(
            duplicate_tracks(ids, boxes, reported, track_overlap), torch.full_like(ids, -1), ids
        )
    missed = (ids >= 0) & (scores < keep_track_score)
    misses = misses + missed.long()
    ids = torch.where(missed & (misses >= miss_tolerance), torch.full_like(ids, -1), ids)
    keep = ids >= 0
    return RuntimeDecision(ids, misses, keep, keep & (scores >= keep_track_score), next_id + num_new)


def duplicate_births(
    scores: torch.Tensor, boxes: torch.Tensor, candidates: torch.Tensor, held: torch.Tensor, overlap: float
) -> torch.Tensor:
    """[M+N] bool: the birth candidates whose box overlaps (IoU ≥ `overlap`) a `held` query's box or
    a higher-scoring candidate that is itself kept (greedy, highest score first)."""
    order = sorted(candidates.nonzero(as_tuple=True)[0].tolist(), key=lambda i: -float(scores[i]))
    return _greedy_overlaps(order, boxes, held, overlap)


def duplicate_tracks(
    ids: torch.Tensor, boxes: torch.Tensor, reported: torch.Tensor, overlap: float
) -> torch.Tensor:
    """[M+N] bool: the `reported` tracks whose box overlaps (IoU ≥ `overlap`) the box of an older
    (smaller id) reported track that is itself kept (greedy, oldest first)."""
    order = sorted(reported.nonzero(as_tuple=True)[0].tolist(), key=lambda i: int(ids[i]))
    return _greedy_overlaps(order, boxes, torch.zeros_like(reported), overlap)


def _greedy_overlaps(
    order: list[int], boxes: torch.Tensor, taken: torch.Tensor, overlap: float
) -> torch.Tensor:
    """Greedy suppression, as in NMS: walking `order`, a query whose box (cxcywh) overlaps an already
    taken one by IoU ≥ `overlap` is marked (the result, [M+N] bool); any other is taken."""
    xyxy = box_convert(boxes.float(), "cxcywh", "xyxy")
    marked = torch.zeros_like(taken)
    taken = taken.clone()
    for index in order:
        if bool(taken.any()) and float(box_iou(xyxy[index : index + 1], xyxy[taken]).max()) >= overlap:
            marked[index] = True
        else:
            taken[index] = True
    return marked
