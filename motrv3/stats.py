"""Label-assignment statistics of training (MOTRv3 §2.2 Fig. 2, appendix D Fig. 6).

`ClipCriterion.frame_loss` returns one frame's counts in `FrameLossResult.stats`; every entry is
additive (`sum_stats` adds frames or clips), and `AssignmentStats` accumulates them over an epoch.
Per frame with K labels, M detect and N track queries, L decoder layers and E "early" layers (the
RFS layers `rfs.layers`, default the first L−1, measured whether RFS is on or off so the two runs
compare; only the layers that get a loss, i.e. none when `loss.aux_loss` is off):

- `det_slot_matches` [M]: how many supervised decoder layers give detect query slot j a label in
  this frame (Eq. 1, or 𝔖_a in the RFS layers). Summed over frames: how often each slot is trained
  as a positive, the "activation number" of Fig. 2 a/b. Counting every supervised layer, not only
  the last, is what lets RFS show: RFS never changes the last layer (§3.2), it changes the first L−1.
- `last_det` / `last_track`: labels given to detect / track queries at the last layer (Eq. 1 / 2).
- `early_det` / `early_track`: the same summed over the E early layers (with RFS: matching space
  𝔖_a), out of `early_labels` = K·E (Fig. 2 c/d).
- `misaligned`: labels whose detect query differs between some early layer and the last layer
  ("no detect query" counts as a value: a label released to a detect query in an early layer but
  kept by its track query at the last layer is misaligned), out of `misaligned_of` = K (0 when no
  early layer is measured). Appendix D: "for a detect query, if the matched label is different
  between the last decoder layer and one of the 5 decoder layers ... the percentages of misaligned
  labels relative to the total labels" (Fig. 6); a share of labels, so it lies in [0, 1].
- `labels` (Σ K) and `frames`.

Tracking counts of the same frames (`tracking_counts`, from the last layer, what inference sees;
they tell a reading of a strategy from a bug, issue #24):
- `track_queries`: track queries entering the frame (N); over `labels`, track queries per label.
- `tracked_present` / `track_score_sum`: track queries with an identity whose target is in the
  frame, and the sum of their scores (their mean: how sure a track is of its own target).
- `duplicates`: detect queries scoring ≥ the birth threshold (`tracking.new_track_score`) whose box
  overlaps a tracked, present target by IoU > 0.5: each would be born as a second track.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torchvision.ops import box_convert, box_iou

SCALAR_KEYS = (
    "frames",
    "labels",
    "last_det",
    "last_track",
    "early_layers",
    "early_labels",
    "early_det",
    "early_track",
    "misaligned",
    "misaligned_of",
    "track_queries",
    "tracked_present",
    "track_score_sum",
    "duplicates",
)
DUPLICATE_IOU = 0.5
SLOT_KEY = "det_slot_matches"


def sum_stats(stats: Iterable[Mapping[str, torch.Tensor | float]]) -> dict[str, torch.Tensor | float]:
    """Add per-frame (or per-clip) assignment counts into one dict of the same keys.

    Counts may be device tensors (the criterion keeps them there); they are summed on the device
    and read back in one transfer, so a clip costs one synchronisation. Scalars come back as floats,
    the slot counts as a CPU long tensor.
    """
    total: dict[str, torch.Tensor | float] = {key: 0.0 for key in SCALAR_KEYS}
    slots: torch.Tensor | None = None
    for item in stats:
        for key in SCALAR_KEYS:
            value = item.get(key, 0.0)
            total[key] = total[key] + (value.detach() if isinstance(value, torch.Tensor) else float(value))
        if SLOT_KEY in item:
            counts = torch.as_tensor(item[SLOT_KEY]).detach()
            if slots is not None and slots.shape != counts.shape:
                raise ValueError(f"{SLOT_KEY}: {tuple(counts.shape)} slots after {tuple(slots.shape)}")
            slots = counts.long() if slots is None else slots + counts.to(slots.device)
    tensor_keys = [key for key in SCALAR_KEYS if isinstance(total[key], torch.Tensor)]
    parts = [total[key].reshape(1).double() for key in tensor_keys]
    if slots is not None:
        parts.append(slots.reshape(-1).to(parts[0].device if parts else slots.device).double())
    if parts:
        flat = torch.cat(parts).cpu()  # one read-back of every count
        for index, key in enumerate(tensor_keys):
            total[key] = float(flat[index])
        if slots is not None:
            total[SLOT_KEY] = flat[len(tensor_keys) :].round().long()
    return total


@torch.no_grad()
def tracking_counts(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    num_det: int,
    track_ids: torch.Tensor,
    query_labels: torch.Tensor,
    target_boxes: torch.Tensor,
    birth_score: float,
) -> dict[str, torch.Tensor | float]:
    """One frame's tracking counts (module docstring) from the last decoder layer, kept on the device.

    logits [M+N, C], boxes [M+N, 4] of the originals at the last layer; track_ids [N] (−1 none);
    query_labels [M+N] the last layer's label per query (Eq. 2 for the tracks); target_boxes [K, 4].
    """
    scores = logits.float().sigmoid().max(-1).values
    track_labels = query_labels[num_det:]
    present = (track_ids >= 0) & (track_labels >= 0)
    counts: dict[str, torch.Tensor | float] = {
        "track_queries": float(track_ids.shape[0]),
        "tracked_present": present.sum(),
        "track_score_sum": scores[num_det:][present].sum(),
        "duplicates": 0.0,
    }
    if target_boxes.shape[0] and track_ids.shape[0]:
        tracked = box_convert(target_boxes[track_labels[present]].float(), "cxcywh", "xyxy")
        births = scores[:num_det] >= birth_score
        detected = box_convert(boxes[:num_det][births].float(), "cxcywh", "xyxy")
        if tracked.shape[0] and detected.shape[0]:
            counts["duplicates"] = (box_iou(detected, tracked).max(1).values > DUPLICATE_IOU).sum()
    return counts


class AssignmentStats:
    """Accumulates label-assignment counts over an epoch; `merge` combines DDP workers."""

    def __init__(self, num_queries: int) -> None:
        self.num_queries = num_queries
        self.reset()

    def reset(self) -> None:
        self.counts = dict.fromkeys(SCALAR_KEYS, 0.0)
        self.slots = torch.zeros(self.num_queries, dtype=torch.long)

    def update(self, stats: Mapping[str, torch.Tensor | float] | Iterable[Mapping]) -> None:
        """Add one frame's / clip's counts (a dict), or a list of them."""
        items = [stats] if isinstance(stats, Mapping) else list(stats)
        total = sum_stats(items)
        for key in SCALAR_KEYS:
            self.counts[key] += float(total[key])
        if SLOT_KEY in total:
            slots = total[SLOT_KEY]
            if slots.shape != (self.num_queries,):
                raise ValueError(
                    f"AssignmentStats: {SLOT_KEY} has {slots.numel()} slots, built for {self.num_queries} "
                    "detect queries (model.num_queries)"
                )
            self.slots += slots

    def merge(self, other: AssignmentStats) -> None:
        """Add another accumulator (e.g. another worker's) into this one."""
        if other.num_queries != self.num_queries:
            raise ValueError(
                f"AssignmentStats.merge: {other.num_queries} vs {self.num_queries} detect queries"
            )
        for key in SCALAR_KEYS:
            self.counts[key] += other.counts[key]
        self.slots += other.slots

    def slot_histogram(self) -> list[int]:
        """Times each detect query slot took a label, summed over the supervised layers (Fig. 2 a/b)."""
        return [int(value) for value in self.slots]

    def summary(self) -> dict[str, float]:
        """Flat metrics (MLflow names); every share is a fraction in [0, 1] of the labels it measures."""
        counts = self.counts
        labels = counts["labels"]
        early_labels = counts["early_labels"]
        slots = self.slots.float()

        def share(part: float, whole: float) -> float:
            return part / whole if whole > 0 else 0.0

        return {
            "assign/frames": counts["frames"],
            "assign/labels": labels,
            "assign/last_det_share": share(counts["last_det"], labels),
            "assign/last_track_share": share(counts["last_track"], labels),
            "assign/early_det_share": share(counts["early_det"], early_labels),
            "assign/early_track_share": share(counts["early_track"], early_labels),
            "assign/misaligned_share": share(counts["misaligned"], counts["misaligned_of"]),
            "assign/det_slots_active": share(float((self.slots > 0).sum()), self.num_queries),
            "assign/det_slot_matches_mean": float(slots.mean()) if self.num_queries else 0.0,
            "assign/det_slot_matches_max": float(slots.max()) if self.num_queries else 0.0,
            "assign/tracks_per_label": share(counts["track_queries"], labels),
            "assign/track_score_present": share(counts["track_score_sum"], counts["tracked_present"]),
            "assign/duplicates_per_label": share(counts["duplicates"], labels),
        }
