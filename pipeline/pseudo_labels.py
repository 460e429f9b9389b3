"""Offline pseudo labels for pseudo label distillation (PLD, MOTRv3 §3.3, appendix C, Table 4).

Every source yields, for every frame of a converted split, boxes (x1, y1, x2, y2 pixels of the
original image) and confidences; boxes below `pld.threshold` (0.05, §4.2) are dropped. Sources
(`pseudo_labels.sources` ∪ `pld.sources`, each a `kind` or `kind:name`):

- `detector`: our Deformable-DETR trained detection-only by `stages.train_detector`;
- `detfile:<name>`: detections produced elsewhere (YOLOX, Sparse R-CNN, MOT17's DPM/FRCNN/SDP):
  a MOTRv2-style JSON db, MOTChallenge `det/det.txt` files, or the public detections already in
  the converted dataset; validated against the dataset (unknown sequence/frame: `DataError`);
- `torchvision:<name>`: a torchvision detection architecture with weights from a local file;
- `gt`: the ground truth itself, confidence 1 (Table 4, last row).

Each source keeps its own rows (column `source`), so the trainer can combine them in parallel
(one label set per source, Table 4 row 3) or concatenated (`pld.combine`). Model sources run
over frames with Ray Data `map_batches` (one model per worker), or in-process with one worker.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.errors import DataError
from pipeline.data.motchallenge import MOT17_COPY
from pipeline.data.parquet_io import (
    PSEUDO_LABEL_SCHEMA,
    DatasetReader,
    read_manifest,
    sha256_file,
    write_pseudo_labels,
)
from pipeline.paths import (
    CLIPS_DIR,
    METRICS_DIR,
    PSEUDO_LABELS_DIR,
    atomic_path,
    write_text_atomic,
)

SOURCE_KINDS = ("detector", "detfile", "torchvision", "gt")
LABELS_FILE = "pseudo_labels.parquet"
MANIFEST = "manifest.json"
SUMMARY_PATH = METRICS_DIR / "pseudo_labels.json"
PLOT_PATH = METRICS_DIR / "pseudo_labels_scores.png"  # not reports/: that is the tables stage's output

# (sequence, frame) → (boxes [K, 4] float32 xyxy pixels, scores [K] float32)
Detections = dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]
Predictor = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # RGB uint8 HWC → boxes, scores


@dataclass(frozen=True)
class Source:
    """One entry of `pld.sources`: `name` as written there (the `source` column), its kind and config."""

    name: str
    kind: str
    spec: dict[str, Any]  # the config entry (pseudo_labels.detfile/torchvision.<entry>) or detector settings


def parse_sources(names: list[str], pl_params) -> list[Source]:
    """`pld.sources` → `Source`s; a bare `detfile`/`torchvision` needs exactly one configured entry."""
    if not names:
        raise ValueError(
            "pseudo_labels.sources + pld.sources: empty; name at least one of detector, detfile:<name>, torchvision:<name>, gt"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"sources {names} name a source twice")
    sources = []
    for name in names:
        kind, _, entry = name.partition(":")
        if kind not in SOURCE_KINDS:
            raise ValueError(f"source {name!r}: unknown kind {kind!r}; expected one of {SOURCE_KINDS}")
        if kind in ("detector", "gt"):
            if entry:
                raise ValueError(f"source {name!r}: {kind} takes no ':<name>'")
            spec = {"checkpoint": pl_params.detector_checkpoint} if kind == "detector" else {}
        else:
            table = getattr(pl_params, kind)
            if kind == "detfile" and not entry and not table:
                # Bare `detfile` with nothing configured: the public detections stored by the converter.
                sources.append(Source(name, kind, {"path": None, "format": "dataset", "det_source": None}))
                continue
            if not entry:
                if len(table) != 1:
                    raise ValueError(
                        f"source {name!r}: write {kind}:<name> with <name> one of pseudo_labels.{kind} "
                        f"({sorted(table) or 'none configured'})"
                    )
                entry = next(iter(table))
            if entry not in table:
                raise ValueError(
                    f"source {name!r}: no pseudo_labels.{kind}.{entry} in params (configured: {sorted(table) or 'none'})"
                )
            spec = table[entry].model_dump()
        sources.append(Source(name, kind, spec))
    return sources


def generated_sources(params) -> list[str]:
    """What the stage writes: `pseudo_labels.sources`, then any `pld.sources` entry not among them."""
    names = list(params.pseudo_labels.sources)
    if params.pld.enabled:
        names += [name for name in params.pld.sources if name not in names]
    return names


# --- the converted dataset as seen by the sources -----------------------------------------------------------


@dataclass
class FrameIndex:
    """Which frames the converted split holds: what every source is checked against."""

    dataset_dir: Path
    frames: dict[str, np.ndarray]  # sequence → frame numbers (stored order)
    static: dict[str, bool]
    sizes: dict[str, tuple[int, int]]  # sequence → (width, height); static sequences vary per frame
    image_stems: dict[str, tuple[str, int]]  # static sequences: image file stem → (sequence, frame)

    @classmethod
    def load(cls, dataset_dir: str | Path) -> FrameIndex:
        import pyarrow.parquet as pq

        dataset_dir = Path(dataset_dir)
        manifest = read_manifest(dataset_dir)
        frames, static, sizes, stems = {}, {}, {}, {}
        for name, entry in manifest["sequences"].items():
            columns = ["frame", "file_name"] if entry.get("static") else ["frame"]
            table = pq.read_table(dataset_dir / entry["file"], columns=columns)
            frames[name] = table.column("frame").to_numpy().astype(np.int64)
            static[name] = bool(entry.get("static"))
            sizes[name] = (int(entry.get("width") or 0), int(entry.get("height") or 0))
            if static[name]:
                for frame, file_name in zip(frames[name], table.column("file_name").to_pylist(), strict=True):
                    stems[Path(file_name).stem] = (name, int(frame))
        return cls(dataset_dir, frames, static, sizes, stems)

    def total_frames(self) -> int:
        return sum(len(f) for f in self.frames.values())

    def check(self, sequence: str, frame: int, file: str | Path, line: int | None, field: str) -> None:
        if sequence not in self.frames:
            raise DataError(
                file,
                line,
                field,
                f"sequence {sequence!r} is not in the converted dataset {self.dataset_dir} "
                f"(has {sorted(self.frames)[:8]}{' …' if len(self.frames) > 8 else ''})",
                kind="unknown_sequence",
            )
        if frame not in self._frame_sets()[sequence]:
            known = self.frames[sequence]
            raise DataError(
                file,
                line,
                field,
                f"frame {frame} of sequence {sequence!r} is not in the converted dataset {self.dataset_dir} "
                f"(frames {known.min()}..{known.max()})",
                kind="unknown_frame",
            )

    def _frame_sets(self) -> dict[str, set[int]]:
        if not hasattr(self, "_sets"):
            self._sets = {name: set(map(int, f)) for name, f in self.frames.items()}
        return self._sets


def _xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1).astype(np.float32)


def _append(result: dict, key: tuple[str, int], box_xyxy, score: float) -> None:
    result.setdefault(key, ([], []))
    result[key][0].append(box_xyxy)
    result[key][1].append(score)


def _finish(lists: dict) -> Detections:
    return {
        key: (np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(scores, dtype=np.float32))
        for key, (boxes, scores) in lists.items()
    }


def _parse_floats(text: str, count: int, file, line, field: str) -> list[float]:
    parts = [p for p in text.strip().split(",")]
    if len(parts) < count:
        raise DataError(
            file,
            line,
            field,
            f"expected at least {count} comma-separated numbers, got {text.strip()!r}",
            kind="malformed_row",
        )
    values = []
    for part in parts[:count]:
        try:
            value = float(part)
        except ValueError:
            raise DataError(
                file, line, field, f"not a number: {part.strip()!r} in {text.strip()!r}", kind="malformed_row"
            ) from None
        if not np.isfinite(value):
            raise DataError(file, line, field, f"not finite: {part.strip()!r}", kind="malformed_row")
        values.append(value)
    return values


def _check_wh(w: float, h: float, file, line, field: str) -> None:
    if w <= 0 or h <= 0:
        raise DataError(file, line, field, f"box width/height {w:g}x{h:g} is not positive", kind="bad_box")


# --- offline sources ---------------------------------------------------------------------------------------


def gt_source(reader: DatasetReader) -> Detections:
    """The ground truth as pseudo labels with confidence 1 (Table 4, 'Ground Truth'); ignored rows left out."""
    result: Detections = {}
    for sequence in reader.sequences:
        for frame in reader.iter_sequence(sequence):
            boxes = _xywh_to_xyxy(frame.boxes[~frame.ignore])
            result[(sequence, frame.frame)] = (boxes, np.ones(len(boxes), dtype=np.float32))
    return result


def read_json_db(
    path: str | Path, index: FrameIndex, key_prefix: str | None = None, det_source: str | None = None
) -> tuple[Detections, int]:
    """A MOTRv2-style detection db: `{"<dataset>/<split>/<seq>/img1/<frame>.txt": ["x,y,w,h,score\\n", ...]}`.

    Keys name a sequence folder and a zero-padded frame (`DanceTrack/train/dancetrack0001/img1/00000001.txt`);
    CrowdHuman keys (`crowdhuman/train_image/<ID>.txt`) match a static sequence's image by its ID.
    With `key_prefix`, keys outside it (other splits) are skipped and counted, as are MOT17 copies of
    another detector than `det_source`. Returns (detections,
    skipped key count); an unknown sequence/frame or a malformed entry is a `DataError` naming the key.
    """
    path = Path(path)
    try:
        db = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(
            path, error.lineno, "json", f"not valid JSON: {error.msg}", kind="malformed_row"
        ) from None
    if not isinstance(db, dict):
        raise DataError(
            path,
            None,
            "json",
            f"expected an object of key → list of 'x,y,w,h,score' strings, got {type(db).__name__}",
            kind="malformed_row",
        )
    lists: dict = {}
    skipped = 0
    for key in sorted(db):
        if key_prefix is not None and not key.startswith(key_prefix):
            skipped += 1
            continue
        field = f"key {key!r}"
        parts = key.replace("\\", "/").split("/")
        stem = parts[-1].rsplit(".", 1)[0]
        if stem in index.image_stems:
            sequence, frame = index.image_stems[stem]
        else:
            if len(parts) < 3 or not stem.isdigit():
                raise DataError(
                    path,
                    None,
                    field,
                    "expected '<...>/<sequence>/<image folder>/<frame number>.txt'",
                    kind="malformed_row",
                )
            sequence, frame = parts[-3], int(stem)
            # MOT17 keys name a detector copy (MOT17-02-SDP); the converted sequence is MOT17-02.
            match = MOT17_COPY.match(sequence)
            if sequence not in index.frames and match and match["base"] in index.frames:
                if det_source is None:
                    raise DataError(
                        path,
                        None,
                        field,
                        f"{sequence} is one of MOT17's detector copies: set det_source to DPM, FRCNN or SDP",
                        kind="bad_params",
                    )
                if match["detector"] != det_source:
                    skipped += 1
                    continue
                sequence = match["base"]
        index.check(sequence, frame, path, None, field)
        entries = db[key]
        if not isinstance(entries, list):
            raise DataError(
                path,
                None,
                field,
                f"expected a list of 'x,y,w,h,score' strings, got {type(entries).__name__}",
                kind="malformed_row",
            )
        lists.setdefault((sequence, frame), ([], []))
        for i, entry in enumerate(entries):
            if not isinstance(entry, str):
                raise DataError(
                    path,
                    None,
                    f"{field}[{i}]",
                    f"expected an 'x,y,w,h,score' string, got {entry!r}",
                    kind="malformed_row",
                )
            x, y, w, h, score = _parse_floats(entry, 5, path, None, f"{field}[{i}]")
            _check_wh(w, h, path, None, f"{field}[{i}]")
            _append(lists, (sequence, frame), (x, y, x + w, y + h), score)
    return _finish(lists), skipped


def read_det_txt(path: str | Path, sequence: str, index: FrameIndex) -> Detections:
    """One MOTChallenge det.txt (`frame, -1, x, y, w, h, score, ...`) for `sequence`; errors name file:line."""
    path = Path(path)
    lists: dict = {}
    for number, raw in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not raw.strip():
            continue
        frame_f, _, x, y, w, h, score = _parse_floats(raw, 7, path, number, "row")
        if frame_f != int(frame_f):
            raise DataError(path, number, "frame", f"not an integer: {frame_f:g}", kind="malformed_row")
        index.check(sequence, int(frame_f), path, number, "frame")
        _check_wh(w, h, path, number, "bb_width/bb_height")
        _append(lists, (sequence, int(frame_f)), (x, y, x + w, y + h), score)
    return _finish(lists)


def read_motchallenge_dets(
    root: str | Path, index: FrameIndex, det_file: str = "det/det.txt", det_source: str | None = None
) -> Detections:
    """`<root>/<sequence>/<det_file>` for each sequence folder under `root` (a MOTChallenge split folder).

    MOT17's copies (`MOT17-02-DPM/-FRCNN/-SDP`) map to the converted `MOT17-02`; `det_source` picks
    which detector's file is read. A folder naming no converted sequence is a `DataError`.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            root, None, "path", "not a folder (expected <split>/<sequence>/det/det.txt)", kind="missing_split"
        )
    result: Detections = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        file = folder / det_file
        if not file.is_file():
            continue
        sequence = folder.name
        match = MOT17_COPY.match(sequence)
        if match and sequence not in index.frames:
            if det_source is None:
                raise DataError(
                    file,
                    None,
                    "det_source",
                    f"{folder.name} is one of MOT17's detector copies: set det_source to DPM, FRCNN or SDP",
                    kind="bad_params",
                )
            if match["detector"] != det_source:
                continue
            sequence = match["base"]
        if sequence not in index.frames:
            index.check(sequence, 0, file, None, "sequence")
        result.update(read_det_txt(file, sequence, index))
    return result


