"""`motrv3 export --checkpoint CKPT --out model.onnx`: the per-frame graph of a checkpoint (docs/export.md)."""

from __future__ import annotations

from motrv3.checkpoint import load_checkpoint
from motrv3.export import EXPORTERS, OPSET, export_onnx
from pipeline.entry import command_parser, user_errors


def main(argv: list[str] | None = None) -> None:
    parser = command_parser("motrv3 export", __doc__.split(":", 1)[1], params=False, console=False)
    parser.add_argument(
        "--checkpoint", required=True, help="a motrv3 checkpoint (models/<method>/checkpoint.pt)"
    )
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument("--exporter", choices=EXPORTERS, default="torchscript", help="(default: %(default)s)")
    parser.add_argument("--opset", type=int, default=OPSET, help="ONNX opset, ≥ 16 (default: %(default)s)")
    parser.add_argument("--no-verify", action="store_true", help="skip the onnxruntime-vs-torch check")
    args = parser.parse_args(argv)
    with user_errors(FileNotFoundError, ValueError, RuntimeError, ImportError):
        model, config = load_checkpoint(args.checkpoint)
        path = export_onnx(
            model,
            args.out,
            config=config,
            opset=args.opset,
            exporter=args.exporter,
            verify=not args.no_verify,
        )
    print(
        f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB); track with: motrv3 track VIDEO --checkpoint {path}"
    )
