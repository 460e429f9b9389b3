"""`motrv3 track VIDEO_OR_FRAME_DIR --checkpoint CKPT`: an annotated video and the MOTChallenge txt.

Input: a video file OpenCV can read, a folder of frames (sorted by name), or a MOTChallenge sequence
folder (`img1/` + `seqinfo.ini`, whose frame rate is used), or a split folder of such sequences
(each tracked from a fresh state by one model). Output in `--out`: `<name>.mp4` (mp4v; boxes,
identities and the trail of each identity's recent centres; `--no-video`: none) and `<name>.txt`
(`frame,id,x,y,w,h,score,-1,-1,-1`, pixels of the input). Runs on CPU when no GPU is present.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

import motrv3
from motrv3.config import TrackingConfig, from_dict
from pipeline.data.images import decode_image
from pipeline.drawing import Annotator
from pipeline.formats.motchallenge import read_seqinfo, write_results
from pipeline.params import DataParams
from pipeline.runtime import configure_process, resolve_device
from pipeline.steps.track import run_online, warm_up

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
DEFAULT_FPS = 25.0


class FrameSource:
    """Frames of a video or an image folder as (1-based frame number, RGB uint8) pairs."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.fps = DEFAULT_FPS
        self.files: list[Path] | None = None
        if self.path.is_dir():
            folder = self.path
            if (self.path / "seqinfo.ini").is_file():
                info = read_seqinfo(self.path / "seqinfo.ini")
                folder = self.path / info.im_dir
                self.fps = info.frame_rate or DEFAULT_FPS
            self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.files:
                raise FileNotFoundError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
            self.length: int | None = len(self.files)
        elif self.path.is_file():
            capture = cv2.VideoCapture(str(self.path))
            if not capture.isOpened():
                raise ValueError(f"{self.path}: OpenCV cannot open this video")
            fps = capture.get(cv2.CAP_PROP_FPS)
            self.fps = fps if fps and fps > 0 else DEFAULT_FPS
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            self.length = count if count > 0 else None
            capture.release()
        else:
            raise FileNotFoundError(f"{self.path}: no such video or frame folder")

    @property
    def name(self) -> str:
        return self.path.stem if self.path.is_file() else self.path.name

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        if self.files is not None:
            for number, file in enumerate(self.files, start=1):
                try:
                    image = decode_image(file.read_bytes())
                except ValueError:
                    raise ValueError(f"{file}: cannot decode the image") from None
                yield number, image
            return
        capture = cv2.VideoCapture(str(self.path))
        try:
            number = 0
            while True:
                ok, image = capture.read()
                if not ok:
                    break
                number += 1
                yield number, cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()


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


