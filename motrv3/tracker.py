"""Runtime tracking of a video frame by frame, and detection-only inference (pseudo labels)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import box_convert

from motrv3.config import TrackingConfig
from motrv3.inference import optimize_for_inference
from motrv3.tracks import TrackState, runtime_update

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Track:
    track_id: int
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the original image
    score: float
    # Class index 0..C-1 (the model's logits): the argmax at the track's birth, kept for its life,
    # so one identity is one class (per-class scoring splits no track; a class flip is no new id).
    label: int = 0


def resized_shape(height: int, width: int, size: int, max_size: int | None) -> tuple[int, int]:
    """Shortest side to `size`, reduced so that the longest side stays ≤ `max_size` (DETR's RandomResize)."""
    short, long = min(height, width), max(height, width)
    if max_size is not None and long / short * size > max_size:
        size = int(round(max_size * short / long))
    if width < height:
        return int(size * height / width), size
    return size, int(size * width / height)


def preprocess(image, size: int, max_size: int | None, device="cpu") -> tuple[torch.Tensor, tuple[int, int]]:
    """HWC uint8 RGB (numpy or tensor) -> ImageNet-normalised [1, 3, h, w] float, and the original (H, W)."""
    tensor = torch.as_tensor(np.asarray(image)) if not isinstance(image, torch.Tensor) else image
    if tensor.dim() != 3 or tensor.shape[2] != 3:
        raise ValueError(f"expected an RGB image H×W×3, got shape {tuple(tensor.shape)}")
    height, width = int(tensor.shape[0]), int(tensor.shape[1])
    x = tensor.to(device).permute(2, 0, 1)[None].float().div(255.0)
    out_h, out_w = resized_shape(height, width, size, max_size)
    if (out_h, out_w) != (height, width):
        x = F.interpolate(x, size=(out_h, out_w), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std, (height, width)


def _to_pixels(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    scale = torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
    return box_convert(boxes, "cxcywh", "xyxy") * scale


class Tracker:
    """Online MOTR tracking, one frame at a time, batch-free; identities persist across `step` calls.

    By default the tracker runs an inference copy of `model` (`motrv3.optimize_for_inference`:
    same outputs to float rounding, faster on CPU); `optimize=False` runs `model` itself.
    `model` may also be another per-frame network with the three `MOTR` calls the life cycle
    makes (`empty_tracks`, `forward_frame`, `next_tracks`), e.g. `motrv3.OnnxFrameNetwork`
    (onnxruntime, docs/export.md); it is used as it is.
    """

    def __init__(
        self,
        model,
        tracking_cfg: TrackingConfig,
        size: int,
        max_size: int | None,
        device="cpu",
        optimize: bool = True,
    ):
        if isinstance(model, torch.nn.Module):
            model = model.to(device).eval()
            self.model = optimize_for_inference(model) if optimize else model
        else:
            self.model = model
        self.cfg = tracking_cfg
        self.size = size
        self.max_size = max_size
        self.device = torch.device(device)
        self.reset()

    def reset(self) -> None:
        """Start a new video: no tracks, ids from 1."""
        self.tracks: TrackState = self.model.empty_tracks()
        self.next_id = 1
        self.labels: dict[int, int] = {}  # track id → class index at birth (live tracks only)

    @torch.inference_mode()
    def step(self, image) -> list[Track]:
        """Track one frame (H×W×3 uint8 RGB); returns the confident tracks of this frame."""
        x, (height, width) = preprocess(image, self.size, self.max_size, self.device)
        out = self.model.forward_frame(x, self.tracks)
        scores = out.logits[-1, : out.num_original].sigmoid().max(-1).values
        cfg = self.cfg
        decision = runtime_update(
            scores,
            self.tracks.ids,
            self.tracks.misses,
            out.num_det,
            self.next_id,
            cfg.new_track_score,
            cfg.keep_track_score,
            cfg.miss_tolerance,
            out.boxes[-1, : out.num_original],
            cfg.birth_overlap,
            cfg.track_overlap,
        )
        first_new = self.next_id
        self.next_id = decision.next_id
        if self.next_id > first_new:  # births this frame: their detect query's class
            born = (decision.ids >= first_new).nonzero(as_tuple=True)[0]
            classes = out.logits[-1, born].argmax(-1)
            self.labels.update(zip(decision.ids[born].tolist(), classes.tolist(), strict=True))
        reported = decision.report.nonzero(as_tuple=True)[0]
        boxes = _to_pixels(out.boxes[-1, reported], height, width).cpu().tolist()
        ids = decision.ids[reported].cpu().tolist()
        confidences = scores[reported].cpu().tolist()
        keep = decision.keep.nonzero(as_tuple=True)[0]
        live = decision.ids[keep].tolist()
        # A track the bookkeeping missed (e.g. tracks handed in from outside) reads as class 0.
        labels = [self.labels.get(i, 0) for i in ids]
        self.labels = {i: self.labels.get(i, 0) for i in live}
        self.tracks = self.model.next_tracks(
            out,
            self.tracks,
            keep,
            decision.ids[keep],
            decision.misses[keep],
            update_threshold=cfg.keep_track_score,
        )
        return [
            Track(int(i), tuple(b), float(s), int(c))
            for i, b, s, c in zip(ids, boxes, confidences, labels, strict=True)
        ]


@torch.inference_mode()
def detect(
    model, image, size: int, max_size: int | None, with_labels: bool = False
) -> tuple[torch.Tensor, ...]:
    """Detect queries only, one frame: (boxes [Q, 4] x1, y1, x2, y2 pixels of the original image, scores [Q]),
    and with `with_labels` the class index [Q] each box scored (the argmax its score is the max of)."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        x, (height, width) = preprocess(image, size, max_size, device)
        out = model.forward_frame(x, None)
        scores, labels = out.logits[-1].sigmoid().max(-1)
        boxes = _to_pixels(out.boxes[-1], height, width).cpu()
        return (boxes, scores.cpu(), labels.cpu()) if with_labels else (boxes, scores.cpu())
    finally:
        model.train(was_training)
