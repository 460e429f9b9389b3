"""What 6 decoder layers cost against the cpu profile's 3, for MOTR and for MOTRv3 (one rank's step).

The paper's decoder has 6 layers, so RFS's 𝔖_a governs 5 of 6 of them; the cpu profile's has 3
(RFS in 2 of 3). Issue #24 asks what the paper's depth would cost here. One DDP rank of the cpu
profile (1 torch thread, one 5-frame clip per step, random weights: a step costs the same from any
weights), forward + backward + optimizer. MOTRv3 is RFS + PLD (the ground truth as its pseudo
labels, so that Eq. 3's matching and loss run) + TGD. The four cases run round-robin, one step each
in turn, so the shared VM's drift falls on all of them alike; ratios are of medians of one run.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.harness import record, synthetic_dataset
from pipeline.paths import REPO_ROOT

DEPTHS = (3, 6)
METHODS = ("motr", "motrv3")


def _case(method: str, layers: int, clips: Path, pseudo: Path):
    """(one training step as a function, its parameter count) for one method and decoder depth."""
    import motrv3
    from pipeline.params import load_params
    from pipeline.steps.train.distributed import to_device
    from pipeline.steps.train.methods import method_params
    from pipeline.steps.train.optim import build_optimizer
    from pipeline.steps.train.worker import open_dataset

    overrides = ["data.clip_length=5", "train.clip_lengths=[]", f"model.dec_layers={layers}",
                 "pld.sources=[gt]", "pld.threshold=0.05"]  # fmt: skip
    params = method_params(load_params(REPO_ROOT / "params.yaml", overrides), method)
    torch.manual_seed(0)
    components = motrv3.build(params.library_config())  # the one build path, as the worker
    model, criterion = components.model, components.criterion
    optimizer, _ = build_optimizer(
        model,
        params.train.lr,
        params.train.lr_backbone,
        params.train.weight_decay,
        params.train.lr_drop,
        params.train.lr_linear_proj_mult,
    )
    dataset = open_dataset(params, str(clips), str(pseudo) if params.pld.enabled else None)
    dataset.set_epoch(0)
    model.train()
    counter = {"step": 0}

    def step() -> float:
        clip = to_device(dataset[counter["step"] % len(dataset)], torch.device("cpu"))
        counter["step"] += 1
        start = time.perf_counter()
        result = motrv3.clip_forward(model, criterion, clip, params.tracking.to_config())
        optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), params.train.clip_max_norm)
        optimizer.step()
        return time.perf_counter() - start

    return step, sum(p.numel() for p in model.parameters())


def run(args) -> dict:
    from pipeline.params import load_params
    from pipeline.steps.pseudo_labels.driver import run as pseudo_labels

    quick = getattr(args, "quick", False)
    warmup, steps = (1, 2) if quick else (2, 10)
    torch.set_num_threads(1)  # one DDP rank of the cpu profile
    with tempfile.TemporaryDirectory(prefix="bench-depth-") as name:
        tmp = Path(name)
        raw, clips = synthetic_dataset(tmp, {"train": 2}, frames=40)
        label_params = load_params(
            REPO_ROOT / "params.yaml",
            [
                f"dataset.root={raw}",
                "pseudo_labels.sources=[gt]",
                "pld.sources=[gt]",
                "pseudo_labels.workers=1",
            ],
        )
        pseudo_labels(label_params, clips_dir=clips, out_root=tmp / "pseudo", summary_path=None,
                      plot_path=None, progress=False)  # fmt: skip
        cases = {f"{m}_{d}_layers": _case(m, d, clips, tmp / "pseudo") for m in METHODS for d in DEPTHS}
        seconds: dict[str, list[float]] = {key: [] for key in cases}
        for round_ in range(warmup + steps):
            for key, (step, _) in cases.items():
                elapsed = step()
                if round_ >= warmup:
                    seconds[key].append(elapsed)
    medians = {key: statistics.median(values) for key, values in seconds.items()}
    results = {
        key: {"median_s": medians[key], "steps": len(seconds[key]), "parameters": cases[key][1]}
        for key in cases
    }
    summary = {f"{m}_6_vs_3_layers": medians[f"{m}_6_layers"] / medians[f"{m}_3_layers"] for m in METHODS} | {
        f"motrv3_vs_motr_{d}_layers": medians[f"motrv3_{d}_layers"] / medians[f"motr_{d}_layers"]
        for d in DEPTHS
    }
    return record("decoder_depth", __doc__.splitlines()[0], results, summary=summary)
