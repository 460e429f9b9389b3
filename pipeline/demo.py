"""Tracking a video, frame folder, sequence, split, camera or stream with a checkpoint: the work
behind `motrv3 track` (`pipeline.commands.track`, whose docstring lists the inputs and outputs)."""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import cv2
import numpy as np
import torch
from tqdm import tqdm

import motrv3
from motrv3.config import TrackingConfig, from_dict
from pipeline.data.images import decode_image
from pipeline.drawing import Annotator, VideoOutput, class_names
from pipeline.formats.motchallenge import read_seqinfo, write_results
from pipeline.inference.split_tracking import run_online, warm_up, with_classes
from pipeline.params import DataParams
from pipeline.runtime import configure_process, resolve_device

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
DEFAULT_FPS = 25.0
log = logging.getLogger(__name__)


def parse_source(source: str | Path) -> int | str | Path:
    """A camera index (`0`, `1`: digits), a stream URL (`rtsp://`, `http://`, any `scheme://` that
    OpenCV's FFmpeg opens), else a path."""
    text = str(source)
    if text.isdigit():
        return int(text)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
        return text
    return Path(source)


class FrameSource:
    """Frames of a video, an image folder, a camera or a stream as (1-based number, RGB uint8) pairs.

    A camera or stream is opened once and read on across iterations (a frame taken by one is not
    seen again); `max_frames` caps every iteration; `stop` (a `threading.Event`, set by Ctrl-C)
    ends one after the current frame."""

    def __init__(self, path: str | Path, max_frames: int | None = None, stop: threading.Event | None = None):
        target = parse_source(path)
        self.path = Path(str(path))
        self.fps = DEFAULT_FPS
        self.files: list[Path] | None = None
        self.capture: cv2.VideoCapture | None = None
        self.max_frames, self.stop = max_frames, stop
        if not isinstance(target, Path):
            self.live_name = f"camera{target}" if isinstance(target, int) else _stream_name(target)
            self.capture = cv2.VideoCapture(target)
            if not self.capture.isOpened():
                raise ValueError(f"{path}: OpenCV cannot open this camera or stream")
            fps = self.capture.get(cv2.CAP_PROP_FPS)
            self.fps = fps if fps and 0 < fps < 1000 else DEFAULT_FPS
            self.length: int | None = max_frames
        elif self.path.is_dir():
            folder = self.path
            if (self.path / "seqinfo.ini").is_file():
                info = read_seqinfo(self.path / "seqinfo.ini")
                folder = self.path / info.im_dir
                self.fps = info.frame_rate or DEFAULT_FPS
            self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.files:
                raise FileNotFoundError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
            self.length = _capped(len(self.files), max_frames)
        elif self.path.is_file():
            capture = cv2.VideoCapture(str(self.path))
            if not capture.isOpened():
                raise ValueError(f"{self.path}: OpenCV cannot open this video")
            fps = capture.get(cv2.CAP_PROP_FPS)
            self.fps = fps if fps and fps > 0 else DEFAULT_FPS
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            self.length = _capped(count, max_frames) if count > 0 else max_frames
            capture.release()
        else:
            raise FileNotFoundError(f"{self.path}: no such video or frame folder")

    @property
    def name(self) -> str:
        if self.capture is not None:
            return self.live_name
        return self.path.stem if self.path.is_file() else self.path.name

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        images = self._images()
        if self.max_frames is not None:
            images = itertools.islice(images, self.max_frames)
        for number, image in enumerate(images, start=1):
            yield number, image
            if self.stop is not None and self.stop.is_set():
                return

    def _images(self) -> Iterator[np.ndarray]:
        if self.files is not None:
            for file in self.files:
                try:
                    yield decode_image(file.read_bytes())
                except ValueError:
                    raise ValueError(f"{file}: cannot decode the image") from None
            return
        capture = self.capture or cv2.VideoCapture(str(self.path))
        try:
            while True:
                ok, image = capture.read()
                if not ok:  # end of the file or stream (or a stream that stopped answering)
                    break
                yield cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        finally:
            if capture is not self.capture:
                capture.release()


def _capped(count: int, max_frames: int | None) -> int:
    return count if max_frames is None else min(count, max_frames)


def _stream_name(url: str) -> str:
    """An output name for a stream URL: its path's last part, else its host (`rtsp://h/live/cam1` → cam1)."""
    parsed = urlparse(url)
    name = Path(parsed.path).stem or parsed.hostname or "stream"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "stream"


