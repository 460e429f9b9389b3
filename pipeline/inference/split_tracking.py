"""A trained checkpoint over a converted split, online, frame by frame, one result file per sequence.

Speed is measured as Table 6 does (frames per second of the tracker itself, reading and decoding
the images excluded), and also end to end (reading and decoding included). Both are steady-state
rates: a fresh tracker's first step (lazy initialisation, first allocations; tens of seconds on a
fresh clone) is a separate warm-up step (`warm_up`), reported as `warmup_seconds`. With `track.workers`
> 1 the sequences run in parallel on Ray actors (one model per actor); the per-sequence FPS is then
still the speed of one stream, and `throughput_fps` what the workers achieve together.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

import motrv3
from pipeline.console import Progress, say
from pipeline.data.parquet_io import read_manifest
from pipeline.data.reader import iter_frames, list_sequences
from pipeline.datasets import class_ids, class_map, classes_of_config
from pipeline.drawing import Annotator, class_names, rows_to_tracks
from pipeline.formats.motchallenge import tracks_to_rows, write_results
from pipeline.params import Params
from pipeline.paths import FPS_FILE, atomic_path
from pipeline.runtime import configure_process, resolve_device


@dataclass(frozen=True)
class TrackSettings:
    """What a worker needs to rebuild the tracker (picklable for Ray)."""

    checkpoint: str
    tracking: Any  # motrv3.TrackingConfig
    size: int
    max_size: int
    device: str = "cpu"
    threads: int = 1


@dataclass
class SequenceRun:
    sequence: str
    rows: np.ndarray  # [N, 8] frame, id, left, top, width, height, score, gt class id (-1: one class)
    frames: int
    model_seconds: float  # `Tracker.step` only: the Table 6 measure
    total_seconds: float  # reading + decoding + tracking
    warmup_seconds: float = 0.0  # the tracker's warm-up step before this sequence (0: already warm)

    def timing(self) -> dict[str, float | int]:
        return {
            "frames": self.frames,
            "model_seconds": self.model_seconds,
            "total_seconds": self.total_seconds,
            "warmup_seconds": self.warmup_seconds,
            "fps": self.frames / self.model_seconds if self.model_seconds > 0 else 0.0,
            "fps_with_io": self.frames / self.total_seconds if self.total_seconds > 0 else 0.0,
        }


def with_classes(tracker, config: dict | None):
    """`tracker` with `.classes` (gt class id → name, label order) of the checkpoint's config: what
    `run_online` writes as each row's class and the drawing names."""
    tracker.classes = classes_of_config(config)
    return tracker


def build_tracker(settings: TrackSettings):
    """Load the checkpoint (weights_only) and wrap it in the library's online tracker (`with_classes`)."""
    configure_process(settings.threads)
    if str(settings.checkpoint).lower().endswith(".onnx"):  # an export: onnxruntime on CPU (docs/export.md)
        network, config = motrv3.load_onnx(settings.checkpoint, threads=max(1, settings.threads))
        tracker = motrv3.Tracker(network, settings.tracking, settings.size, settings.max_size, "cpu")
        return with_classes(tracker, config)
    model, config = motrv3.load_checkpoint(settings.checkpoint)
    device = resolve_device(settings.device)
    model = model.to(device).eval()
    tracker = motrv3.Tracker(model, settings.tracking, settings.size, settings.max_size, device)
    return with_classes(tracker, config)


def warm_up(tracker, image: np.ndarray) -> float:
    """One step of a fresh tracker on `image`, then `reset()`; returns its seconds.

    The first step pays one-time costs (lazy initialisation, first allocations) that no later frame
    pays; taking it outside the timed frames keeps FPS a steady-state rate. The reset discards its
    tracks, so the results are those of a tracker that never saw the frame.
    """
    begin = time.perf_counter()
    with torch.inference_mode():
        tracker.step(image)
    seconds = time.perf_counter() - begin
    tracker.reset()
    return seconds


