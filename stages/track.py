"""Stage `track`: run a trained checkpoint over every sequence of a split → MOTChallenge results + fps.json.

Reads `data/clips/<split>/` and `models/<method>/checkpoint.pt`; writes
`results/<method>/<split>/<seq>.txt` and `fps.json` (the folder is replaced atomically).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.params import add_params_arguments, params_from_args
from pipeline.paths import CLIPS_DIR, MODELS_DIR


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.track", description=__doc__.splitlines()[0])
    add_params_arguments(parser)
    parser.add_argument("--method", required=True, help="model name under models/ (e.g. motr, motrv3)")
    parser.add_argument("--split", help="split under data/clips/ (default: dataset.eval_split)")
    parser.add_argument(
        "--checkpoint", help="checkpoint (default: track.checkpoint, else models/<method>/checkpoint.pt)"
    )
    parser.add_argument(
        "--clips", default=str(CLIPS_DIR), help="converted datasets folder (default: %(default)s)"
    )
    parser.add_argument("--out", help="results folder (default: results/<method>/<split>)")
    args = parser.parse_args(argv)
    params = params_from_args(args)

    from pipeline.tracking import TrackSettings, results_dir, track_split

    split = args.split or params.dataset.eval_split
    checkpoint = Path(
        args.checkpoint or params.track.checkpoint or MODELS_DIR / args.method / "checkpoint.pt"
    )
    dataset_dir = Path(args.clips) / split
    if not checkpoint.is_file():
        sys.exit(f"error: {checkpoint}: no such checkpoint (run the train stage, or pass --checkpoint)")
    if not dataset_dir.is_dir():
        sys.exit(f"error: {dataset_dir}: no converted split (run the convert stage)")
    settings = TrackSettings(
        checkpoint=str(checkpoint),
        tracking=params.tracking.to_config(),
        size=params.data.eval_size,
        max_size=params.data.eval_max_size,
        device=params.track.device,
        threads=params.track.cpus_per_worker,
    )
    out_dir = Path(args.out) if args.out else results_dir(args.method, split)
    summary = track_split(
        settings,
        dataset_dir,
        out_dir,
        workers=params.track.workers,
        ray_address=params.ray.address,
        save_video=params.track.save_video,
        extra_info={"method": args.method, "split": split},
    )
    print(
        f"{out_dir}: {summary['sequences_count']} sequences, {summary['frames']} frames, "
        f"{summary['fps']:.2f} FPS ({summary['fps_with_io']:.2f} with reading and decoding) on {summary['device']}"
    )


if __name__ == "__main__":
    main()
