"""Loader throughput at DanceTrack's resolution: frames/s decoded + augmented per loader worker count.

1920×1080 synthetic sequences as JPEGs in the Parquet layout, the paper's augmentation (§4.2 /
MOTR: shorter side to one of 608..800, longer side ≤ 1536, random crop, flip; `DataParams()`
defaults, 5-frame clips, interval 1..10), read as training reads them (`clip_stream`: the clips of
consecutive steps, one clip per step) with `train.loader_workers` = 0 (in this process), 1 and 2.
Two image sets: `smooth` (the generator's output, smaller files than camera frames) and `grain`
(the same frames with Gaussian grain, σ = 3, re-encoded at the same quality: more entropy-coded
bytes per frame, the conservative case; JPEG decoding time grows with those bytes).
Per case: `frames_per_s` over the whole read (worker start-up included) and `steady_frames_per_s`
after the first clip; `decode_only`: decoding alone from bytes in memory, one thread;
`transfer/workers_{0,1}`: a float32 clip of the largest training size (5×3×800×1422, 65 MiB)
made and handed over with no decoding, in this process or from one loader process (the cost of
passing a clip through shared memory).
Rounds interleave the cases (other processes' load hits all alike); medians over the rounds.
The needed rate follows from a GPU step time (`GPU_STEP_S`, an assumption until
`benchmarks/results/gpu_check.json` holds a measured bf16 training step).
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness import RESULTS_DIR, load_average, peak_rss_mib, record
from pipeline.paths import REPO_ROOT

WIDTH, HEIGHT = 1920, 1080
WORKERS = (0, 1, 2)
GRAIN_SIGMA = 3.0
# MOTR-family training at 800×1440: ~1 s per 5-frame clip per GPU (one clip per GPU per step).
GPU_STEP_S = 1.0
PAPER = {"gpus": 8, "batch_clips": 8, "clip_frames": 5, "epochs": 5, "train_sequences": 40, "frames": 41796}


def build(tmp: Path, sequences: int, frames: int) -> dict[str, Path]:
    """The synthetic 1920×1080 train split, as generated and with grain, converted to Parquet."""
    from pipeline.data.synthetic import generate
    from pipeline.params import load_params
    from pipeline.steps.convert import run as convert

    def params(root: Path):
        return load_params(
            REPO_ROOT / "params.yaml",
            [
                f"synthetic.sequences={{train: {sequences}, val: 0, test: 0}}",
                f"synthetic.frames={frames}",
                f"synthetic.width={WIDTH}",
                f"synthetic.height={HEIGHT}",
                f"dataset.root={root}",
                "dataset.test_split=null",
                "dataset.eval_split=train",
            ],
        )

    import cv2

    smooth = params(tmp / "raw")
    generate(smooth.synthetic, tmp / "raw", progress=False)
    shutil.copytree(tmp / "raw", tmp / "raw_grain")
    rng = np.random.default_rng(0)
    for path in sorted((tmp / "raw_grain").glob("train/*/img1/*.jpg")):
        image = cv2.imread(str(path)).astype(np.float32)
        image += rng.normal(0.0, GRAIN_SIGMA, image.shape).astype(np.float32)
        ok, data = cv2.imencode(
            ".jpg",
            np.clip(image, 0, 255).astype(np.uint8),
            [cv2.IMWRITE_JPEG_QUALITY, smooth.synthetic.jpeg_quality],
        )
        path.write_bytes(data.tobytes())
    convert(smooth, tmp / "clips", progress=False)
    convert(params(tmp / "raw_grain"), tmp / "clips_grain", progress=False)
    return {"smooth": tmp / "clips" / "train", "grain": tmp / "clips_grain" / "train"}


def measured_gpu_step() -> tuple[float, str]:
    """The GPU step time: gpu_check's bf16 5-frame training step when it has run, else `GPU_STEP_S`."""
    path = RESULTS_DIR / "gpu_check.json"
    try:
        rows = json.loads(path.read_text()).get("sections", {}).get("training", {})
        times = [row["median_s"] for name, row in rows.items() if "bf16" in name and "median_s" in row]
        if times:
            return min(times), f"{path.relative_to(REPO_ROOT)} (bf16 5-frame step, batch 1 clip)"
    except (OSError, ValueError, AttributeError):
        pass
    return GPU_STEP_S, "assumption (MOTR-family ~1 s per 5-frame clip per GPU at 800×1440): make gpu-check"


class _BlankClips(torch.utils.data.Dataset):
    """Clips of the largest training size, no decoding: what handing a clip over costs."""

    def __init__(self, count: int):
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        return {"images": torch.full((5, 3, 800, 1422), float(index))}


def _blank(clip):
    return clip