def run_online(
    tracker,
    frames: Iterable[tuple[int, np.ndarray]],
    on_frame: Callable[[int, np.ndarray, list], None] | None = None,
    classes: dict[int, str] | None = None,
) -> tuple[np.ndarray, int, float, float]:
    """Feed frames (frame number, RGB image) one at a time; the frames iterator may read and decode lazily.

    Returns (rows [N, 8], frame count, seconds in `tracker.step`, seconds overall); a row's 8th
    value is its track's gt class id with several `classes` (default: the tracker's `.classes`,
    `with_classes`), else -1. `on_frame(frame, image, tracks)` (drawing, progress bars) is excluded
    from both clocks.
    """
    ids = class_ids(classes if classes is not None else getattr(tracker, "classes", None))
    tracker.reset()
    rows: list[list[float]] = []
    count, model_seconds, outside = 0, 0.0, 0.0
    start = time.perf_counter()
    with torch.inference_mode():
        for frame, image in frames:
            begin = time.perf_counter()
            tracks = tracker.step(image)  # returns Python values: the device has finished
            model_seconds += time.perf_counter() - begin
            rows.extend(tracks_to_rows(frame, tracks, ids))
            count += 1
            if on_frame is not None:
                begin = time.perf_counter()
                on_frame(frame, image, tracks)
                outside += time.perf_counter() - begin
    total = time.perf_counter() - start - outside
    array = np.asarray(rows, dtype=np.float64).reshape(-1, 8)
    return array, count, model_seconds, total


def _dataset_frames(dataset_dir: Path, sequence: str) -> Iterator[tuple[int, np.ndarray]]:
    """(frame number, RGB image) of a stored sequence; reading and decoding happen lazily, per frame."""
    for frame, image, _ in iter_frames(dataset_dir, sequence):
        yield frame, image


def track_sequence(
    tracker, dataset_dir: str | Path, sequence: str, progress: Callable[[], Any] | None = None
) -> SequenceRun:
    """Track one stored sequence from its first frame (fresh tracker state)."""
    hook = (lambda frame, image, tracks: progress()) if progress is not None else None
    rows, count, model_seconds, total = run_online(
        tracker, _dataset_frames(Path(dataset_dir), sequence), hook
    )
    return SequenceRun(sequence, rows, count, model_seconds, total)


def _sequence_length(dataset_dir: Path, sequence: str) -> int | None:
    return read_manifest(dataset_dir)["sequences"][sequence]["frames"]


def _warm_up_on(tracker, dataset_dir: Path, sequence: str) -> float:
    """`warm_up` on the first frame of `sequence`."""
    frames = _dataset_frames(Path(dataset_dir), sequence)
    first = next(frames, None)
    frames.close()
    return warm_up(tracker, first[1]) if first is not None else 0.0


def _sequence_line(run: SequenceRun) -> str:
    warm = f", after a {run.warmup_seconds:.1f} s warm-up" if run.warmup_seconds else ""
    return f"{run.sequence}: {run.frames} frames, {run.timing()['fps']:.2f} FPS{warm}"


def _track_sequences_local(
    settings: TrackSettings, dataset_dir: Path, sequences: list[str], progress: bool = True
) -> list[SequenceRun]:
    tracker = build_tracker(settings)
    warmup = _warm_up_on(tracker, dataset_dir, sequences[0])
    runs = []
    for sequence in sequences:
        with Progress(sequence, _sequence_length(dataset_dir, sequence), "frames", live=progress) as bar:
            run = track_sequence(tracker, dataset_dir, sequence, progress=lambda: bar.update())
            run.warmup_seconds, warmup = warmup, 0.0
            bar.set_postfix(FPS=f"{run.timing()['fps']:.2f}")
        runs.append(run)
    return runs


class _TrackWorker:
    """A Ray actor holding one tracker; sequences are sent to it one at a time."""

    def __init__(self, settings: TrackSettings):
        self.tracker = build_tracker(settings)
        self.warm = False

    def run(self, dataset_dir: str, sequence: str) -> SequenceRun:
        warmup = 0.0 if self.warm else _warm_up_on(self.tracker, Path(dataset_dir), sequence)
        self.warm = True
        run = track_sequence(self.tracker, dataset_dir, sequence)
        run.warmup_seconds = warmup
        return run


