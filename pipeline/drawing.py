"""Drawing tracks on frames: boxes, identities and the trail of each identity's recent centres."""

from __future__ import annotations

import colorsys
from collections import defaultdict, deque
from types import SimpleNamespace

import cv2
import numpy as np


def identity_color(track_id: int) -> tuple[int, int, int]:
    """A stable, well-spread BGR colour per identity (golden-ratio hue steps)."""
    hue = (track_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(b * 255), int(g * 255), int(r * 255)


class Annotator:
    """Draws boxes, identities and trails; keeps each identity's last `trail` centres."""

    def __init__(self, trail: int = 30):
        self.trails: dict[int, deque] = defaultdict(lambda: deque(maxlen=max(1, trail)))

    def draw(self, image_rgb: np.ndarray, tracks) -> np.ndarray:
        canvas = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
        thickness = max(1, round(min(canvas.shape[:2]) / 300))
        for track in tracks:
            x1, y1, x2, y2 = (int(round(float(v))) for v in track.box)
            color = identity_color(int(track.track_id))
            self.trails[int(track.track_id)].append(((x1 + x2) // 2, (y1 + y2) // 2))
            points = np.asarray(self.trails[int(track.track_id)], dtype=np.int32).reshape(-1, 1, 2)
            if len(points) > 1:
                cv2.polylines(canvas, [points], False, color, thickness)
            cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
            label = str(int(track.track_id))
            scale = 0.4 * thickness
            (w, h), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
            top = max(0, y1 - h - base - 2)
            cv2.rectangle(canvas, (x1, top), (x1 + w + 2, top + h + base + 2), color, -1)
            cv2.putText(
                canvas, label, (x1 + 1, top + h + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness
            )
        return canvas


def rows_to_tracks(rows: np.ndarray) -> list:
    """Result rows (frame, id, left, top, w, h, score) → `motrv3.Track`-like objects for drawing."""
    return [
        SimpleNamespace(track_id=int(r[1]), box=(r[2], r[3], r[2] + r[4], r[3] + r[5]), score=float(r[6]))
        for r in rows
    ]
