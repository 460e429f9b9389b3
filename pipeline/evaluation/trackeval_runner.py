"""TrackEval scoring of MOTChallenge result files: HOTA, CLEAR (MOTA, IDS, ...) and Identity (IDF1).

`evaluate_folder(gt_dir, results_dir, benchmark)` scores ours and any tracker's results the same way,
in MOTChallenge layout: `gt_dir/<seq>/{seqinfo.ini,gt/gt.txt}` and `results_dir/<seq>.txt`.

Every file is validated first (`pipeline.formats.motchallenge`, errors name file and line). A sequence
without results, a gt folder without `seqinfo.ini` and results of a sequence the gt lacks are errors:
each would silently change what the score covers. Gt is parsed by the converter's own reader under
the benchmark's rules (`pipeline.evaluation.benchmarks`), staged into TrackEval's layout in a
temporary folder and scored by the real `trackeval` package (`MotChallenge2DBox`).

Values as in the papers: percentages (HOTA, DetA, AssA, … means over TrackEval's 19 α), counts as integers.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import trackeval

from pipeline.data.sequences import unresolved_link
from pipeline.evaluation.benchmarks import Benchmark, get_benchmark
from pipeline.evaluation.per_class import check_classes, class_subset, combine
from pipeline.formats import motchallenge as mot
from pipeline.formats.errors import DataError
from pipeline.paths import atomic_path


class EvaluationError(RuntimeError):
    """TrackEval could not score the inputs (the message carries TrackEval's own output)."""


# Output keys, in the order of the paper's tables first. Percentages unless listed in COUNT_KEYS.
HOTA_ARRAY_KEYS = ("HOTA", "DetA", "AssA", "DetRe", "DetPr", "AssRe", "AssPr", "LocA", "OWTA")
HOTA_SCALAR_KEYS = ("HOTA(0)", "LocA(0)", "HOTALocA(0)")
CLEAR_PERCENT_KEYS = (
    "MOTA",
    "MOTP",
    "MODA",
    "CLR_Re",
    "CLR_Pr",
    "MTR",
    "PTR",
    "MLR",
    "sMOTA",
    "CLR_F1",
    "MOTAL",
)
CLEAR_COUNT_KEYS = ("CLR_TP", "CLR_FN", "CLR_FP", "IDSW", "MT", "PT", "ML", "Frag", "CLR_Frames")
IDENTITY_PERCENT_KEYS = ("IDF1", "IDR", "IDP")
IDENTITY_COUNT_KEYS = ("IDTP", "IDFN", "IDFP")
COUNT_KEYS_TRACKEVAL = ("Dets", "GT_Dets", "IDs", "GT_IDs")
# The names the paper's tables use, as aliases of TrackEval's.
ALIASES = {"IDS": "IDSW", "FP": "CLR_FP", "FN": "CLR_FN"}
HEADLINE_KEYS = ("HOTA", "AssA", "DetA", "MOTA", "IDF1", "IDS")


@dataclass
class Evaluation:
    """Flat metrics over all sequences (`overall`) and per sequence.

    Several classes: `overall` and `per_sequence` combine the classes detection-averaged (TrackEval's
    `cls_comb_det_av`: every class's boxes counted together, so one class gives exactly its own
    numbers), `per_class` holds each class over all sequences and `class_mean` the mean over the
    classes (TrackEval's `cls_comb_cls_av`, BDD100K's mHOTA style). One class: both empty.
    """

    benchmark: str
    overall: dict[str, float | int]
    per_sequence: dict[str, dict[str, float | int]] = field(default_factory=dict)
    per_class: dict[str, dict[str, float | int]] = field(default_factory=dict)
    class_mean: dict[str, float | int] = field(default_factory=dict)


@dataclass(frozen=True)
class GroundTruthSequence:
    name: str
    info: mot.SeqInfo
    gt_file: Path | None  # None: no labels (a test split)


def discover_sequences(gt_dir: str | Path, sequences: list[str] | None = None) -> list[GroundTruthSequence]:
    """The sequences of a MOTChallenge-layout folder: every sub-folder (or those named).

    Each needs `seqinfo.ini`: a folder without one, or a link that leads nowhere, is a `DataError`
    (left out, it would silently shrink what the score covers). Plain files and hidden entries
    are not sequences and are not looked at.
    """
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise FileNotFoundError(f"{gt_dir}: no such ground-truth folder")
    if sequences is None:
        names = []
        for path in sorted(p for p in gt_dir.iterdir() if not p.name.startswith(".")):
            if path.is_dir():
                names.append(path.name)
            elif reason := unresolved_link(path):
                raise DataError(path, None, "sequence", reason, kind="bad_link")
        if not names:
            raise FileNotFoundError(f"{gt_dir}: no sequences found (expected {gt_dir}/<seq>/seqinfo.ini)")
    else:
        names = list(sequences)
    found = []
    for name in names:
        info = mot.read_seqinfo(gt_dir / name / "seqinfo.ini")
        gt_file = gt_dir / name / "gt" / "gt.txt"
        if not gt_file.is_file() and (gt_file.exists() or gt_file.is_symlink()):
            # Read as "no labels", a folder or dead link here would turn scoring into a submission.
            raise DataError(gt_file, None, "gt", "not a readable file", kind="unreadable")
        found.append(GroundTruthSequence(name, info, gt_file if gt_file.is_file() else None))
    return found


def has_labels(sequences: list[GroundTruthSequence]) -> bool:
    """True when every sequence has gt.txt, False when none has; a mix is an error."""
    labelled = [s.name for s in sequences if s.gt_file is not None]
    if labelled and len(labelled) != len(sequences):
        missing = sorted(s.name for s in sequences if s.gt_file is None)
        raise FileNotFoundError(
            f"ground truth missing for {missing} (gt/gt.txt) while other sequences have it"
        )
    return bool(labelled)


def result_file(results_dir: str | Path, sequence: str) -> Path:
    return Path(results_dir) / f"{sequence}.txt"


def check_no_unknown_results(results_dir: str | Path, sequences: list[GroundTruthSequence], gt_dir) -> None:
    """A `<seq>.txt` in `results_dir` for a sequence the ground truth lacks is a `DataError`.

    Scoring it is impossible and leaving it out silently would report a score over fewer
    sequences than the results hold (a misnamed file, the wrong gt folder).
    """
    names = {s.name for s in sequences}
    unknown = sorted(
        p for p in Path(results_dir).glob("*.txt") if p.stem not in names and not p.name.startswith(".")
    )
    if unknown:
        raise DataError(
            unknown[0],
            None,
            "sequence",
            f"no sequence {unknown[0].stem!r} in the ground truth {gt_dir} "
            f"({len(unknown)} such result file(s); has {sorted(names)[:8]}{' …' if len(names) > 8 else ''})",
            kind="unknown_sequence",
        )


def load_results(
    results_dir: str | Path, sequences: list[GroundTruthSequence], classes: list[int] | None = None
) -> dict[str, np.ndarray]:
    """Validated result rows of every sequence; a missing file is a `MissingSequenceError`.

    `classes` (several): every row's column 8 must be one of these gt class ids."""
    missing = [s.name for s in sequences if not result_file(results_dir, s.name).is_file()]
    if missing:
        raise mot.MissingSequenceError(
            results_dir, f"no result file for sequence(s) {missing} (expected {results_dir}/<seq>.txt)"
        )
    return {
        s.name: mot.read_results(result_file(results_dir, s.name), s.info.length, classes) for s in sequences
    }


def _flatten(metrics: dict[str, dict[str, Any]]) -> dict[str, float | int]:
    hota, clear, identity, count = metrics["HOTA"], metrics["CLEAR"], metrics["Identity"], metrics["Count"]
    flat: dict[str, float | int] = {}
    for key in HOTA_ARRAY_KEYS:
        flat[key] = 100.0 * float(np.mean(hota[key]))  # mean over the 19 α thresholds
    for key in HOTA_SCALAR_KEYS:
        flat[key] = 100.0 * float(hota[key])
    for key in CLEAR_PERCENT_KEYS:
        flat[key] = 100.0 * float(clear[key])
    flat["FP_per_frame"] = float(clear["FP_per_frame"])
    for key in CLEAR_COUNT_KEYS:
        flat[key] = int(clear[key])
    for key in IDENTITY_PERCENT_KEYS:
        flat[key] = 100.0 * float(identity[key])
    for key in IDENTITY_COUNT_KEYS:
        flat[key] = int(identity[key])
    for key in COUNT_KEYS_TRACKEVAL:
        flat[key] = int(count[key])
    for alias, key in ALIASES.items():
        flat[alias] = flat[key]
    ordered = {key: flat[key] for key in HEADLINE_KEYS}
    ordered.update({key: value for key, value in flat.items() if key not in ordered})
    return ordered


def _stage(
    tmp: Path,
    sequences: list[GroundTruthSequence],
    gt: dict[str, np.ndarray],
    results: dict[str, np.ndarray],
    tracker_name: str,
) -> tuple[Path, Path]:
    """Write validated, normalised copies in TrackEval's layout (so its parser sees clean files)."""
    gt_root, trackers_root = tmp / "gt", tmp / "trackers"
    for seq in sequences:
        gt_file = gt_root / seq.name / "gt" / "gt.txt"
        gt_file.parent.mkdir(parents=True)
        # Full precision (scores equal those of the original files); identities only relabelled.
        gt_file.write_text(mot.format_gt(mot.compact_ids(gt[seq.name]), decimals=6))
        result = trackers_root / tracker_name / "data" / f"{seq.name}.txt"
        result.parent.mkdir(parents=True, exist_ok=True)
        # 7 values: TrackEval's MOTChallenge reader scores only class ≤ 1 tracker rows.
        rows = mot.compact_ids(results[seq.name])[:, :7]
        result.write_text(mot.format_results(rows, decimals=6))
    return gt_root, trackers_root


def evaluate_folder(
    gt_dir: str | Path,
    results_dir: str | Path,
    benchmark: str = "synthetic",
    sequences: list[str] | None = None,
    classes: dict[int, str] | None = None,
) -> Evaluation:
    """Score `results_dir/<seq>.txt` against `gt_dir/<seq>/gt/gt.txt` for every sequence of gt_dir.

    With `sequences` named, other result files are not looked at; without, a result file of a
    sequence gt_dir lacks is an error. `classes` (custom data's `dataset.classes`, gt class id →
    name): one class is scored like class 1 (its gt rows only, every result row); several are
    scored one TrackEval run per class, on that class's gt rows and the result rows whose column 8
    is its id, then combined (`Evaluation`).
    """
    spec = get_benchmark(benchmark)
    classes = check_classes(spec.name, classes)
    gt_sequences = discover_sequences(gt_dir, sequences)
    if not has_labels(gt_sequences):
        raise FileNotFoundError(
            f"{gt_dir}: no ground-truth labels (gt/gt.txt); a test split gets a submission archive instead"
        )
    if sequences is None:
        check_no_unknown_results(results_dir, gt_sequences, gt_dir)
    several = classes is not None and len(classes) > 1
    results = load_results(results_dir, gt_sequences, list(classes) if several else None)
    gt = {s.name: mot.read_gt(s.gt_file, s.info, spec.rules, classes) for s in gt_sequences}
    if classes is None:
        if spec.class_one_only:
            gt = {name: rows[rows[:, 7] == 1] for name, rows in gt.items()}
        res = _run_trackeval(gt_sequences, gt, results, spec)
        return _evaluation(spec, gt_sequences, res)
    if not several:
        (cls,) = classes
        res = _run_trackeval(gt_sequences, {n: class_subset(r, cls) for n, r in gt.items()}, results, spec)
        return _evaluation(spec, gt_sequences, res)
    per_class = {
        name: _run_trackeval(
            gt_sequences,
            {n: class_subset(rows, cls) for n, rows in gt.items()},
            {n: rows[rows[:, mot.RESULT_CLASS] == cls] for n, rows in results.items()},
            spec,
        )
        for cls, name in classes.items()
    }
    return combine_classes(spec, gt_sequences, per_class)


METRICS = {
    "HOTA": trackeval.metrics.HOTA,
    "CLEAR": trackeval.metrics.CLEAR,
    "Identity": trackeval.metrics.Identity,
}


def _metrics(config: dict[str, Any]) -> dict[str, Any]:
    return {name: cls(dict(config)) for name, cls in METRICS.items()} | {"Count": trackeval.metrics.Count()}


def combine_classes(
    spec: Benchmark, sequences: list[GroundTruthSequence], per_class: dict[str, dict[str, Any]]
) -> Evaluation:
    """One `Evaluation` of per-class TrackEval results (class name → its run's output)."""
    metrics = _metrics(METRIC_CONFIG)
    keys = [s.name for s in sequences] + ["COMBINED_SEQ"]
    by_key = {key: {cls: res[key]["pedestrian"] for cls, res in per_class.items()} for key in keys}
    combined = {key: combine(metrics, by_key[key], average=False) for key in keys}
    return Evaluation(
        spec.name,
        _flatten(combined["COMBINED_SEQ"]),
        {s.name: _flatten(combined[s.name]) for s in sequences},
        {cls: _flatten(res) for cls, res in by_key["COMBINED_SEQ"].items()},
        _flatten(combine(metrics, by_key["COMBINED_SEQ"], average=True)),
    )


def _evaluation(spec: Benchmark, sequences: list[GroundTruthSequence], res: dict[str, Any]) -> Evaluation:
    per_sequence = {s.name: _flatten(res[s.name]["pedestrian"]) for s in sequences}
    return Evaluation(spec.name, _flatten(res["COMBINED_SEQ"]["pedestrian"]), per_sequence)


METRIC_CONFIG = {"THRESHOLD": 0.5, "PRINT_CONFIG": False}


def _run_trackeval(
    gt_sequences: list[GroundTruthSequence],
    gt: dict[str, np.ndarray],
    results: dict[str, np.ndarray],
    spec: Benchmark,
) -> dict[str, Any]:
    """TrackEval (`MotChallenge2DBox`, class pedestrian) over staged copies: its per-sequence and
    `COMBINED_SEQ` results."""
    tracker_name = "tracker"
    with tempfile.TemporaryDirectory(prefix="motrv3-trackeval-") as tmp_name:
        tmp = Path(tmp_name)
        gt_root, trackers_root = _stage(tmp, gt_sequences, gt, results, tracker_name)
        eval_config = {
            "USE_PARALLEL": False,
            "BREAK_ON_ERROR": True,
            "RETURN_ON_ERROR": False,
            "LOG_ON_ERROR": None,  # its default writes into site-packages
            "PRINT_RESULTS": False,
            "PRINT_ONLY_COMBINED": False,
            "PRINT_CONFIG": False,
            "TIME_PROGRESS": False,
            "DISPLAY_LESS_PROGRESS": True,
            "OUTPUT_SUMMARY": False,
            "OUTPUT_EMPTY_CLASSES": False,
            "OUTPUT_DETAILED": False,
            "PLOT_CURVES": False,
        }
        dataset_config = {
            "GT_FOLDER": str(gt_root),
            "TRACKERS_FOLDER": str(trackers_root),
            "OUTPUT_FOLDER": str(tmp / "out"),
            "TRACKERS_TO_EVAL": [tracker_name],
            "CLASSES_TO_EVAL": ["pedestrian"],
            "BENCHMARK": spec.trackeval_benchmark,
            "SPLIT_TO_EVAL": "all",
            "SKIP_SPLIT_FOL": True,
            "SEQ_INFO": {s.name: s.info.length for s in gt_sequences},
            "DO_PREPROC": True,
            "TRACKER_SUB_FOLDER": "data",
            "PRINT_CONFIG": False,
        }
        log = io.StringIO()
        try:
            with contextlib.redirect_stdout(log):
                evaluator = trackeval.Evaluator(eval_config)
                dataset = trackeval.datasets.MotChallenge2DBox(dataset_config)
                metrics = [cls(dict(METRIC_CONFIG)) for cls in METRICS.values()]
                output, messages = evaluator.evaluate([dataset], metrics)
        except trackeval.utils.TrackEvalException as error:
            raise EvaluationError(f"TrackEval: {error}\n{log.getvalue()[-2000:]}") from None
    message = messages["MotChallenge2DBox"][tracker_name]
    if message != "Success":
        raise EvaluationError(f"TrackEval: {message}\n{log.getvalue()[-2000:]}")
    return output["MotChallenge2DBox"][tracker_name]


CLASS_MEAN = "class_mean"  # the key prefix / row of the mean over classes


def class_keys(evaluation: Evaluation) -> dict[str, float | int]:
    """Several classes: the headline keys per class and of the class mean, flat (`car/HOTA`,
    `class_mean/HOTA`); one class: none."""
    if not evaluation.per_class:
        return {}
    parts = {**evaluation.per_class, CLASS_MEAN: evaluation.class_mean}
    return {f"{name}/{key}": values[key] for name, values in parts.items() for key in HEADLINE_KEYS}


def write_metrics_json(evaluation: Evaluation, path: str | Path, **extra: float) -> None:
    """The flat metrics JSON (a DVC metrics file); several classes add `class_keys`; `extra`
    numbers such as FPS are added."""
    payload = dict(evaluation.overall)
    payload.update(class_keys(evaluation))
    payload.update(extra)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2) + "\n")


