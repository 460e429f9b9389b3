"""The `motrv3` console script: `motrv3 <command> ...` runs `pipeline.commands.<module>.main`.

Commands are entry points like the stages (`pipeline.entry`); a command's module is imported only
when it runs, so `motrv3 params` does not load what `motrv3 track` needs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command → (module under pipeline.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "params": ("params", "validate params.yaml and print the effective values"),
    "track": ("track", "track a video or frame folder with a checkpoint: annotated video + MOT txt"),
    "export": ("export", "export a checkpoint's per-frame network to ONNX (docs/export.md)"),
    "evaluate": ("evaluate", "score MOTChallenge result files with TrackEval (any tracker's)"),
    "import": ("import_official", "an official MOTR/MOTRv2/Deformable-DETR checkpoint as ours"),
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
    importlib.import_module(f"pipeline.commands.{COMMANDS[args.command][0]}").main(argv[1:])


if __name__ == "__main__":
    main()
