"""Per-frame loss of MOTR / MOTRv3 and the clip loss (MOTRv3 §3, Eqs. 1, 2, 3, 5; TGD's loss §3.4).

Query order of a frame (docs/architecture.md): detect queries [0, M), track queries [M, M+N), and
with TGD the G groups of track-query copies, group g at [M+N+g·N, M+N+(g+1)·N).

Every supervised set of queries gets Deformable-DETR's detection loss (§3.1):
λ_cls · sigmoid focal loss over all its queries (unassigned ones against the background, i.e. an
all-zero class target) + λ_L1 · L1 + λ_giou · (1 − GIoU) over the assigned (query, box) pairs.
Losses are sums; the division by the frame's object count O_i is Eq. 5 (`clip_loss`).

Assignments per decoder layer l (all L layers with `loss.aux_loss`, only the last otherwise):
- baseline MOTR: track query j keeps the label of its identity `track_ids[j]` (Eq. 2, background if
  that identity is not in the frame or j is a false-positive track, −1); the detect queries are
  matched by Hungarian to the labels no track query carries (Eq. 1, matching space 𝔖_d);
- RFS (§3.2): in the layers `rfs.layers` (default: the first L−1) one Hungarian matching between
  all M+N queries and all K labels (𝔖_a) replaces both; the last layer keeps Eq. 1 + Eq. 2, and
  its detect-query matches alone feed the new track queries (Eq. 2's Ψ, `det_matched_ids`);
- PLD (§3.3, Eq. 3): an extra Hungarian matching of all M+N queries to the pseudo labels, losses
  weighted per query (detector confidence when matched, `pld.background_weight` when not). Eq. 3
  writes Σ_{j=1..P} yet gives ω_j a case for "no label matched"; we follow the text: the sum runs
  over the M+N queries, an unmatched query pays 0.5 × its background classification loss.
  Several `pld.sources` with `pld.combine = parallel` (Table 4 row 3, "Parallel (YOLOX & Sparse
  RCNN)"): one label set and one Eq. 3 matching per source (`pseudo_sources`), so two detectors'
  boxes of one person never compete for one query; the per-source Eq. 3 losses add up. `concat`,
  one source, or a target without `pseudo_sources`: one matching over all pseudo labels;
- TGD (§3.4): group g's query j takes exactly track query j's Eq. 2 label; no matching.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torchvision.ops import box_convert, generalized_box_iou_loss, sigmoid_focal_loss

from motrv3.config import LossConfig, ModelConfig, PLDConfig, RFSConfig, TGDConfig
from motrv3.matcher import HungarianMatcher, assignment_vector
from motrv3.structures import FrameLossResult, FrameOutput

LOSS_TERMS = ("cls", "l1", "giou")


def identity_assignment(track_ids: torch.Tensor, obj_ids: torch.Tensor) -> torch.Tensor:
    """Eq. 2 in one frame: label index of each track query's identity (−1: absent or false positive)."""
    if track_ids.numel() == 0 or obj_ids.numel() == 0:
        return torch.full_like(track_ids, -1, dtype=torch.long)
    same = (track_ids[:, None] == obj_ids[None, :]) & (track_ids[:, None] >= 0)
    return torch.where(same.any(1), same.to(torch.uint8).argmax(1), torch.full_like(track_ids, -1))


