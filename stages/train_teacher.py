"""Stage `train_teacher`: PLD's teacher (§3.3) → models/teacher/.

The paper's pseudo labels come from a detector far stronger than the tracker's own detect queries
(YOLOX, trained on more data for longer). The teacher is the `train_detector` recipe with the
`teacher` sections of params.yaml merged in (e.g. a deeper decoder); it is used in training only,
through the `teacher` pseudo-label source, never at inference. With no `teacher` sections (the paper
profile: its PLD reads YOLOX's detections) the stage trains nothing and says so in
models/teacher/NOT_TRAINED.txt.
"""

from __future__ import annotations

from pathlib import Path

from pipeline import paths
from pipeline.console import say
from pipeline.entry import params_from_args
from pipeline.paths import write_text_atomic
from stages.train import train, train_parser


def main(argv: list[str] | None = None) -> None:
    args = train_parser("python -m stages.train_teacher", __doc__, None).parse_args(argv)
    if not params_from_args(args).teacher:
        note = Path(args.output_dir or paths.MODELS_DIR / "teacher") / "NOT_TRAINED.txt"
        write_text_atomic(note, "params.yaml describes no teacher (`teacher` is empty): nothing to train.\n")
        say(f"train_teacher: params.yaml describes no teacher (`teacher` is empty); wrote {note}")
        return
    train(args, "teacher")


if __name__ == "__main__":
    main()
