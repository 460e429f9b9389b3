"""`motrv3 import --layout motr|motrv2|deformable SRC --out CKPT`: an official checkpoint as ours.

Reads a checkpoint of the official Deformable-DETR, MOTR or MOTRv2 code (`model`, `optimizer`,
`lr_scheduler`, `epoch`, `args`; a bare state dict works too) with a weights-only load, builds our
model with the architecture the file fixes (its `args` and tensor shapes) and everything else from
the params (`--params`, `--set`, which win over the file), maps the weights
(`motrv3.import_state_dict`) and writes a motrv3 checkpoint: the effective config plus `imported`
(source, layout, args, load report). `motrv3 track`, `motrv3 export`, the track stage
(`--checkpoint`, `track.checkpoint`) and `train.init_checkpoint` take it like a trained one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipeline.entry import add_params_arguments, command_parser, user_errors
from pipeline.params import DEFAULT_PARAMS_FILE, ParamsError, load_params, resolve


def main(argv: list[str] | None = None) -> None:
    parser = command_parser("motrv3 import", __doc__, params=False, console=False)
    parser.add_argument("source", type=Path, help="the official checkpoint (.pth)")
    parser.add_argument(
        "--layout",
        required=True,
        choices=("motr", "motrv2", "deformable"),
        help="the code that wrote it: MOTR, MOTRv2, or Deformable-DETR (a detector: starts a training)",
    )
    parser.add_argument("--out", required=True, type=Path, help="the motrv3 checkpoint to write")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail when a tensor of our model is not in the file or does not fit (kept at random init)",
    )
    add_params_arguments(parser)
    args = parser.parse_args(argv)

    from motrv3.official import (
        LAYOUT_NAMES,
        detect_layout,
        import_checkpoint,
        official_model_fields,
        read_official,
    )

    layout = LAYOUT_NAMES[args.layout]
    with user_errors(FileNotFoundError, ValueError, ParamsError):
        state, file_args, _ = read_official(args.source)
        if detect_layout(state) != layout:  # a wrong --layout maps little: the report would show it
            print(f"warning: the keys of {args.source} look like {detect_layout(state)}'s", file=sys.stderr)
        fields = official_model_fields(state, file_args, layout, args.source)
        # The file's architecture over params.yaml and its profile; the user's --set over both.
        overrides = [f"model.{key}={json.dumps(value)}" for key, value in fields.items()] + args.overrides
        if args.params == str(DEFAULT_PARAMS_FILE) and not Path(args.params).is_file():
            params = resolve({}, overrides)  # outside a checkout: the schema's (the paper's) values
        else:
            params = load_params(args.params, overrides)
        config = params.as_dict()
        path, report, _ = import_checkpoint(
            args.source, layout, args.out, config, seed=params.seed, strict=args.strict
        )
    model, data, tracking = params.model, params.data, params.tracking
    print(
        f"{path}: {args.layout} weights of {args.source} in a {model.backbone} model, d_model {model.d_model}, "
        f"{model.enc_layers}+{model.dec_layers} layers, {model.num_queries} queries\n"
        f"load report: {report}\n"
        f"tracking at test size {data.eval_size}/{data.eval_max_size}, new/keep track score "
        f"{tracking.new_track_score}/{tracking.keep_track_score} (profile {params.profile}; "
        "--set profile=paper for the paper's 800/1536 and 0.5)"
    )
    if report.missing or report.reinitialised:
        print(
            f"warning: {len(report.missing) + len(report.reinitialised)} tensors of the model are not in "
            "the file or do not fit it and keep a random initialisation: a starting point for "
            "training (train.init_checkpoint), not a tracker yet",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