def run(args) -> dict:
    import cv2

    from pipeline.data.images import decode_image
    from pipeline.data.loader import ClipDataset, clip_stream
    from pipeline.params import DataParams

    quick = getattr(args, "quick", False)
    clips_per_read = 3 if quick else 12
    repeats = 1 if quick else 3
    data = DataParams()  # the paper's augmentation
    with tempfile.TemporaryDirectory(prefix="bench-loader-") as name:
        started = time.perf_counter()
        roots = build(Path(name), sequences=1 if quick else 2, frames=20 if quick else 30)
        build_s = time.perf_counter() - started
        datasets = {key: ClipDataset(root, data, seed=0) for key, root in roots.items()}
        frames_per_clip = data.clip_length
        blobs = {}
        for key, dataset in datasets.items():
            indices = dataset.shard(0, 1)[:clips_per_read]
            blobs[key] = [
                bytes(f.image)
                for i in indices
                for f in dataset.reader.frames(dataset.specs[i].sequence, dataset.specs[i].positions)
            ]

        def read(key: str, workers: int) -> tuple[float, float, set]:
            dataset = datasets[key]
            indices = dataset.shard(0, 1)
            start = time.perf_counter()
            first, shapes = None, set()
            for clip in clip_stream(dataset, indices, 1, 0, clips_per_read, workers=workers, prefetch=2):
                if first is None:
                    first = time.perf_counter() - start
                shapes.add(tuple(clip["images"].shape[2:]))
                del clip
            return time.perf_counter() - start, first, shapes

        def decode_only(key: str) -> float:
            threads = cv2.getNumThreads()
            cv2.setNumThreads(1)
            start = time.perf_counter()
            for blob in blobs[key]:
                decode_image(blob)
            cv2.setNumThreads(threads)
            return time.perf_counter() - start

        def transfer(workers: int) -> float:
            loader = torch.utils.data.DataLoader(
                _BlankClips(clips_per_read), batch_size=None, num_workers=workers, collate_fn=_blank
            )
            start = time.perf_counter()
            for clip in loader:
                del clip
            return time.perf_counter() - start

        cases_order = [(key, w) for key in datasets for w in WORKERS]
        rounds: dict[str, list] = {f"{key}/workers_{w}": [] for key, w in cases_order}
        rounds.update({f"{key}/decode_only": [] for key in datasets})
        rounds.update({f"transfer/workers_{w}": [] for w in (0, 1)})
        sizes = set()
        for round_index in range(repeats + (0 if quick else 1)):  # the first full round warms up
            for key, workers in cases_order:
                total, first, shapes = read(key, workers)
                sizes |= shapes
                if quick or round_index > 0:
                    rounds[f"{key}/workers_{workers}"].append((total, first))
            for key in datasets:
                elapsed = decode_only(key)
                if quick or round_index > 0:
                    rounds[f"{key}/decode_only"].append((elapsed, elapsed))
            for workers in (0, 1):
                elapsed = transfer(workers)
                if quick or round_index > 0:
                    rounds[f"transfer/workers_{workers}"].append((elapsed, elapsed))
    frames = clips_per_read * frames_per_clip
    cases = {}
    for case, values in rounds.items():
        totals, firsts = [v[0] for v in values], [v[1] for v in values]
        steady = [(frames - frames_per_clip) / (t - f) for t, f in values if t > f] or [0.0]
        cases[case] = {
            "repeats": len(values),
            "median_s": statistics.median(totals),
            "min_s": min(totals),
            "max_s": max(totals),
            "times_s": totals,
            "first_clip_s": statistics.median(firsts),
            "frames": frames,
            "frames_per_s": frames / statistics.median(totals),
            "steady_frames_per_s": statistics.median(steady)
            if any(t > f for t, f in values)  # a stream (the others time one block: first = total)
            else frames / statistics.median(totals),
        }
    step_s, step_source = measured_gpu_step()
    need_per_gpu = PAPER["batch_clips"] // PAPER["gpus"] * PAPER["clip_frames"] / step_s
    one_worker = {key: cases[f"{key}/workers_1"]["steady_frames_per_s"] for key in datasets}
    bytes_per_frame = {key: round(statistics.mean(len(b) for b in blobs[key])) for key in blobs}
    clips_per_epoch = PAPER["frames"] - PAPER["train_sequences"] * (PAPER["clip_frames"] - 1)
    summary = {
        "image_size": [WIDTH, HEIGHT],
        "output_sizes": sorted(list(s) for s in sizes),
        "frames_per_clip": frames_per_clip,
        "clips_per_read": clips_per_read,
        "jpeg_bytes_per_frame": bytes_per_frame,
        **{f"{case}_frames_per_s": round(c["steady_frames_per_s"], 1) for case, c in cases.items()},
        "transfer_ms_per_clip": {
            f"workers_{w}": round(1000 * cases[f"transfer/workers_{w}"]["median_s"] / clips_per_read, 1)
            for w in (0, 1)
        },
        "frames_per_s_per_loader_worker": {k: round(v, 1) for k, v in one_worker.items()},
        "gpu_step_s": step_s,
        "gpu_step_source": step_source,
        "needed_frames_per_s_per_gpu": round(need_per_gpu, 2),
        "loader_workers_per_gpu_needed": {
            key: max(1, math.ceil(need_per_gpu / v)) if v > 0 else None for key, v in one_worker.items()
        },
        "paper_budget": {
            **PAPER,
            "steps": PAPER["epochs"] * clips_per_epoch // PAPER["batch_clips"],
            "frames_decoded": PAPER["epochs"] * clips_per_epoch * PAPER["clip_frames"],
        },
        "build_s": round(build_s, 1),
        "load_average": load_average(),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }
    return record("loader", __doc__.strip().splitlines()[0], cases, summary=summary)
