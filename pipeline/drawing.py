"""Tracks drawn with `supervision`'s annotators (boxes, identities, the trail of each identity's
recent centres) and written with its `VideoSink` in a codec browsers play when OpenCV has one."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import supervision as sv

log = logging.getLogger(__name__)

# codec → (OpenCV fourcc, file suffix). Browsers play H.264 mp4 and VP9/VP8 WebM, not MPEG-4 Part 2.
CODECS: dict[str, tuple[str, str]] = {
    "avc1": ("avc1", ".mp4"),
    "vp9": ("VP90", ".webm"),
    "vp8": ("VP80", ".webm"),
    "mp4v": ("mp4v", ".mp4"),
}
BROWSER_CODECS = ("avc1", "vp9", "vp8")
AUTO_CODECS = ("avc1", "vp9", "mp4v")  # OpenCV's pip wheels have no H.264 encoder: VP9 there
_unavailable: set[str] = set()  # codecs this process found OpenCV cannot write: not tried again


@contextlib.contextmanager
def _quiet_opencv():
    """OpenCV's own error lines off while a codec is tried (FFmpeg may still print a line or two)."""
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(previous)


def class_names(classes: dict[int, str] | None) -> dict[int, str] | None:
    """What labels name: `classes` (gt class id → name) when there are several, else None (one
    class: labels show the identity only, as MOTChallenge visualisations do)."""
    return dict(classes) if classes and len(classes) > 1 else None


def to_detections(tracks) -> sv.Detections:
    """`motrv3.Track`s (track_id, box x1 y1 x2 y2 pixels, score, label) as supervision detections."""
    tracks = list(tracks)
    return sv.Detections(
        xyxy=np.asarray([t.box for t in tracks], dtype=np.float32).reshape(-1, 4),
        confidence=np.asarray([t.score for t in tracks], dtype=np.float32),
        class_id=np.asarray([getattr(t, "label", 0) for t in tracks], dtype=int),
        tracker_id=np.asarray([t.track_id for t in tracks], dtype=int),
    )


class Annotator:
    """Draws boxes, identities and trails (the last `trail` centres of each identity), one colour per
    identity; sized from the first frame. `draw` takes RGB and returns a BGR frame for the sink.

    `names` (label → class name, `class_names`): labels read "<id> <class>"; None: "<id>"."""

    def __init__(self, trail: int = 30, names: dict[int, str] | None = None):
        self.trail = max(1, trail)
        self.names = list(names.values()) if names else None  # label order = dataset.classes order
        self.annotators: tuple | None = None

    def label(self, track_id: int, label: int) -> str:
        if self.names is None:
            return str(track_id)
        name = self.names[label] if 0 <= label < len(self.names) else f"class {label}"
        return f"{track_id} {name}"

    def _build(self, shape: tuple[int, ...]) -> tuple:
        thickness = max(1, round(min(shape[:2]) / 300))
        lookup = sv.ColorLookup.TRACK
        return (
            sv.TraceAnnotator(trace_length=self.trail, thickness=thickness, color_lookup=lookup),
            sv.BoxAnnotator(thickness=thickness, color_lookup=lookup),
            sv.LabelAnnotator(
                color_lookup=lookup, text_scale=0.4 * thickness, text_thickness=thickness, text_padding=2
            ),
        )

    def draw(self, image_rgb: np.ndarray, tracks) -> np.ndarray:
        canvas = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
        self.annotators = self.annotators or self._build(canvas.shape)
        trace, box, label = self.annotators
        detections = to_detections(tracks)
        canvas = trace.annotate(canvas, detections)  # updates the trails even with no detection
        if len(detections):
            canvas = box.annotate(canvas, detections)
            texts = [
                self.label(int(i), int(c))
                for i, c in zip(detections.tracker_id, detections.class_id, strict=True)
            ]
            canvas = label.annotate(canvas, detections, labels=texts)
        return canvas


class VideoOutput:
    """An annotated video written through `sv.VideoSink` to `<dir>/.<name>.partial<suffix>` and moved
    to `<dir>/<name><suffix>` by `close()`. codec "auto": the first of H.264 mp4, VP9 WebM, mp4v mp4
    that this OpenCV can write (mp4v: logged as a file browsers may not play)."""

    def __init__(self, out_dir: Path, name: str, fps: float, width: int, height: int, codec: str = "auto"):
        candidates = AUTO_CODECS if codec == "auto" else (codec,)
        self.stack = contextlib.ExitStack()
        for choice in candidates:
            if codec == "auto" and choice in _unavailable:
                continue
            fourcc, suffix = CODECS[choice]
            partial = Path(out_dir) / f".{name}.partial{suffix}"
            sink = sv.VideoSink(str(partial), sv.VideoInfo(width, height, fps), codec=fourcc)
            try:
                with _quiet_opencv():
                    self.sink = self.stack.enter_context(sink)
            except RuntimeError:
                partial.unlink(missing_ok=True)
                _unavailable.add(choice)
                log.info("no %s encoder in this OpenCV build; trying the next codec", choice)
                continue
            self.codec, self.partial, self.path = choice, partial, Path(out_dir) / f"{name}{suffix}"
            break
        else:
            raise RuntimeError(f"OpenCV cannot write a {' / '.join(candidates)} video here")
        if self.codec in BROWSER_CODECS:
            log.info("writing %s (%s)", self.path, self.codec)
        else:
            why = "no H.264/VP9 encoder in this OpenCV" if codec == "auto" else "--codec mp4v"
            log.warning("writing %s with mp4v (%s): the file may not play in browsers", self.path, why)

    def write(self, frame_bgr: np.ndarray) -> None:
        self.sink.write_frame(frame_bgr)

    def close(self, keep: bool = True) -> Path:
        """Finish the file; `keep`: move it into place, else delete it. Returns the final path."""
        self.stack.close()
        if keep:
            os.replace(self.partial, self.path)
        else:
            self.partial.unlink(missing_ok=True)
        return self.path


def rows_to_tracks(rows: np.ndarray, names: dict[int, str] | None = None) -> list:
    """Result rows (frame, id, left, top, w, h, score[, gt class id]) → `motrv3.Track`-like objects
    for drawing; `names` (gt class id → name, label order) turns the class id back into a label."""
    labels = {cls: label for label, cls in enumerate(names or {})}
    return [
        SimpleNamespace(
            track_id=int(r[1]),
            box=(r[2], r[3], r[2] + r[4], r[3] + r[5]),
            score=float(r[6]),
            label=labels.get(int(r[7]), 0) if len(r) > 7 else 0,
        )
        for r in rows
    ]
