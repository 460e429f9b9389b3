"""`python -m benchmarks [NAME ...] [--threads N]`: run benchmarks and write their JSON results."""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
from pathlib import Path

import torch


def available() -> list[str]:
    here = Path(__file__).resolve().parent
    return sorted(
        m.name[len("bench_") :] for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_")
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {available()})")
    parser.add_argument(
        "--threads", type=int, default=2, help="torch intra-op threads (default: %(default)s)"
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller inputs (smoke run)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for name in args.names or available():
        module = importlib.import_module(f"benchmarks.bench_{name}")
        result = module.run(args)
        print(json.dumps({"benchmark": name, "summary": result.get("summary", {})}, indent=2))


if __name__ == "__main__":
    main()
