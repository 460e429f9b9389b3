"""Clip-consistent augmentation (MOTR's recipe): one plan per clip, applied to every frame.

Multi-scale resize (shorter side to one of `data.train_scales`, longer side capped at
`data.train_max_size`), an optional random crop, a horizontal flip. Boxes follow the image;
boxes partly outside the (cropped) image are clipped, those left with no area are dropped.
Static images become clips through a different shifted crop per frame (`data.static_shift`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
MIN_BOX_SIDE = 1.0  # pixels of the cropped source image; thinner boxes after clipping are dropped


def resized_shape(height: int, width: int, size: int, max_size: int | None) -> tuple[int, int]:
    """(h, w) with the shorter side `size`, shrunk further so the longer side stays ≤ `max_size`."""
    short, long = min(height, width), max(height, width)
    scale = size / short
    if max_size is not None and long * scale > max_size:
        scale = max_size / long
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


@dataclass
class ClipPlan:
    """Where each frame is cropped (x0, y0, x1, y1 source pixels), the flip, the output size."""

    crops: list[tuple[int, int, int, int]]
    flip: bool
    size: int
    max_size: int | None

    def output_shape(self, index: int) -> tuple[int, int]:
        x0, y0, x1, y1 = self.crops[index]
        return resized_shape(y1 - y0, x1 - x0, self.size, self.max_size)


def plan_clip(
    rng: np.random.Generator, height: int, width: int, length: int, data, train: bool, static: bool
) -> ClipPlan:
    """Draw one augmentation for a clip of `length` frames of a `height`×`width` source."""
    if not train:
        return ClipPlan([(0, 0, width, height)] * length, False, data.eval_size, data.eval_max_size)
    size = int(rng.choice(data.train_scales))
    flip = bool(rng.random() < data.flip_prob)
    x0, y0, x1, y1 = 0, 0, width, height
    if data.random_crop and rng.random() < 0.5:
        crop_w = int(rng.integers(int(0.6 * width), width + 1))
        crop_h = int(rng.integers(int(0.6 * height), height + 1))
        x0 = int(rng.integers(0, width - crop_w + 1))
        y0 = int(rng.integers(0, height - crop_h + 1))
        x1, y1 = x0 + crop_w, y0 + crop_h
    crops = [(x0, y0, x1, y1)] * length
    if static and data.static_shift > 0:
        # A still image → a clip: each frame sees a window shifted by up to static_shift of the size.
        win_w = max(1, int(round((x1 - x0) * (1 - data.static_shift))))
        win_h = max(1, int(round((y1 - y0) * (1 - data.static_shift))))
        crops = []
        for _ in range(length):
            dx = int(rng.integers(0, (x1 - x0) - win_w + 1))
            dy = int(rng.integers(0, (y1 - y0) - win_h + 1))
            crops.append((x0 + dx, y0 + dy, x0 + dx + win_w, y0 + dy + win_h))
    return ClipPlan(crops, flip, size, data.train_max_size)


def apply_image(image: np.ndarray, plan: ClipPlan, index: int) -> np.ndarray:
    """Crop, flip and resize one frame (uint8 HWC RGB)."""
    x0, y0, x1, y1 = plan.crops[index]
    image = image[y0:y1, x0:x1]
    if plan.flip:
        image = image[:, ::-1]
    out_h, out_w = plan.output_shape(index)
    if (out_h, out_w) != image.shape[:2]:
        image = cv2.resize(np.ascontiguousarray(image), (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(image)


def apply_boxes(boxes_xyxy: np.ndarray, plan: ClipPlan, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Source-pixel x1y1x2y2 boxes → (normalised cx, cy, w, h of the output frame, kept mask).

    Boxes are clipped to the crop; those thinner than `MIN_BOX_SIDE` after clipping are dropped.
    """
    x0, y0, x1, y1 = plan.crops[index]
    crop_w, crop_h = x1 - x0, y1 - y0
    boxes = boxes_xyxy.astype(np.float64, copy=True).reshape(-1, 4)
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]] - x0, 0, crop_w)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]] - y0, 0, crop_h)
    keep = ((boxes[:, 2] - boxes[:, 0]) >= MIN_BOX_SIDE) & ((boxes[:, 3] - boxes[:, 1]) >= MIN_BOX_SIDE)
    boxes = boxes[keep]
    if plan.flip:
        boxes[:, [0, 2]] = crop_w - boxes[:, [2, 0]]
    # Normalised coordinates do not change under the resize.
    cxcywh = np.stack(
        [
            (boxes[:, 0] + boxes[:, 2]) / 2 / crop_w,
            (boxes[:, 1] + boxes[:, 3]) / 2 / crop_h,
            (boxes[:, 2] - boxes[:, 0]) / crop_w,
            (boxes[:, 3] - boxes[:, 1]) / crop_h,
        ],
        axis=1,
    )
    return cxcywh.astype(np.float32), keep


def to_normalised_tensor(frames: list[np.ndarray]) -> torch.Tensor:
    """uint8 HWC RGB frames (one size) → FloatTensor [T, 3, H, W], ImageNet-normalised."""
    # Change the layout while still uint8 (4x less memory traffic), then scale and shift in place.
    planar = np.ascontiguousarray(np.stack(frames).transpose(0, 3, 1, 2))
    out = np.multiply(planar, (1.0 / (255.0 * IMAGENET_STD)).reshape(1, 3, 1, 1), dtype=np.float32)
    out -= (IMAGENET_MEAN / IMAGENET_STD).reshape(1, 3, 1, 1)
    return torch.from_numpy(out)