def dataset_dets(reader: DatasetReader, det_source: str | None) -> Detections:
    """The public detections the converter stored (det_boxes/det_scores), optionally of one detector."""
    stored = sorted(
        {name for entry in reader.manifest["sequences"].values() for name in entry.get("det_sources", [])}
    )
    if not stored or (det_source is not None and det_source not in stored):
        raise DataError(
            reader.dataset_dir / "manifest.json",
            None,
            "det_sources",
            f"the dataset holds no public detections{f' of {det_source!r}' if det_source else ''} (has {stored}); "
            "point pseudo_labels.detfile.<name>.path at a detection file (docs/pseudo_labels.md) "
            "or leave detfile out of pseudo_labels.sources and pld.sources",
            kind="bad_params",
        )
    result: Detections = {}
    for sequence in reader.sequences:
        for frame in reader.iter_sequence(sequence):
            keep = np.ones(len(frame.det_scores), dtype=bool)
            if det_source is not None:
                keep = np.asarray([s == det_source for s in frame.det_sources], dtype=bool).reshape(-1)
            result[(sequence, frame.frame)] = (
                _xywh_to_xyxy(frame.det_boxes[keep]),
                np.asarray(frame.det_scores, dtype=np.float32)[keep],
            )
    return result


def detfile_source(
    spec: dict[str, Any], reader: DatasetReader, index: FrameIndex
) -> tuple[Detections, dict[str, Any]]:
    """Dispatch a `pseudo_labels.detfile.<name>` entry by format; returns detections and notes for the manifest."""
    path = Path(spec["path"]) if spec.get("path") else None
    fmt = spec.get("format", "auto")
    if fmt == "auto":
        if path is None:
            fmt = "dataset"
        elif path.is_dir():
            fmt = "motchallenge"
        elif path.suffix.lower() == ".json":
            fmt = "json"
        else:
            raise DataError(
                path,
                None,
                "format",
                "cannot tell the format: expected a .json db or a MOTChallenge split folder",
                kind="bad_params",
            )
    notes: dict[str, Any] = {"format": fmt}
    if fmt == "dataset":
        return dataset_dets(reader, spec.get("det_source")), notes
    if path is None or not path.exists():
        raise DataError(
            path or "params.yaml",
            None,
            "pseudo_labels.detfile.path",
            "no such file or folder",
            kind="bad_params",
        )
    if fmt == "json":
        dets, skipped = read_json_db(path, index, spec.get("key_prefix"), spec.get("det_source"))
        notes["skipped_keys"] = skipped
    else:
        dets = read_motchallenge_dets(
            path, index, spec.get("det_file", "det/det.txt"), spec.get("det_source")
        )
    notes["sha256"] = sha256_file(path) if path.is_file() else None
    return dets, notes


