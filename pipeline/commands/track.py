"""`motrv3 track VIDEO_OR_FRAME_DIR --checkpoint CKPT`: an annotated video and the MOTChallenge txt.

Input: a video file OpenCV can read, a folder of frames (sorted by name), a MOTChallenge sequence
folder (`img1/` + `seqinfo.ini`, whose frame rate is used), a split folder of such sequences
(each tracked from a fresh state by one model), a camera index (`0`) or a stream URL (`rtsp://`,
`http://`; until its end, `--max-frames` or Ctrl-C). Output in `--out`: the video drawn with
supervision's annotators (boxes, identities, the trail of each identity's recent centres; H.264
`.mp4` or VP9 `.webm`, which browsers play, else mp4v `.mp4`; `--no-video`: none) and `<name>.txt`
(`frame,id,x,y,w,h,score,-1,-1,-1`, pixels of the input). Device: CUDA when present (`--bf16`:
bfloat16 autocast there), else CPU; an .onnx runs on onnxruntime's CUDA provider when it has one.
"""

from __future__ import annotations

import logging

from pipeline.demo import load_tracker, run_demo, sequence_folders, stop_on_interrupt
from pipeline.drawing import CODECS
from pipeline.entry import command_parser, user_errors
from pipeline.runtime import configure_process


def main(argv: list[str] | None = None) -> None:
    parser = command_parser("motrv3 track", __doc__, params=False, console=False)
    parser.add_argument(
        "source",
        help="video file, folder of frames, MOTChallenge sequence folder, a split folder of sequences "
        "(one <seq>.txt each: `motrv3 evaluate --gt SPLIT --results OUT` scores them), a camera index "
        "(0, 1, ...) or a stream URL (rtsp://..., http://...)",
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
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA when present, for an .onnx onnxruntime's CUDA provider when it has one), cpu "
        "or cuda[:N] (default: %(default)s)",
    )
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA, torch backend only)")
    parser.add_argument(
        "--size", type=int, help="shorter image side at test time (default: the checkpoint's)"
    )
    parser.add_argument("--max-size", type=int, help="longer side cap (default: the checkpoint's)")
    parser.add_argument(
        "--trail", type=int, default=30, help="frames of trail drawn per identity (default: 30)"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: up to 4)")
    parser.add_argument("--no-video", action="store_true", help="only the MOTChallenge txt, no video")
    parser.add_argument(
        "--codec",
        choices=("auto", *CODECS),
        default="auto",
        help="video codec; auto: avc1 (H.264 .mp4), else vp9 (.webm), both play in browsers, else mp4v "
        "(.mp4, may not) (default: %(default)s)",
    )
    parser.add_argument("--max-frames", type=int, help="stop after N frames (e.g. of a camera)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.max_frames is not None and args.max_frames < 1:
        parser.error("--max-frames must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    options = dict(
        trail=args.trail,
        threads=args.threads,
        progress=not args.no_progress,
        video=not args.no_video,
        codec=args.codec,
        max_frames=args.max_frames,
    )
    sources = sequence_folders(args.source) or [args.source]
    with user_errors(FileNotFoundError, ValueError, RuntimeError):
        tracker = None
        if len(sources) > 1:  # a split: one model for every sequence
            configure_process(args.threads)
            tracker = load_tracker(
                args.checkpoint, args.device, args.size, args.max_size, args.backend, args.bf16
            )
        with stop_on_interrupt() as stop:
            for source in sources:
                if stop.is_set():
                    break
                summary = run_demo(
                    source,
                    args.checkpoint,
                    args.out,
                    device=args.device,
                    size=args.size,
                    max_size=args.max_size,
                    backend=args.backend,
                    tracker=tracker,
                    bf16=args.bf16,
                    stop=stop,
                    **options,
                )
                _print_summary(summary)


def _print_summary(summary: dict) -> None:
    video = f"\nvideo:   {summary['video']}" if summary["video"] else ""
    print(
        f"{summary['frames']} frames, {summary['fps']:.2f} FPS ({summary['fps_with_io']:.2f} with "
        f"reading) on {summary['device']}, after a {summary['warmup_seconds']:.1f} s first-frame "
        f"warm-up (not counted){video}\nresults: {summary['results']}"
    )


if __name__ == "__main__":
    main()