@contextlib.contextmanager
def stop_on_interrupt() -> Iterator[threading.Event]:
    """An event that a first Ctrl-C sets (the run stops after the current frame and keeps what it
    has); a second one interrupts as usual. Only in the main thread, elsewhere the event stays unset."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        log.warning("Ctrl-C: stopping after this frame (again to abort)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def tracking_settings(config: dict, size: int | None, max_size: int | None):
    """Tracking config and test size: command line, else the checkpoint's config, else the schema's."""
    tracking_cfg = config.get("tracking") if isinstance(config, dict) else None
    tracking = from_dict(TrackingConfig, tracking_cfg) if isinstance(tracking_cfg, dict) else TrackingConfig()
    data = config.get("data") if isinstance(config, dict) else None
    data = data if isinstance(data, dict) else {}
    defaults = DataParams()  # the params schema is the one source of defaults
    size = size or data.get("eval_size") or defaults.eval_size
    max_size = max_size or data.get("eval_max_size") or defaults.eval_max_size
    return tracking, size, max_size


def sequence_folders(path: str | Path) -> list[Path]:
    """The MOTChallenge sequence folders of a split folder (e.g. DanceTrack `val/`); [] if it is none."""
    path = Path(path)
    if not path.is_dir() or (path / "seqinfo.ini").is_file():
        return []
    return sorted(p for p in path.iterdir() if p.is_dir() and (p / "seqinfo.ini").is_file())


class Bf16Autocast:
    """A per-frame network whose calls run under bfloat16 `torch.autocast` on `device_type`; the
    logits and boxes it returns are float32 again (bfloat16 pixels would be 8 apart past 1024)."""

    def __init__(self, network, device_type: str = "cuda"):
        self.network, self.device_type = network, device_type

    def __getattr__(self, name: str):
        return getattr(self.network, name)

    def forward_frame(self, image, tracks=None):
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            out = self.network.forward_frame(image, tracks)
        out.logits, out.boxes = out.logits.float(), out.boxes.float()
        return out

    def next_tracks(self, *args, **kwargs):  # the query interaction runs here for a torch model
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.network.next_tracks(*args, **kwargs)


def load_tracker(
    checkpoint: str | Path,
    device: str = "auto",
    size: int | None = None,
    max_size: int | None = None,
    backend: str = "auto",
    bf16: bool = False,
):
    """(tracker, device label) of a checkpoint: ours (trained or `motrv3 import`ed) or an .onnx export.

    device: auto (CUDA when present), cpu or cuda[:N]; for an .onnx, onnxruntime's CUDA provider
    when it has one (`onnxruntime-gpu`), else its CPU one. bf16: bfloat16 autocast, CUDA only."""
    if backend == "auto":
        backend = "onnxruntime" if Path(checkpoint).suffix.lower() == ".onnx" else "torch"
    if backend == "onnxruntime":
        if bf16:
            raise ValueError("--bf16 is for the torch backend (an .onnx runs as exported, float32)")
        model, config = motrv3.load_onnx(checkpoint, threads=torch.get_num_threads(), device=device)
        log.info("onnxruntime runs %s with its %s", checkpoint, model.provider)
        provider = model.provider.removesuffix("ExecutionProvider").lower()
        label, device = f"{provider} (onnxruntime)", "cpu"  # the torch side (resizing) stays on CPU
    else:
        device = resolve_device(device)
        if bf16 and not device.startswith("cuda"):
            raise ValueError(f"--bf16 needs a CUDA device, got {device!r} (on CPU float32 is the fast path)")
        model, config = motrv3.load_checkpoint(checkpoint)
        model = model.to(device).eval()
        label = f"{device} (bf16 autocast)" if bf16 else device
        log.info("torch runs %s on %s", checkpoint, label)
    tracking, size, max_size = tracking_settings(config, size, max_size)
    tracker = with_classes(motrv3.Tracker(model, tracking, size, max_size, device), config)
    if bf16:
        tracker.model = Bf16Autocast(tracker.model, "cuda")
    return tracker, label


def run_demo(
    source: str | Path,
    checkpoint: str | Path,
    out_dir: str | Path,
    device: str = "auto",
    size: int | None = None,
    max_size: int | None = None,
    trail: int = 30,
    threads: int | None = None,
    progress: bool = True,
    backend: str = "auto",
    video: bool = True,
    tracker=None,
    bf16: bool = False,
    codec: str = "auto",
    max_frames: int | None = None,
    stop: threading.Event | None = None,
) -> dict:
    """Track `source` and write `<out>/<name>.<mp4|webm>` (unless not `video`) and `<out>/<name>.txt`;
    returns paths and speed.

    backend: "torch", "onnxruntime" (an exported .onnx, docs/export.md), or "auto" (by the
    checkpoint's suffix). `tracker`: a `load_tracker` result to reuse (a split's sequences).
    codec: "auto" (H.264, else VP9, else mp4v: `pipeline.drawing.VideoOutput`) or one of `CODECS`.
    `max_frames`: at most that many tracked frames; `stop`: an event that ends the run early."""
    frames = FrameSource(source, max_frames=max_frames, stop=stop)
    try:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        configure_process(threads)
        tracker, device = tracker or load_tracker(checkpoint, device, size, max_size, backend, bf16)
        # FPS is the steady-state rate: the first step's one-time cost is measured and reported apart
        # (a camera or stream's first frame goes to this warm-up only).
        frame_iter = iter(frames)
        first = next(frame_iter, None)
        frame_iter.close()
        if first is None:
            raise ValueError(f"{source}: no frames")
        warmup_seconds = warm_up(tracker, first[1])
        txt_path = out_dir / f"{frames.name}.txt"
        height, width = first[1].shape[:2]
        sink = VideoOutput(out_dir, frames.name, frames.fps, width, height, codec) if video else None
        annotator = Annotator(trail, names=class_names(getattr(tracker, "classes", None)))
        bar = tqdm(total=frames.length, desc=frames.name, unit="frame", disable=not progress)

        def write_frame(frame: int, image: np.ndarray, tracks) -> None:
            if sink is not None:
                sink.write(annotator.draw(image, tracks))
            bar.update()

        count = 0
        try:
            rows, count, model_seconds, total = run_online(tracker, frames, write_frame)
        finally:
            bar.close()
            video_path = sink.close(keep=count > 0) if sink is not None else None
    finally:
        frames.close()
    if count == 0:
        raise ValueError(f"{source}: no frames")
    write_results(txt_path, rows)
    return {
        "video": str(video_path) if video_path else None,
        "codec": sink.codec if sink is not None else None,
        "results": str(txt_path),
        "frames": count,
        "fps": count / model_seconds if model_seconds > 0 else 0.0,
        "fps_with_io": count / total if total > 0 else 0.0,
        "warmup_seconds": warmup_seconds,
        "device": device,
    }
