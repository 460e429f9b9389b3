"""Detection models over every frame of a converted split: our detection-only Deformable-DETR and
torchvision detectors, in this process or with Ray Data (one model per worker). The pseudo labels
(PLD's model sources) and the baselines' boxes both come from here."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.images import decode_image
from pipeline.data.reader import DatasetReader, FrameIndex
from pipeline.datasets import classes_of_config
from pipeline.formats.detections import LabelledDetections
from pipeline.runtime import configure_process, resolve_device


@dataclass(frozen=True)
class Source:
    """One entry of `pld.sources`: `name` as written there (the `source` column), its kind and config."""

    name: str
    kind: str
    spec: dict[str, Any]  # the config entry (pseudo_labels.detfile/torchvision.<entry>) or detector settings


# RGB uint8 HWC → boxes, scores, labels (class indices: `dataset.classes` order; 0 for one class)
Predictor = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def check_detector_classes(checkpoint: Path, model, config: dict, classes: dict[int, str] | None) -> None:
    """With several classes a box's label is the detector's class index: the detector must have been
    trained on the same `dataset.classes` (same order), or every label would mean another class."""
    if classes is None or len(classes) < 2:
        return  # one class: every box is label 0 whatever the checkpoint (as before classes existed)
    trained = classes_of_config(config)
    if model.num_classes != len(classes) or list(trained) != list(classes):
        raise ValueError(
            f"{checkpoint}: a detector of {model.num_classes} classes {trained}, but dataset.classes is "
            f"{dict(classes)}; train the detector on these classes (python -m stages.train_detector)"
        )


def detector_predictor(spec: dict[str, Any], kind: str = "detector") -> Predictor:
    """Our detection-only Deformable-DETR (`motrv3.load_checkpoint`, `motrv3.detect`, detect queries
    only); a box's label is the class it scored. `spec['classes']`: the split's, checked against the
    detector's (`check_detector_classes`). `kind`: `detector` or `teacher`, for the error."""
    import torch

    import motrv3

    checkpoint = Path(spec["checkpoint"])
    if not checkpoint.is_file():
        how = "with `teacher` sections in params.yaml" if kind == "teacher" else ""
        raise FileNotFoundError(
            f"{checkpoint}: no {kind} checkpoint; run `python -m stages.train_{kind}` first {how}".rstrip()
        )
    model, config = motrv3.load_checkpoint(checkpoint)
    check_detector_classes(checkpoint, model, config, spec.get("classes"))
    model = motrv3.optimize_for_inference(model.to(resolve_device("auto")))

    def predict(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with torch.inference_mode():
            boxes, scores, labels = motrv3.detect(
                model, image, spec["size"], spec["max_size"], with_labels=True
            )
        return (
            boxes.detach().float().cpu().numpy().reshape(-1, 4),
            scores.detach().float().cpu().numpy().reshape(-1),
            labels.cpu().numpy().astype(np.int64).reshape(-1),
        )

    return predict


def build_torchvision_detector(spec: dict[str, Any], score_threshold: float):
    """`torchvision.models.detection.<arch>` without downloads, weights from `spec['checkpoint']` (weights_only)."""
    import torch
    import torchvision.models.detection as detection

    arch = spec["arch"]
    builder = getattr(detection, arch, None)
    if builder is None or not callable(builder) or arch.startswith("_"):
        raise ValueError(
            f"pseudo_labels.torchvision.arch: {arch!r} is not a torchvision.models.detection builder"
        )
    kwargs: dict[str, Any] = {"weights": None, "weights_backbone": None, "num_classes": spec["num_classes"]}
    if spec.get("min_size"):
        kwargs["min_size"] = spec["min_size"]
    if spec.get("max_size"):
        kwargs["max_size"] = spec["max_size"]
    model = builder(**kwargs)
    checkpoint = Path(spec["checkpoint"])
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint}: pseudo_labels.torchvision checkpoint not found")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    elif isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(
            f"{checkpoint}: does not fit torchvision {arch}(num_classes={spec['num_classes']}): {error}"
        ) from None
    # Keep everything PLD's threshold keeps (the builders' own cut-offs differ: 0.05 / 0.2).
    if hasattr(model, "roi_heads"):
        model.roi_heads.score_thresh = score_threshold
    elif hasattr(model, "score_thresh"):
        model.score_thresh = score_threshold
    return model.eval()