def _track_sequences_ray(
    settings: TrackSettings, dataset_dir: Path, sequences: list[str], workers: int, ray_address: str | None
) -> list[SequenceRun]:
    import ray as ray_module

    from pipeline.ray_utils import init_ray

    started_here = not ray_module.is_initialized()
    ray = init_ray(ray_address, num_cpus=None if ray_address else workers * settings.threads)
    from ray.util import ActorPool

    try:
        gpus = 1 if resolve_device(settings.device).startswith("cuda") else 0
        actor = ray.remote(num_cpus=settings.threads, num_gpus=gpus)(_TrackWorker)
        actors = [actor.remote(settings) for _ in range(min(workers, len(sequences)))]
        dataset = str(dataset_dir.resolve())
        runs = []
        for run in ActorPool(actors).map_unordered(lambda a, seq: a.run.remote(dataset, seq), sequences):
            say(_sequence_line(run))  # one line per sequence, as it finishes
            runs.append(run)
        for handle in actors:
            ray.kill(handle)
        return runs
    finally:
        if started_here:
            ray.shutdown()  # only the instance this call started


def track_split(
    settings: TrackSettings,
    dataset_dir: str | Path,
    out_dir: str | Path,
    workers: int = 1,
    ray_address: str | None = None,
    sequences: list[str] | None = None,
    extra_info: dict[str, Any] | None = None,
    save_video: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Track every sequence of a converted split; write `<out_dir>/<seq>.txt` and `fps.json`
    (+ an annotated `<seq>.mp4` each with `save_video`, drawn after timing).

    The folder is replaced as a whole (atomically), so it never mixes two runs. Returns fps.json's content.
    """
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    sequences = list(sequences) if sequences is not None else list_sequences(dataset_dir)
    if not sequences:
        raise ValueError(f"{dataset_dir}: no sequences to track")
    start = time.perf_counter()
    if workers > 1 and len(sequences) > 1:
        runs = _track_sequences_ray(settings, dataset_dir, sequences, workers, ray_address)
    else:
        runs = _track_sequences_local(settings, dataset_dir, sequences, progress)
    wall = time.perf_counter() - start
    runs.sort(key=lambda run: sequences.index(run.sequence))
    frames = sum(r.frames for r in runs)
    model_seconds = sum(r.model_seconds for r in runs)
    total_seconds = sum(r.total_seconds for r in runs)
    summary: dict[str, Any] = {
        "fps": frames / model_seconds if model_seconds > 0 else 0.0,
        "fps_with_io": frames / total_seconds if total_seconds > 0 else 0.0,
        "throughput_fps": frames / wall if wall > 0 else 0.0,
        # One per tracker (each Ray worker warms its own): the longest, as a person waits for it.
        "warmup_seconds": max(r.warmup_seconds for r in runs),
        "frames": frames,
        "sequences_count": len(runs),
        "wall_seconds": wall,
        "workers": workers if len(sequences) > 1 else 1,
        "device": resolve_device(settings.device),
        "torch_threads": settings.threads,
        "size": settings.size,
        "max_size": settings.max_size,
        "checkpoint": str(settings.checkpoint),
        **(extra_info or {}),
        "sequences": {run.sequence: run.timing() for run in runs},
    }
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        for run in runs:
            write_results(tmp / f"{run.sequence}.txt", run.rows)
        (tmp / FPS_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        if save_video:
            manifest = read_manifest(dataset_dir)
            names = class_names(class_map(manifest.get("classes")))
            for run in runs:
                rate = manifest["sequences"][run.sequence].get("frame_rate")
                rate = float(rate) if rate and math.isfinite(rate) else 25.0
                video = tmp / f"{run.sequence}.mp4"
                render_video(dataset_dir, run.sequence, run.rows, video, rate, names)
    return summary


def render_video(
    dataset_dir: Path,
    sequence: str,
    rows: np.ndarray,
    path: Path,
    fps: float = 25.0,
    names: dict[int, str] | None = None,
) -> None:
    """Draw result rows (boxes, identities, trails; `names`: gt class id → name shown) over a stored
    sequence into an mp4v video."""
    annotator, writer = Annotator(names=names), None
    try:
        for frame, image in _dataset_frames(dataset_dir, sequence):
            canvas = annotator.draw(image, rows_to_tracks(rows[rows[:, 0] == frame], names))
            if writer is None:
                size = (canvas.shape[1], canvas.shape[0])
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
            writer.write(canvas)
    finally:
        if writer is not None:
            writer.release()


def settings_from_params(params: Params, checkpoint: str | Path) -> TrackSettings:
    """The tracker of a checkpoint as the params configure it (test size, tracking, device, threads)."""
    return TrackSettings(
        checkpoint=str(checkpoint),
        tracking=params.tracking.to_config(),
        size=params.data.eval_size,
        max_size=params.data.eval_max_size,
        device=params.track.device,
        threads=params.track.cpus_per_worker,
    )