def load_tracker(
    checkpoint: str | Path,
    device: str = "auto",
    size: int | None = None,
    max_size: int | None = None,
    backend: str = "auto",
):
    """(tracker, device label) of a checkpoint: ours (trained or `motrv3 import`ed) or an .onnx export."""
    if backend == "auto":
        backend = "onnxruntime" if Path(checkpoint).suffix.lower() == ".onnx" else "torch"
    if backend == "onnxruntime":
        import torch

        model, config = motrv3.load_onnx(checkpoint, threads=torch.get_num_threads())
        device = "cpu"
    else:
        model, config = motrv3.load_checkpoint(checkpoint)
        device = resolve_device(device)
        model = model.to(device).eval()
    tracking, size, max_size = tracking_settings(config, size, max_size)
    label = device if backend == "torch" else f"{device} (onnxruntime)"
    return motrv3.Tracker(model, tracking, size, max_size, device), label


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
) -> dict:
    """Track `source` and write `<out>/<name>.mp4` (unless not `video`) and `<out>/<name>.txt`;
    returns paths and speed.

    backend: "torch", "onnxruntime" (an exported .onnx, docs/export.md, on CPU), or "auto" (by
    the checkpoint's suffix). `tracker`: a `load_tracker` result to reuse (a split's sequences)."""
    frames = FrameSource(source)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    configure_process(threads)
    tracker, device = tracker or load_tracker(checkpoint, device, size, max_size, backend)
    # FPS is the steady-state rate: the first step's one-time cost is measured and reported apart.
    frame_iter = iter(frames)
    first = next(frame_iter, None)
    frame_iter.close()
    if first is None:
        raise ValueError(f"{source}: no frames")
    warmup_seconds = warm_up(tracker, first[1])

    video_path, txt_path = out_dir / f"{frames.name}.mp4", out_dir / f"{frames.name}.txt"
    # OpenCV picks the container from the extension, so the temporary file keeps ".mp4".
    partial = out_dir / f".{frames.name}.partial.mp4"
    annotator = Annotator(trail)
    state: dict = {"writer": None}
    bar = tqdm(total=frames.length, desc=frames.name, unit="frame", disable=not progress)

    def write_frame(frame: int, image: np.ndarray, tracks) -> None:
        if not video:
            bar.update()
            return
        canvas = annotator.draw(image, tracks)
        if state["writer"] is None:
            height, width = canvas.shape[:2]
            writer = cv2.VideoWriter(
                str(partial), cv2.VideoWriter_fourcc(*"mp4v"), frames.fps, (width, height)
            )
            if not writer.isOpened():
                raise RuntimeError(f"{partial}: OpenCV cannot write an mp4v video here")
            state["writer"] = writer
        state["writer"].write(canvas)
        bar.update()

    try:
        rows, count, model_seconds, total = run_online(tracker, frames, write_frame)
    finally:
        bar.close()
        if state["writer"] is not None:
            state["writer"].release()
    if count == 0:
        partial.unlink(missing_ok=True)
        raise ValueError(f"{source}: no frames")
    if video:
        os.replace(partial, video_path)
    write_results(txt_path, rows)
    return {
        "video": str(video_path) if video else None,
        "results": str(txt_path),
        "frames": count,
        "fps": count / model_seconds if model_seconds > 0 else 0.0,
        "fps_with_io": count / total if total > 0 else 0.0,
        "warmup_seconds": warmup_seconds,
        "device": device,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="motrv3 track", description=__doc__.splitlines()[0])
    parser.add_argument(
        "source",
        help="video file, folder of frames, MOTChallenge sequence folder, or a split folder of sequences "
        "(one <seq>.txt each: `motrv3 evaluate --gt SPLIT --results OUT` scores them)",
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="a motrv3 checkpoint (models/<method>/checkpoint.pt, or an official one converted by "
        "`motrv3 import`) or an export (`motrv3 export`, .onnx)",
    )
    parser.add_argument(
        "--backend",
        choices=("auto", "torch", "onnxruntime"),
        default="auto",
        help="auto: onnxruntime for a .onnx checkpoint, else torch (default: %(default)s)",
    )
    parser.add_argument("--out", default="demo_output", help="output folder (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: %(default)s)")
    parser.add_argument(
        "--size", type=int, help="shorter image side at test time (default: the checkpoint's)"
    )
    parser.add_argument("--max-size", type=int, help="longer side cap (default: the checkpoint's)")
    parser.add_argument(
        "--trail", type=int, default=30, help="frames of trail drawn per identity (default: 30)"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: up to 4)")
    parser.add_argument("--no-video", action="store_true", help="only the MOTChallenge txt, no video")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    options = dict(
        trail=args.trail, threads=args.threads, progress=not args.no_progress, video=not args.no_video
    )
    sources = sequence_folders(args.source) or [Path(args.source)]
    try:
        tracker = None
        if len(sources) > 1:  # a split: one model for every sequence
            configure_process(args.threads)
            tracker = load_tracker(args.checkpoint, args.device, args.size, args.max_size, args.backend)
        for source in sources:
            summary = run_demo(
                source,
                args.checkpoint,
                args.out,
                device=args.device,
                size=args.size,
                max_size=args.max_size,
                backend=args.backend,
                tracker=tracker,
                **options,
            )
            video = f"\nvideo:   {summary['video']}" if summary["video"] else ""
            print(
                f"{summary['frames']} frames, {summary['fps']:.2f} FPS ({summary['fps_with_io']:.2f} with "
                f"reading) on {summary['device']}, after a {summary['warmup_seconds']:.1f} s first-frame "
                f"warm-up (not counted){video}\nresults: {summary['results']}"
            )
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
