"""Track group denoising (MOTRv3 §3.4, appendix B): track-query groups and the Eq. 4 attention mask.

Group count. `tgd.groups` = G is the paper's number of track query groups *including* the original
track queries: Eq. 4 sizes the decoder input S = G·N + M (M detect queries, N track queries, so
G·N track queries in all), §4.2 "expand the original track query to 4 track query groups", Table 5
"how the track query number contained in a group affects performance" (Group Num 3 / 4 / 5) and
appendix B "expands a single group of track queries into K groups". So G − 1 noisy copy groups
are appended after the M + N originals (`copy_groups`), and G = 1 adds none. Eq. 4 indexes the
copies from i = M + N on, group ⌊(i − (M+N)) / N⌋ = 0 … G − 2.
"""

from __future__ import annotations

from typing import get_args

import torch

from motrv3.config import TGDConfig, TGDMask


def copy_groups(tgd_cfg: TGDConfig) -> int:
    """Copy groups appended to the original track queries in training: G − 1 (0 with TGD off)."""
    return max(tgd_cfg.groups - 1, 0) if tgd_cfg.enabled else 0


TGD_MASKS = get_args(TGDMask)


def attention_mask(
    num_det: int, num_track: int, num_groups: int, device=None, mode: str = "eq4"
) -> torch.Tensor:
    """Eq. 4: decoder self-attention mask A = [a_ij] of the S = M + N + num_groups·N queries, True = may not attend.

    `num_groups` counts the copy groups (the paper's G − 1, `copy_groups`), so S = G·N + M as in
    Eq. 4. Query order: detect [0, M), track [M, M+N), copy group g at [M+N+g·N, M+N+(g+1)·N).

    a_ij = 1 if i < M+N and j ≥ M+N (an original never sees a group query), or if i ≥ M+N and
    ⌊(i−(M+N))/N⌋ ≠ ⌊(j−(M+N))/N⌋ (a group query sees only its own group). Eq. 4 prints
    "j > M+N" in the first case; read literally it would let every original attend to the first
    query of group 0, which is exactly the leakage the mask exists to stop (appendix B), so we
    implement j ≥ M+N.

    Other readings of appendix B ("leakage … between original track queries and augmented track
    queries, and … between different augmented track query groups"), `tgd.mask`:
    - `one_way` (DN-DETR's mask, which the paper cites for it [17]): only the leakage into the
      originals is blocked; a copy also sees the detect and original track queries.
    - `replica`: both named leakages are blocked and nothing else, so a copy sees the detect
      queries and its own group: each copy group meets the decoder in the originals' own context.
    """
    if mode not in TGD_MASKS:
        raise ValueError(f"attention_mask: mode {mode!r} is not one of {TGD_MASKS}")
    if min(num_det, num_track, num_groups) < 0:
        raise ValueError(f"attention_mask: negative size M={num_det}, N={num_track}, G={num_groups}")
    num_original = num_det + num_track
    total = num_original + num_groups * num_track
    index = torch.arange(total, device=device)
    # Group number of each query; every original gets −1 (floor of a negative offset is < 0).
    group = torch.where(
        index >= num_original,
        torch.div(index - num_original, max(num_track, 1), rounding_mode="floor"),
        torch.full_like(index, -1),
    )
    is_original = index < num_original
    originals_blocked = is_original[:, None] & ~is_original[None, :]
    groups_blocked = ~is_original[:, None] & (group[:, None] != group[None, :])
    if mode == "one_way":
        groups_blocked = groups_blocked & ~is_original[None, :]
    elif mode == "replica":
        groups_blocked = groups_blocked & ~(index < num_det)[None, :]
    return originals_blocked | groups_blocked


def expand_track_groups(
    content: torch.Tensor,
    boxes: torch.Tensor,
    num_groups: int,
    noise_scale: float | None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Repeat the N track queries (content [N, D], reference boxes [N, 4] cx, cy, w, h) `num_groups` times.

    `num_groups` is the number of copy groups (the paper's G − 1). Returns the copies only
    ([num_groups·N, D], [num_groups·N, 4]), group-major, to be appended after the originals.
    With `noise_scale` s, each copy's width and height are multiplied by independent factors
    drawn uniformly from [1 − s, 1 + s]; centres are never changed (appendix B), so every copy
    keeps its original's label assignment.
    """
    group_content = content.repeat(num_groups, 1)
    group_boxes = boxes.repeat(num_groups, 1)
    if noise_scale and group_boxes.numel():
        unit = torch.rand(group_boxes.shape[0], 2, generator=generator, dtype=boxes.dtype)
        factors = 1.0 + noise_scale * (2.0 * unit.to(boxes.device) - 1.0)
        group_boxes = torch.cat([group_boxes[:, :2], group_boxes[:, 2:] * factors], dim=-1)
    return group_content, group_boxes
