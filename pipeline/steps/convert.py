"""The convert step: raw layouts → Parquet clip datasets (`data/clips/<split>/`), one per split, per the params."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.data.crowdhuman import read_crowdhuman
from pipeline.data.parquet_io import write_dataset
from pipeline.data.sequences import read_split, take_half
from pipeline.datasets import DATASETS
from pipeline.formats.errors import DataError, Issues
from pipeline.paths import CLIPS_DIR


def source_of(params) -> tuple[Path, str]:
    """(root of the raw input, ground-truth rules) for `dataset.name`, from the dataset table."""
    dataset = params.dataset
    spec = DATASETS[dataset.name]
    root = dataset.root or spec.default_root
    if root is None:
        raise DataError(
            "params.yaml",
            None,
            "dataset.root",
            f"dataset.name={dataset.name} needs dataset.root (the folder holding train/, val/, test/)",
            kind="bad_params",
        )
    return Path(root), spec.rules


def splits_of(params) -> dict[str, tuple[str, str | None]]:
    """Each output split → (the folder under the input root it is read from, which half or None).

    `dataset.split_mode: half`: `train_split`'s sequences are cut in two (`take_half`), the first
    halves into `train_split`, the second into `eval_split`; `<root>/<eval_split>` is not read.
    """
    dataset = params.dataset
    names = [dataset.train_split, dataset.eval_split, dataset.test_split]
    plan: dict[str, tuple[str, str | None]] = {name: (name, None) for name in names if name}
    if dataset.split_mode == "half":
        for key, split in (("eval_split", dataset.eval_split), ("test_split", dataset.test_split)):
            if split == dataset.train_split:
                raise DataError(
                    "params.yaml",
                    None,
                    f"dataset.{key}",
                    f"{split!r} is also train_split: split_mode=half writes the two halves of "
                    f"{dataset.train_split!r} to two different splits",
                    kind="bad_params",
                )
        plan[dataset.train_split] = (dataset.train_split, "train")
        plan[dataset.eval_split] = (dataset.train_split, "val")
    return plan


def convert_split(
    root: Path,
    split: str,
    benchmark: str,
    out_dir: Path,
    *,
    dataset: str,
    row_group_frames: int,
    lenient: bool,
    crowdhuman_root: Path | None = None,
    progress: bool = True,
    source_split: str | None = None,
    half: str | None = None,
    reader: Callable = read_split,
    classes: dict[int, str] | None = None,
) -> dict[str, Any]:
    """Read `<root>/<split>` (+ CrowdHuman train/val for a training split) and write it atomically.

    `source_split` reads another folder under `root`; `half` ("train"/"val") keeps that half of
    each sequence (`take_half`; the images are the source's own files, nothing is copied). `reader`
    reads the raw layout (the dataset table's, `pipeline.datasets`). `classes`: `dataset.classes`
    (None: the one default class); gt rows of other classes are kept with their ignore flag set.
    """
    issues = Issues(lenient=lenient)
    targets = None if classes is None else list(classes)
    sequences = reader(root, source_split or split, benchmark, issues, classes=targets)
    if half is not None:
        halves = []
        for sequence in sequences:
            try:
                halves.append(take_half(sequence, half))
            except DataError as error:
                issues.report(error)
        sequences = halves
    if crowdhuman_root is not None:
        # The MOT17 recipe trains on CrowdHuman train and val; either annotation file alone is fine.
        ch_splits = [
            s for s in ("train", "val") if (Path(crowdhuman_root) / f"annotation_{s}.odgt").is_file()
        ]
        if not ch_splits:
            issues.report(
                DataError(
                    crowdhuman_root,
                    None,
                    "dataset.crowdhuman_root",
                    "no annotation_train.odgt or annotation_val.odgt",
                    kind="missing_split",
                )
            )
        for ch_split in ch_splits:
            try:
                sequences.append(read_crowdhuman(crowdhuman_root, ch_split, issues))
            except DataError as error:
                issues.report(error)
    with tqdm(total=len(sequences), desc=f"convert {split}", unit="seq", disable=not progress) as bar:
        return write_dataset(
            sequences,
            out_dir,
            dataset=dataset,
            benchmark=benchmark,
            split=split,
            row_group_frames=row_group_frames,
            issues=issues,
            input_root=root,
            progress=bar,
            classes=classes,
        )


def run(params, out_root: str | Path = CLIPS_DIR, progress: bool = True) -> dict[str, dict[str, Any]]:
    """Convert every split named in `dataset` that exists under the input root."""
    root, benchmark = source_of(params)
    reader = DATASETS[params.dataset.name].load_reader()
    crowdhuman = Path(params.dataset.crowdhuman_root) if params.dataset.crowdhuman_root else None
    manifests = {}
    for split, (source_split, half) in splits_of(params).items():
        manifests[split] = convert_split(
            root,
            split,
            benchmark,
            Path(out_root) / split,
            dataset=params.dataset.name,
            row_group_frames=params.data.row_group_frames,
            lenient=params.dataset.lenient,
            crowdhuman_root=crowdhuman if split == params.dataset.train_split else None,
            progress=progress,
            source_split=source_split,
            half=half,
            reader=reader,
            classes=params.dataset.classes,
        )
    return manifests