class ClipCriterion:
    """MOTR's multi-frame criterion with the three MOTRv3 strategies as switches (RFS, PLD, TGD).

    `frame_loss` is called once per frame by the clip runner; `clip_loss` (Eq. 5) sums the frames.
    """

    def __init__(
        self,
        loss_cfg: LossConfig,
        rfs_cfg: RFSConfig,
        pld_cfg: PLDConfig,
        tgd_cfg: TGDConfig,
        num_classes: int = 1,
    ) -> None:
        self.loss_cfg = loss_cfg
        self.rfs_cfg = rfs_cfg
        self.pld_cfg = pld_cfg
        self.tgd_cfg = tgd_cfg
        self.num_classes = num_classes
        self.weights = {"cls": loss_cfg.cls_weight, "l1": loss_cfg.l1_weight, "giou": loss_cfg.giou_weight}
        self.matcher = HungarianMatcher(
            cost_class=loss_cfg.cls_weight,
            cost_l1=loss_cfg.l1_weight,
            cost_giou=loss_cfg.giou_weight,
            focal_alpha=loss_cfg.focal_alpha,
            focal_gamma=loss_cfg.focal_gamma,
        )

    # ----------------------------------------------------------------------------------- layers
    def early_layers(self, num_layers: int) -> list[int]:
        """The decoder layers that use 𝔖_a when RFS is on (`rfs.layers`, default the first L−1).

        The statistics measure these layers with or without RFS, so the two runs compare (Fig. 2, 6).
        """
        if self.rfs_cfg.layers is None:
            return list(range(num_layers - 1))
        layers = sorted(set(self.rfs_cfg.layers))
        bad = [layer for layer in layers if not 0 <= layer < num_layers - 1]
        if bad:
            raise ValueError(
                f"rfs.layers: {bad} out of range for {num_layers} decoder layers; "
                f"allowed 0..{num_layers - 2} (the last layer always keeps Eq. 1 + Eq. 2)"
            )
        return layers

    def supervised_layers(self, num_layers: int) -> list[int]:
        """All layers with `loss.aux_loss` (auxiliary losses), else the last one only."""
        return list(range(num_layers)) if self.loss_cfg.aux_loss else [num_layers - 1]

    # ------------------------------------------------------------------------------------ loss
    def set_loss(
        self,
        logits: torch.Tensor,
        boxes: torch.Tensor,
        assigned: torch.Tensor,
        labels: torch.Tensor,
        target_boxes: torch.Tensor,
        query_weights: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """λ-weighted detection loss sums of one query set under a fixed assignment.

        logits [Q, C], boxes [Q, 4] cxcywh, assigned [Q] label index (−1 background), labels [K],
        target_boxes [K, 4]; query_weights [Q] multiplies each query's three terms (Eq. 3's ω_j).
        """
        logits = logits.float()
        boxes = boxes.float()
        matched = assigned >= 0
        query_index = matched.nonzero(as_tuple=True)[0]
        label_index = assigned[query_index]
        class_target = torch.zeros_like(logits)
        class_target[query_index, labels[label_index]] = 1.0
        focal = sigmoid_focal_loss(
            logits, class_target, alpha=self.loss_cfg.focal_alpha, gamma=self.loss_cfg.focal_gamma
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
            "cls": self.weights["cls"] * focal.sum(),
            "l1": self.weights["l1"] * l1.sum(),
            "giou": self.weights["giou"] * giou.sum(),
        }

    def pld_set_loss(
        self,
        logits: torch.Tensor,
        boxes: torch.Tensor,
        pseudo_labels: torch.Tensor,
        pseudo_boxes: torch.Tensor,
        pseudo_scores: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 3 for one label set: Hungarian matching of the M+N queries to its pseudo labels, each
        query's loss weighted by ω_j (the matched label's confidence, `pld.background_weight` if none).

        Returns the assignment [M+N] (index into this set, −1 background) and the λ-weighted sums.
        """
        num_queries = logits.shape[0]
        cost = self.matcher.cost_matrix(logits, boxes, pseudo_labels, pseudo_boxes)
        assigned = assignment_vector(num_queries, *self.matcher.solve(cost))
        weights = torch.where(
            assigned >= 0,
            pseudo_scores[assigned.clamp(min=0)],
            pseudo_scores.new_full((num_queries,), self.pld_cfg.background_weight),
        )
        return assigned, self.set_loss(logits, boxes, assigned, pseudo_labels, pseudo_boxes, weights)

    def frame_loss(self, out: FrameOutput, target: dict, track_ids: torch.Tensor) -> FrameLossResult:
        """Loss sums of one frame: `det_*` (Eq. 1+2 / RFS), `pld_*` (Eq. 3), `tgd_*` (§3.4).

        Each term is λ-weighted and summed over the supervised decoder layers; Eq. 5's division by
        O_i happens in `clip_loss`. Terms of enabled strategies are always present (zero when the
        frame has no pseudo labels / no track groups) so every frame has the same keys.
        """
        num_det, num_track, num_groups = out.num_det, out.num_track, out.num_groups
        num_layers = out.num_layers
        num_original = num_det + num_track
        self._check(out, target, track_ids)
        device = out.logits.device
        labels = target["labels"].to(device=device, dtype=torch.long)
        target_boxes = target["boxes"].to(device)
        obj_ids = target["obj_ids"].to(device=device, dtype=torch.long)
        track_ids = track_ids.to(device=device, dtype=torch.long)
        num_labels = labels.shape[0]

        track_target = identity_assignment(track_ids, obj_ids)  # Eq. 2
        carried = torch.zeros(num_labels, dtype=torch.bool, device=device)
        carried[track_target[track_target >= 0]] = True
        new_labels = (~carried).nonzero(as_tuple=True)[0]  # ŷ_d: newly appeared targets

        pseudo = self._pseudo_labels(target, device)
        use_rfs = self.rfs_cfg.enabled
        use_tgd = self.tgd_cfg.enabled and num_groups > 0
        early = self.early_layers(num_layers)
        early_set = set(early)
        supervised = self.supervised_layers(num_layers)

        zero = out.logits.new_zeros((), dtype=torch.float32)
        names = (
            ["det"] + (["pld"] if self.pld_cfg.enabled else []) + (["tgd"] if self.tgd_cfg.enabled else [])
        )
        losses = {f"{name}_{term}": zero.clone() for name in names for term in LOSS_TERMS}
        det_assigned = torch.full((num_layers, num_original), -1, dtype=torch.long, device=device)
        pld_sets = self._pld_label_sets(pseudo)
        # parallel: `assignments["pld"]` is [S, L, M+N], row s indexing source s's own labels
        num_slots = len(self.pld_cfg.sources) if self._parallel() else 1
        pld_assigned = torch.full((num_slots, num_layers, num_original), -1, dtype=torch.long, device=device)
        tgd_assigned = torch.full((num_layers, num_groups * num_track), -1, dtype=torch.long, device=device)

        for layer in supervised:
            logits = out.logits[layer, :num_original]
            boxes = out.boxes[layer, :num_original]
            cost = self.matcher.cost_matrix(logits, boxes, labels, target_boxes)  # [M+N, K]
            if use_rfs and layer in early_set:
                assigned = assignment_vector(num_original, *self.matcher.solve(cost))  # 𝔖_a
            else:
                rows, cols = self.matcher.solve(cost[:num_det][:, new_labels])  # Eq. 1 over 𝔖_d
                det_target = assignment_vector(num_det, rows, new_labels[cols])
                assigned = torch.cat([det_target, track_target])
            det_assigned[layer] = assigned
            self._add(losses, "det", self.set_loss(logits, boxes, assigned, labels, target_boxes))

            for slot, label_set in pld_sets:
                assigned_pseudo, terms = self.pld_set_loss(logits, boxes, *label_set)
                pld_assigned[slot, layer] = assigned_pseudo
                self._add(losses, "pld", terms)

            if use_tgd:
                group_slice = slice(num_original, num_original + num_groups * num_track)
                assigned_groups = track_target.repeat(num_groups)
                tgd_assigned[layer] = assigned_groups
                self._add(
                    losses,
                    "tgd",
                    self.set_loss(
                        out.logits[layer, group_slice],
                        out.boxes[layer, group_slice],
                        assigned_groups,
                        labels,
                        target_boxes,
                    ),
                )

        last_det = det_assigned[num_layers - 1, :num_det]
        det_matched_ids = torch.full_like(last_det, -1)
        if num_labels:
            det_matched_ids = torch.where(last_det >= 0, obj_ids[last_det.clamp(min=0)], det_matched_ids)
        measured_early = [layer for layer in early if layer in set(supervised)]
        stats = assignment_counts(det_assigned, num_det, num_labels, measured_early)
        return FrameLossResult(
            losses=losses,
            num_objects=float(max(num_labels, 1)),
            det_matched_ids=det_matched_ids,
            track_matched=track_target >= 0,
            stats=stats,
            assignments={
                "det": det_assigned,
                "pld": pld_assigned if self._parallel() else pld_assigned[0],
                "tgd": tgd_assigned,
            },
        )

    # --------------------------------------------------------------------------------- helpers
    @staticmethod
    def _add(losses: dict[str, torch.Tensor], prefix: str, terms: dict[str, torch.Tensor]) -> None:
        for term, value in terms.items():
            losses[f"{prefix}_{term}"] = losses[f"{prefix}_{term}"] + value

    def _parallel(self) -> bool:
        """Table 4 row 3: one Eq. 3 matching per pseudo-label source."""
        return self.pld_cfg.combine == "parallel" and len(self.pld_cfg.sources) > 1

    def _pld_label_sets(
        self, pseudo: tuple[torch.Tensor, ...] | None
    ) -> list[tuple[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:
        """(slot, label set) pairs Eq. 3 matches separately: one per source in parallel mode (a source
        without labels in this frame adds nothing, like a frame without pseudo labels), else one of all."""
        if pseudo is None:
            return []
        classes, boxes, scores, sources = pseudo
        if not self._parallel():
            return [(0, (classes, boxes, scores))]
        sets = []
        for source in range(len(self.pld_cfg.sources)):
            mine = sources == source
            if bool(mine.any()):
                sets.append((source, (classes[mine], boxes[mine], scores[mine])))
        return sets

    def _pseudo_labels(
        self, target: dict, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """PLD's pseudo labels with confidence ≥ `pld.threshold`: classes (0 unless `pseudo_labels`
        given), boxes, scores and source indices (all 0 without `pseudo_sources`: one source)."""
        if not self.pld_cfg.enabled:
            return None
        boxes = target["pseudo_boxes"].to(device)
        scores = target["pseudo_scores"].to(device).float()
        classes = target.get("pseudo_labels")
        classes = (
            torch.zeros(scores.shape[0], dtype=torch.long, device=device)
            if classes is None
            else classes.to(device=device, dtype=torch.long)
        )
        sources = target.get("pseudo_sources")
        sources = (
            torch.zeros(scores.shape[0], dtype=torch.long, device=device)
            if sources is None
            else sources.to(device=device, dtype=torch.long)
        )
        keep = scores >= self.pld_cfg.threshold
        if not bool(keep.any()):
            return None
        return classes[keep], boxes[keep], scores[keep], sources[keep]

    def _check(self, out: FrameOutput, target: dict, track_ids: torch.Tensor) -> None:
        """Shape and key checks with messages that name the offending field."""
        expected = out.num_det + out.num_track + out.num_groups * out.num_track
        if out.logits.dim() != 3 or out.boxes.dim() != 3 or out.boxes.shape[-1] != 4:
            raise ValueError(
                f"FrameOutput.logits/boxes: expected [L, S, C] and [L, S, 4], got "
                f"{tuple(out.logits.shape)} and {tuple(out.boxes.shape)}"
            )
        if out.logits.shape[:2] != out.boxes.shape[:2] or out.logits.shape[1] != expected:
            raise ValueError(
                f"FrameOutput: {out.logits.shape[1]} queries in logits, {out.boxes.shape[1]} in boxes; "
                f"expected M + N + G·N = {out.num_det} + {out.num_track} + {out.num_groups}·{out.num_track}"
                f" = {expected}"
            )
        if out.logits.shape[-1] != self.num_classes:
            raise ValueError(
                f"FrameOutput.logits: {out.logits.shape[-1]} classes, criterion built for {self.num_classes}"
            )
        if out.num_groups > 0 and not self.tgd_cfg.enabled:
            raise ValueError(f"FrameOutput.num_groups = {out.num_groups} but tgd.enabled is false")
        required = ["boxes", "labels", "obj_ids"] + (
            ["pseudo_boxes", "pseudo_scores"] if self.pld_cfg.enabled else []
        )
        missing = [key for key in required if key not in target]
        if missing:
            raise ValueError(f"frame target: missing key(s) {missing} (have {sorted(target)})")
        num_labels = target["labels"].shape[0]
        if target["boxes"].shape != (num_labels, 4) or target["obj_ids"].shape != (num_labels,):
            raise ValueError(
                f"frame target: boxes {tuple(target['boxes'].shape)}, labels {tuple(target['labels'].shape)}, "
                f"obj_ids {tuple(target['obj_ids'].shape)}; expected [K, 4], [K], [K]"
            )
        if num_labels and int(target["labels"].max()) >= self.num_classes:
            raise ValueError(
                f"frame target: labels has class {int(target['labels'].max())} ≥ {self.num_classes}"
            )
        if torch.unique(target["obj_ids"]).numel() != num_labels:
            raise ValueError(f"frame target: obj_ids repeats an identity: {target['obj_ids'].tolist()}")
        if self.pld_cfg.enabled:
            num_pseudo = target["pseudo_scores"].shape[0]
            if target["pseudo_boxes"].shape != (num_pseudo, 4):
                raise ValueError(
                    f"frame target: pseudo_boxes {tuple(target['pseudo_boxes'].shape)}, pseudo_scores "
                    f"{tuple(target['pseudo_scores'].shape)}; expected [P, 4], [P]"
                )
            sources = target.get("pseudo_sources")
            if sources is not None:
                if sources.shape != (num_pseudo,):
                    raise ValueError(
                        f"frame target: pseudo_sources {tuple(sources.shape)}, expected [P] = [{num_pseudo}]"
                    )
                num_sources = len(self.pld_cfg.sources)
                if num_pseudo and not (int(sources.min()) >= 0 and int(sources.max()) < num_sources):
                    raise ValueError(
                        f"frame target: pseudo_sources {sources.tolist()} outside 0..{num_sources - 1} "
                        f"(pld.sources = {self.pld_cfg.sources})"
                    )
        if track_ids.shape != (out.num_track,):
            raise ValueError(f"track_ids: shape {tuple(track_ids.shape)}, expected [N] = [{out.num_track}]")
        carried = track_ids[track_ids >= 0]
        if torch.unique(carried).numel() != carried.numel():
            raise ValueError(f"track_ids: two track queries carry the same identity: {track_ids.tolist()}")


def assignment_counts(
    det_assigned: torch.Tensor, num_det: int, num_labels: int, early_layers: Sequence[int]
) -> dict[str, torch.Tensor | float]:
    """One frame's label-assignment counts (definitions in `motrv3.stats.AssignmentStats`).

    det_assigned [L, M+N]: label index per original query and layer (last row: Eq. 1 + Eq. 2).
    """
    last = det_assigned[-1]
    last_det = last[:num_det]
    stats: dict[str, torch.Tensor | float] = {
        "frames": 1.0,
        "labels": float(num_labels),
        "det_slot_matches": (last_det >= 0).long().cpu(),
        "last_det": float((last_det >= 0).sum()),
        "last_track": float((last[num_det:] >= 0).sum()),
        "early_layers": float(len(early_layers)),
        "early_labels": float(num_labels * len(early_layers)),
        "early_det": 0.0,
        "early_track": 0.0,
        "misaligned": 0.0,
    }
    if early_layers:
        early = det_assigned[list(early_layers)]
        stats["early_det"] = float((early[:, :num_det] >= 0).sum())
        stats["early_track"] = float((early[:, num_det:] >= 0).sum())
        # A detect query whose label (or none) differs in some early layer from the last layer's.
        stats["misaligned"] = float((early[:, :num_det] != last_det[None]).any(0).sum())
    return stats


def clip_loss(
    frame_results: Sequence[FrameLossResult],
    num_objects_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 5: L_clip = Σ_i (L_σr + L_σp + L_σg) / O_i over the T frames of a clip.

    Returns the scalar loss and the per-term values (each Σ_i term_i / O_i) plus `loss`.
    `num_objects_reduce` maps the [T] vector of O_i to the O_i to divide by, e.g. an all-reduce
    mean across DDP workers; the result is clamped to ≥ 1.
    """
    if not frame_results:
        raise ValueError("clip_loss: no frames")
    first = next(iter(frame_results[0].losses.values()))
    counts = torch.tensor([r.num_objects for r in frame_results], dtype=torch.float32, device=first.device)
    if num_objects_reduce is not None:
        counts = num_objects_reduce(counts)
    counts = counts.clamp(min=1.0)
    total = first.new_zeros((), dtype=torch.float32)
    parts: dict[str, torch.Tensor] = {}
    for result, count in zip(frame_results, counts, strict=True):
        for name, value in result.losses.items():
            part = value / count
            total = total + part
            parts[name] = parts.get(name, 0.0) + part.detach()
    terms = {name: float(value) for name, value in parts.items()}
    terms["loss"] = float(total.detach())
    return total, terms


def build_criterion(
    model_cfg: ModelConfig,
    loss_cfg: LossConfig,
    rfs_cfg: RFSConfig,
    pld_cfg: PLDConfig,
    tgd_cfg: TGDConfig,
) -> ClipCriterion:
    """The criterion for a model config; validates `rfs.layers` against `model.dec_layers`."""
    criterion = ClipCriterion(loss_cfg, rfs_cfg, pld_cfg, tgd_cfg, num_classes=model_cfg.num_classes)
    criterion.early_layers(model_cfg.dec_layers)
    return criterion