# --- model sources -----------------------------------------------------------------------------------------


def decode_rgb(data) -> np.ndarray:
    import cv2

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("image does not decode")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def detector_predictor(spec: dict[str, Any]) -> Predictor:
    """Our detection-only Deformable-DETR (`motrv3.load_checkpoint`, `motrv3.detect`, detect queries only)."""
    import torch

    import motrv3

    checkpoint = Path(spec["checkpoint"])
    if not checkpoint.is_file():
        raise FileNotFoundError(
            f"{checkpoint}: no detector checkpoint; run `python -m stages.train_detector` first"
        )
    model, _ = motrv3.load_checkpoint(checkpoint)
    model = motrv3.optimize_for_inference(model.to(_device()))

    def predict(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            boxes, scores = motrv3.detect(model, image, spec["size"], spec["max_size"])
        return boxes.detach().float().cpu().numpy().reshape(
            -1, 4
        ), scores.detach().float().cpu().numpy().reshape(-1)

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

    device = _device()
    model = build_torchvision_detector(spec, score_threshold).to(device)
    person = spec["person_class"]

    def predict(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tensor = torch.from_numpy(image).to(device).permute(2, 0, 1).float().div_(255.0)
        with torch.inference_mode():
            out = model([tensor])[0]
        keep = out["labels"] == person
        return out["boxes"][keep].float().cpu().numpy().reshape(-1, 4), out["scores"][
            keep
        ].float().cpu().numpy()

    return predict


def make_predictor(source: Source, score_threshold: float) -> Predictor:
    if source.kind == "detector":
        return detector_predictor(source.spec)
    if source.kind == "torchvision":
        return torchvision_predictor(source.spec, score_threshold)
    raise ValueError(f"source {source.name!r} runs no model")


class _RayPredict:
    """Ray Data `map_batches` callable: one model per worker, frames read from the Parquet dataset."""

    def __init__(self, source: Source, score_threshold: float, dataset_dir: str, torch_threads: int):
        import torch

        from motrv3.inference import retain_freed_memory

        torch.set_num_threads(torch_threads)
        retain_freed_memory()
        self.predict = make_predictor(source, score_threshold)
        self.reader = DatasetReader(dataset_dir)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        rows = _predict_rows(self.predict, self.reader, list(batch["sequence"]), list(batch["position"]))
        return {key: [row[key] for row in rows] for key in ("sequence", "frame", "boxes", "scores")}


def _predict_rows(
    predict: Predictor, reader: DatasetReader, sequences: list[str], positions: list[int]
) -> list[dict]:
    rows = []
    for sequence, position in zip(sequences, positions, strict=True):
        frame = reader.frames(str(sequence), [int(position)])[0]
        boxes, scores = predict(decode_rgb(frame.image))
        rows.append(
            {
                "sequence": frame.sequence,
                "frame": frame.frame,
                "boxes": boxes.reshape(-1).tolist(),
                "scores": scores.tolist(),
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
) -> Detections:
    """Run a model source over every frame: Ray Data with `workers` > 1, else in this process."""
    from tqdm import tqdm

    work = [
        (sequence, position) for sequence, frames in index.frames.items() for position in range(len(frames))
    ]
    result: Detections = {}
    bar = tqdm(total=len(work), desc=f"pseudo labels {source.name}", unit="frame", disable=not progress)

    def collect(rows: list[dict]) -> None:
        for row in rows:
            boxes = np.asarray(row["boxes"], dtype=np.float32).reshape(-1, 4)
            result[(str(row["sequence"]), int(row["frame"]))] = (
                boxes,
                np.asarray(row["scores"], dtype=np.float32),
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
    import torch

    from pipeline.ray_utils import init_ray

    started = False
    import ray

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


# --- the stage -----------------------------------------------------------------------------------------------


def apply_threshold(dets: Detections, threshold: float) -> Detections:
    """PLD's confidence filter (§3.3): keep boxes with score ≥ threshold (0.05 kept, 0.04 dropped)."""
    cut = np.float32(threshold)
    return {key: (boxes[scores >= cut], scores[scores >= cut]) for key, (boxes, scores) in dets.items()}


def to_rows(source: str, dets: Detections, index: FrameIndex) -> Iterator[dict[str, Any]]:
    """One row per frame of the split (frames without boxes included), schema `PSEUDO_LABEL_SCHEMA`."""
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    for sequence, frames in index.frames.items():
        for frame in frames:
            boxes, scores = dets.get((sequence, int(frame)), empty)
            yield {
                "sequence": sequence,
                "frame": int(frame),
                "boxes": boxes.astype(np.float32).tolist(),
                "scores": scores.astype(np.float32).tolist(),
                "source": source,
            }


def collect_source(
    source: Source,
    dataset_dir: Path,
    index: FrameIndex,
    reader: DatasetReader,
    *,
    threshold: float,
    size: int,
    max_size: int,
    workers: int,
    batch_size: int,
    ray_address: str | None,
    progress: bool,
) -> tuple[Detections, dict[str, Any]]:
    notes: dict[str, Any] = {"kind": source.kind}
    if source.kind == "gt":
        dets = gt_source(reader)
    elif source.kind == "detfile":
        dets, more = detfile_source(source.spec, reader, index)
        notes.update(more)
    else:
        spec = dict(source.spec)
        if source.kind == "detector":
            spec.update(size=size, max_size=max_size)
        notes["checkpoint_sha256"] = (
            sha256_file(Path(spec["checkpoint"])) if Path(spec["checkpoint"]).is_file() else None
        )
        dets = run_model(
            Source(source.name, source.kind, spec),
            dataset_dir,
            index,
            threshold,
            workers,
            batch_size,
            ray_address,
            progress,
        )
    covered = {sequence for sequence, _ in dets}
    notes["sequences_without_detections"] = sorted(set(index.frames) - covered)
    return apply_threshold(dets, threshold), notes


def summarize(rows: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """Per-source counts, boxes per frame and a score histogram (the stage's DVC metrics)."""
    edges = np.linspace(0.0, 1.0, 21)
    summary: dict[str, Any] = {"threshold": threshold, "frames": 0, "boxes": 0, "sources": {}}
    by_source: dict[str, list[dict]] = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    for name, items in sorted(by_source.items()):
        counts = np.asarray([len(r["scores"]) for r in items])
        scores = (
            np.concatenate([np.asarray(r["scores"], np.float32) for r in items]) if items else np.zeros(0)
        )
        histogram, _ = np.histogram(np.clip(scores, 0.0, 1.0), bins=edges)
        summary["sources"][name] = {
            "frames": len(items),
            "boxes": int(counts.sum()),
            "boxes_per_frame": round(float(counts.mean()), 4) if len(counts) else 0.0,
            "max_boxes_per_frame": int(counts.max()) if len(counts) else 0,
            "frames_without_boxes": int((counts == 0).sum()),
            "mean_score": round(float(scores.mean()), 4) if len(scores) else 0.0,
            "score_histogram": {"edges": [round(e, 2) for e in edges.tolist()], "counts": histogram.tolist()},
        }
        summary["frames"] = max(summary["frames"], len(items))
        summary["boxes"] += int(counts.sum())
    return summary


def plot_summary(rows: list[dict[str, Any]], path: Path, threshold: float) -> None:
    """Score histogram and boxes-per-frame histogram per source, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_source: dict[str, list[dict]] = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    fig, (ax_score, ax_count) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, items in sorted(by_source.items()):
        scores = np.concatenate([np.asarray(r["scores"], np.float32) for r in items])
        counts = [len(r["scores"]) for r in items]
        ax_score.hist(scores, bins=np.linspace(0, 1, 41), histtype="step", label=name)
        ax_count.hist(
            counts, bins=np.arange(0, max(counts, default=0) + 2) - 0.5, histtype="step", label=name
        )
    ax_score.axvline(threshold, color="grey", linestyle="--", linewidth=1)
    ax_score.set(xlabel="confidence", ylabel="boxes", title=f"pseudo-label scores (kept ≥ {threshold:g})")
    ax_count.set(xlabel="boxes per frame", ylabel="frames", title="boxes per frame")
    ax_score.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)


def run_pseudo_labels(
    params,
    *,
    split: str | None = None,
    clips_dir: str | Path = CLIPS_DIR,
    out_root: str | Path = PSEUDO_LABELS_DIR,
    summary_path: str | Path | None = SUMMARY_PATH,
    plot_path: str | Path | None = PLOT_PATH,
    progress: bool = True,
) -> dict[str, Any]:
    """Produce `<out_root>/<split>/{pseudo_labels.parquet, manifest.json}` for `pld.sources`; returns the manifest.

    Deterministic: rows sorted by (source, sequence, frame), no timestamps, so unchanged inputs give
    identical files (a DVC no-op). The folder is replaced atomically.
    """
    split = split or params.dataset.train_split
    dataset_dir = Path(clips_dir) / split
    sources = parse_sources(generated_sources(params), params.pseudo_labels)
    index = FrameIndex.load(dataset_dir)
    reader = DatasetReader(dataset_dir)
    workers = params.pseudo_labels.workers or default_workers()
    threshold = params.pld.threshold
    rows: list[dict[str, Any]] = []
    notes = {}
    for source in sources:
        dets, notes[source.name] = collect_source(
            source,
            dataset_dir,
            index,
            reader,
            threshold=threshold,
            size=params.data.eval_size,
            max_size=params.data.eval_max_size,
            workers=workers,
            batch_size=params.pseudo_labels.batch_size,
            ray_address=params.ray.address,
            progress=progress,
        )
        rows.extend(to_rows(source.name, dets, index))
    summary = summarize(rows, threshold)
    out_dir = Path(out_root) / split
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        write_pseudo_labels(rows, tmp / LABELS_FILE)
        manifest = {
            "schema": PSEUDO_LABEL_SCHEMA.names,
            "split": split,
            "dataset_dir": str(dataset_dir),
            "dataset_manifest_sha256": sha256_file(dataset_dir / "manifest.json"),
            "threshold": threshold,
            "sources": {
                s.name: {
                    **notes[s.name],
                    "boxes": summary["sources"][s.name]["boxes"],
                    "frames": summary["sources"][s.name]["frames"],
                }
                for s in sources
            },
            "files": {
                LABELS_FILE: {
                    "rows": len(rows),
                    "bytes": (tmp / LABELS_FILE).stat().st_size,
                    "sha256": sha256_file(tmp / LABELS_FILE),
                }
            },
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    if summary_path is not None:
        write_text_atomic(
            summary_path, json.dumps({"split": split, **summary}, indent=2, sort_keys=True) + "\n"
        )
    if plot_path is not None:
        plot_summary(rows, Path(plot_path), threshold)
    return manifest


# --- reading back and quality -------------------------------------------------------------------------------


def load_label_sets(
    path: str | Path, sources: list[str], threshold: float, combine: str
) -> dict[tuple[str, int], list]:
    """(sequence, frame) → label sets for the trainer: `parallel` one (boxes, scores) per source in
    `sources` order (each matched on its own, Table 4 row 3), `concat` one set joining them all."""
    from pipeline.data.parquet_io import read_pseudo_labels

    per_source = [read_pseudo_labels(path, threshold, [name]) for name in sources]
    keys = sorted(set().union(*per_source))
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    result = {}
    for key in keys:
        sets = [labels.get(key, empty) for labels in per_source]
        if combine == "concat":
            sets = [(np.concatenate([b for b, _ in sets]), np.concatenate([s for _, s in sets]))]
        result[key] = sets
    return result


def precision_recall(
    pred: Detections, truth: Detections, iou_threshold: float = 0.5, score_threshold: float = 0.5
) -> dict[str, float]:
    """Detection precision/recall at IoU ≥ `iou_threshold` with one-to-one matching (Hungarian on IoU)."""
    import torch
    from scipy.optimize import linear_sum_assignment
    from torchvision.ops import box_iou

    tp = fp = fn = 0
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    for key in sorted(set(pred) | set(truth)):
        boxes, scores = pred.get(key, empty)
        boxes = boxes[scores >= score_threshold]
        gt = truth.get(key, empty)[0]
        matched = 0
        if len(boxes) and len(gt):
            iou = box_iou(torch.from_numpy(boxes).float(), torch.from_numpy(gt).float()).numpy()
            rows, cols = linear_sum_assignment(-iou)
            matched = int((iou[rows, cols] >= iou_threshold).sum())
        tp += matched
        fp += len(boxes) - matched
        fn += len(gt) - matched
    return {
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "true_positives": tp,
        "predictions": tp + fp,
        "ground_truth": tp + fn,
    }


def random_boxes_like(
    pred: Detections, truth: Detections, sizes: dict[str, tuple[int, int]], seed: int = 0
) -> Detections:
    """Chance baseline: per frame as many boxes as `pred` keeps, placed uniformly at random with
    widths/heights drawn from the ground truth's — what a detector that knows only box statistics gets."""
    rng = np.random.default_rng(seed)
    all_gt = np.concatenate([b for b, _ in truth.values() if len(b)] or [np.zeros((0, 4), np.float32)])
    wh = all_gt[:, 2:] - all_gt[:, :2]
    result: Detections = {}
    for key, (boxes, scores) in sorted(pred.items()):
        n = len(boxes)
        width, height = sizes[key[0]]
        if n == 0 or len(wh) == 0:
            result[key] = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
            continue
        size = wh[rng.integers(0, len(wh), n)]
        x1 = rng.uniform(0, np.maximum(width - size[:, 0], 1))
        y1 = rng.uniform(0, np.maximum(height - size[:, 1], 1))
        result[key] = (
            np.stack([x1, y1, x1 + size[:, 0], y1 + size[:, 1]], 1).astype(np.float32),
            scores.copy(),
        )
    return result


def check_sources(labels_dir: str | Path, names: list[str]) -> dict[str, Any]:
    """The manifest of `labels_dir` (one split's output) after checking it holds every source in `names`.

    Training calls this so that a `pld.sources` the stage did not generate is an error, not silently
    zero pseudo labels.
    """
    path = Path(labels_dir) / MANIFEST
    if not path.is_file():
        raise DataError(
            path, None, "manifest", "missing: run `python -m stages.pseudo_labels`", kind="bad_manifest"
        )
    manifest = json.loads(path.read_text())
    missing = [name for name in names if name not in manifest.get("sources", {})]
    if missing:
        raise DataError(
            path,
            None,
            "sources",
            f"pld.sources {missing} not generated (have {sorted(manifest.get('sources', {}))}); add them to "
            "pseudo_labels.sources and re-run the pseudo_labels stage",
            kind="missing_source",
        )
    return manifest