def torchvision_predictor(spec: dict[str, Any], score_threshold: float) -> Predictor:
    import torch

    device = resolve_device("auto")
    model = build_torchvision_detector(spec, score_threshold).to(device)
    person = spec["person_class"]

    def predict(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        tensor = torch.from_numpy(image).to(device).permute(2, 0, 1).float().div_(255.0)
        with torch.inference_mode():
            out = model([tensor])[0]
        keep = out["labels"] == person
        scores = out["scores"][keep].float().cpu().numpy()
        # The person class only: label 0, the first of dataset.classes (docs/pseudo_labels.md).
        return (
            out["boxes"][keep].float().cpu().numpy().reshape(-1, 4),
            scores,
            np.zeros(len(scores), np.int64),
        )

    return predict


def make_predictor(source: Source, score_threshold: float) -> Predictor:
    if source.kind in ("detector", "teacher"):
        return detector_predictor(source.spec, source.kind)
    if source.kind == "torchvision":
        return torchvision_predictor(source.spec, score_threshold)
    raise ValueError(f"source {source.name!r} runs no model")


class _RayPredict:
    """Ray Data `map_batches` callable: one model per worker, frames read from the Parquet dataset."""

    def __init__(self, source: Source, score_threshold: float, dataset_dir: str, torch_threads: int):
        configure_process(torch_threads)
        self.predict = make_predictor(source, score_threshold)
        self.reader = DatasetReader(dataset_dir)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        rows = _predict_rows(self.predict, self.reader, list(batch["sequence"]), list(batch["position"]))
        return {key: [row[key] for row in rows] for key in ("sequence", "frame", "boxes", "scores", "labels")}


def _predict_rows(
    predict: Predictor, reader: DatasetReader, sequences: list[str], positions: list[int]
) -> list[dict]:
    rows = []
    for sequence, position in zip(sequences, positions, strict=True):
        frame = reader.frames(str(sequence), [int(position)])[0]
        boxes, scores, labels = predict(decode_image(frame.image))
        rows.append(
            {
                "sequence": frame.sequence,
                "frame": frame.frame,
                "boxes": boxes.reshape(-1).tolist(),
                "scores": scores.tolist(),
                "labels": labels.tolist(),
            }
        )
    return rows


def run_model(
    source: Source,
    dataset_dir: Path,
    index: FrameIndex,
    score_threshold: float,
    workers: int,
    batch_size: int,
    ray_address: str | None = None,
    progress: bool = True,
) -> LabelledDetections:
    """Run a model source over every frame: Ray Data with `workers` > 1, else in this process."""
    from tqdm import tqdm

    work = [
        (sequence, position) for sequence, frames in index.frames.items() for position in range(len(frames))
    ]
    result: LabelledDetections = {}
    bar = tqdm(total=len(work), desc=f"pseudo labels {source.name}", unit="frame", disable=not progress)

    def collect(rows: list[dict]) -> None:
        for row in rows:
            boxes = np.asarray(row["boxes"], dtype=np.float32).reshape(-1, 4)
            result[(str(row["sequence"]), int(row["frame"]))] = (
                boxes,
                np.asarray(row["scores"], dtype=np.float32),
                np.asarray(row["labels"], dtype=np.int64),
            )
        bar.update(len(rows))

    try:
        if workers <= 1:
            predict = make_predictor(source, score_threshold)
            reader = DatasetReader(dataset_dir)
            for sequence, position in work:
                collect(_predict_rows(predict, reader, [sequence], [position]))
        else:
            _run_ray(source, dataset_dir, work, score_threshold, workers, batch_size, ray_address, collect)
    finally:
        bar.close()
    return result


def _run_ray(source, dataset_dir, work, score_threshold, workers, batch_size, ray_address, collect) -> None:
    import ray
    import torch

    from pipeline.ray_utils import init_ray

    started = False

    if not ray.is_initialized():
        init_ray(ray_address)
        started = True
    try:
        import ray.data

        ray.data.DataContext.get_current().enable_progress_bars = False  # ours counts frames
        gpus = torch.cuda.device_count()
        items = [{"sequence": s, "position": p} for s, p in work]
        dataset = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), workers * 4)))
        mapped = dataset.map_batches(
            _RayPredict,
            fn_constructor_kwargs={
                "source": source,
                "score_threshold": score_threshold,
                "dataset_dir": str(Path(dataset_dir).resolve()),
                "torch_threads": 1 if gpus == 0 else 2,
            },
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_gpus=1 if gpus else 0,
            num_cpus=1,
            batch_format="numpy",
        )
        for batch in mapped.iter_batches(batch_format="pandas", batch_size=None):
            collect(batch.to_dict("records"))
    finally:
        if started:
            ray.shutdown()


def default_workers() -> int:
    """One worker per GPU; on CPU one per core (each with one torch thread)."""
    import torch

    return torch.cuda.device_count() or (os.cpu_count() or 1)
