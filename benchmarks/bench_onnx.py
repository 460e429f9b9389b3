"""onnxruntime vs PyTorch per frame: the exported graph against the optimised inference copy.

The paper-size network (`ModelConfig` defaults: ResNet-50, 6+6 layers, 4 levels, box refinement,
d_model 256) with random weights and bench_model's 10 anchor queries, no track queries (a
video's first frame; both sides then run the same work). `pytorch`: `motrv3.optimize_for_inference`
copy, `forward_frame` (deformable attention: the default `auto` implementation, the C++ kernel
where it builds). `onnxruntime`: the file `motrv3.export_onnx` writes (deformable attention as
GridSample), CPU execution provider, graph optimisations on. Both at the same thread count
(--threads, default 2), timed in alternation so they share the machine's load; `speedup` is
pytorch / onnxruntime from the medians of this run. Export time and the largest output
difference on the first timed frame are recorded too.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.harness import load_average, peak_rss_mib, record

SIZES = [(320, 576), (800, 1440)]
QUERIES = 10  # bench_model's REFERENCE_QUERIES (MOTRv2's public measurement setting)
REPEATS = {(320, 576): 5, (800, 1440): 3}
QUICK_REPEATS = 2


def _inputs(height: int, width: int, d_model: int):
    import torch

    from motrv3.export import INPUT_NAMES

    image = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(1))
    empty = {
        "kept_content": torch.zeros(0, d_model),
        "kept_boxes": torch.zeros(0, 4),
        "kept_hidden": torch.zeros(0, d_model),
        "kept_pred_boxes": torch.zeros(0, 4),
        "kept_update": torch.zeros(0, dtype=torch.bool),
    }
    feeds = {"image": image.numpy(), **{k: v.numpy() for k, v in empty.items()}}
    assert tuple(feeds) == INPUT_NAMES
    return image, feeds


def run(args) -> dict:
    import onnxruntime
    import torch

    import motrv3
    from motrv3.config import ModelConfig

    threads = torch.get_num_threads()
    try:  # the pipeline's allocator setting, as its entry points use it (bench_model)
        from pipeline.runtime import retain_freed_memory

        retain_freed_memory()
    except ImportError:
        pass
    torch.manual_seed(0)
    model = motrv3.build_model(ModelConfig(num_queries=QUERIES)).eval()
    optimized = motrv3.optimize_for_inference(model)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "motrv3.onnx"
        start = time.perf_counter()
        motrv3.export_onnx(model, path)
        export_s = time.perf_counter() - start
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        size_mib = path.stat().st_size / 2**20

    cases, summary = {}, {}
    for height, width in SIZES:
        image, feeds = _inputs(height, width, model.d_model)
        repeats = QUICK_REPEATS if args.quick else REPEATS[(height, width)]
        times = {"pytorch": [], "onnxruntime": []}
        with torch.inference_mode():
            # First calls: oneDNN primitives, ORT's memory plan for this size.
            begin = time.perf_counter()
            expected = optimized.forward_frame(image)
            warm = {"pytorch": time.perf_counter() - begin}
            begin = time.perf_counter()
            got = session.run(["logits", "boxes"], feeds)
            warm["onnxruntime"] = time.perf_counter() - begin
            for _ in range(repeats):
                begin = time.perf_counter()
                optimized.forward_frame(image)
                times["pytorch"].append(time.perf_counter() - begin)
                begin = time.perf_counter()
                session.run(["logits", "boxes"], feeds)
                times["onnxruntime"].append(time.perf_counter() - begin)
        name = f"{height}x{width}"
        medians = {k: statistics.median(v) for k, v in times.items()}
        cases[name] = {
            "size": [height, width],
            "repeats": repeats,
            "variants": {
                k: {"times_s": v, "median_s": medians[k], "min_s": min(v), "warmup_s": warm[k]}
                for k, v in times.items()
            },
            "speedup_onnxruntime_over_pytorch": medians["pytorch"] / medians["onnxruntime"],
            "max_abs_difference": {
                "logits": float(abs(expected.logits[-1].numpy() - got[0]).max()),
                "boxes": float(abs(expected.boxes[-1].numpy() - got[1]).max()),
            },
            "load_average": load_average(),
        }
        summary[name] = {
            "pytorch_s": round(medians["pytorch"], 3),
            "onnxruntime_s": round(medians["onnxruntime"], 3),
            "speedup": round(cases[name]["speedup_onnxruntime_over_pytorch"], 3),
        }
    return record(
        "onnx",
        __doc__.splitlines()[0],
        cases,
        summary=summary,
        export_s=export_s,
        onnx_file_mib=size_mib,
        onnxruntime=onnxruntime.__version__,
        num_queries=QUERIES,
        peak_rss_mib=peak_rss_mib(),
    )
