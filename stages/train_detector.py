"""Stage `train_detector`: the PLD pseudo-label detector (detection-only, one-frame clips) → models/detector/.

The same Ray Train machinery as `stages.train` with `clip_forward(..., detection_only=True)` and
the `detector.*` schedule (epochs, lr_drop, max_steps_per_epoch).
"""

from __future__ import annotations

from stages.train import train, train_parser


def main(argv: list[str] | None = None) -> None:
    train(train_parser("python -m stages.train_detector", __doc__, None).parse_args(argv), "detector")


if __name__ == "__main__":
    main()
