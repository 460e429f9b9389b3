"""The `motrv3` console script: user-facing commands (`motrv3 track`, `motrv3 evaluate`, ...)."""

from __future__ import annotations

import argparse
import importlib
import sys

# command → (module with `build_parser(subparsers)`-free `main(argv)`, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "params": ("pipeline.params", "validate params.yaml and print the effective values"),
    "track": ("pipeline.demo", "track a video or frame folder with a checkpoint: annotated video + MOT txt"),
    "export": ("motrv3.export", "export a checkpoint's per-frame network to ONNX (docs/export.md)"),
    "evaluate": ("pipeline.steps.evaluate", "score MOTChallenge result files with TrackEval (any tracker's)"),
    "import": ("pipeline.import_official", "an official MOTR/MOTRv2/Deformable-DETR checkpoint as ours"),
}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="motrv3", description="MOTRv3 multi-object tracking")
    parser.add_argument(
        "command", choices=sorted(COMMANDS), help="; ".join(f"{k}: {v[1]}" for k, v in COMMANDS.items())
    )
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        sys.exit(0 if argv else 2)
    args = parser.parse_args(argv[:1])
    module = importlib.import_module(COMMANDS[args.command][0])
    module.main(argv[1:])


if __name__ == "__main__":
    main()