def write_per_sequence_csv(evaluation: Evaluation, path: str | Path) -> None:
    """One row per sequence plus a COMBINED row, the same columns as the JSON."""
    keys = list(evaluation.overall)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sequence", *keys])
        for name, values in evaluation.per_sequence.items():
            writer.writerow([name, *(values[k] for k in keys)])
        writer.writerow(["COMBINED", *(evaluation.overall[k] for k in keys)])


def write_per_class_csv(evaluation: Evaluation, path: str | Path) -> None:
    """Several classes: one row per class, the class mean and COMBINED (= the JSON), the JSON's columns."""
    keys = list(evaluation.overall)
    rows = [
        *evaluation.per_class.items(),
        (CLASS_MEAN, evaluation.class_mean),
        ("COMBINED", evaluation.overall),
    ]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", *keys])
        for name, values in rows:
            writer.writerow([name, *(values[k] for k in keys)])


def format_table(evaluation: Evaluation, keys: tuple[str, ...] = HEADLINE_KEYS) -> str:
    """Sequences, COMBINED, then (several classes) one row per class and the class mean."""
    rows = [*evaluation.per_sequence.items(), ("COMBINED", evaluation.overall)]
    if evaluation.per_class:
        rows += [(f"class {name}", values) for name, values in evaluation.per_class.items()]
        rows.append((CLASS_MEAN, evaluation.class_mean))
    width = max(len(name) for name, _ in rows)
    lines = [f"{'sequence':<{width}}  " + "  ".join(f"{k:>7}" for k in keys)]
    for name, values in rows:
        cells = [f"{values[k]:>7d}" if isinstance(values[k], int) else f"{values[k]:>7.2f}" for k in keys]
        lines.append(f"{name:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)
