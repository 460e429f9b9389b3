"""The evaluate step: tracker results scored with TrackEval: HOTA, CLEAR (MOTA, IDS, ...) and Identity (IDF1).

`evaluate_folder(gt_dir, results_dir, benchmark)` scores ours and any tracker's results the same way,
in MOTChallenge layout: `gt_dir/<seq>/{seqinfo.ini,gt/gt.txt}` and `results_dir/<seq>.txt`.

Every file is validated first (`pipeline.formats.motchallenge`, errors name file and line). A sequence
without results, a gt folder without `seqinfo.ini` and results of a sequence the gt lacks are errors:
each would silently change what the score covers. Gt is parsed by the converter's own reader under
the benchmark's rules, staged into TrackEval's layout in a temporary folder and scored by the real
`trackeval` package (`MotChallenge2DBox`). Benchmarks differ only in which ground truth counts:

- MOT16/17/20: TrackEval's preprocessing as on the MOTChallenge server (tracker boxes matched to
  distractor classes are removed; only class 1 with conf ≠ 0 is scored).
- DanceTrack, synthetic, custom: only class 1 (pedestrian) rows are ground truth; boxes on anything
  else count as false positives (conf 0 rows are still ignored). DanceTrack and synthetic gt rows
  must all be class 1, as the converter requires.

Values as in the papers: percentages (HOTA, DetA, AssA, … means over TrackEval's 19 α), counts as integers.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import trackeval

from pipeline.data.parquet_io import read_manifest
from pipeline.data.reader import export_motchallenge_gt, list_sequences
from pipeline.data.sequences import unresolved_link
from pipeline.formats import motchallenge as mot
from pipeline.formats.errors import DataError
from pipeline.params import Params
from pipeline.paths import FPS_FILE, METRICS_DIR, atomic_path
from pipeline.steps import submission


class EvaluationError(RuntimeError):
    """TrackEval could not score the inputs (the message carries TrackEval's own output)."""


@dataclass(frozen=True)
class Benchmark:
    name: str
    trackeval_benchmark: str  # TrackEval's BENCHMARK (selects its distractor classes)
    class_one_only: bool  # ground truth = class 1 rows only (no distractor handling)
    rules: str  # which gt rows are valid: the converter's benchmark (`motchallenge.BENCHMARKS`)


BENCHMARKS: dict[str, Benchmark] = {
    b.name.lower(): b
    for b in (
        Benchmark("MOT17", "MOT17", class_one_only=False, rules="mot17"),
        Benchmark("MOT16", "MOT16", class_one_only=False, rules="mot17"),
        Benchmark("MOT20", "MOT20", class_one_only=False, rules="mot17"),
        Benchmark("DanceTrack", "MOT17", class_one_only=True, rules="dancetrack"),
        Benchmark("synthetic", "MOT17", class_one_only=True, rules="synthetic"),
        Benchmark("custom", "MOT17", class_one_only=True, rules="custom"),
    )
}

# dataset.name in params → benchmark
DATASET_BENCHMARK = {
    "synthetic": "synthetic",
    "dancetrack": "DanceTrack",
    "mot17": "MOT17",
    "custom": "custom",
}


def benchmark_of(params: Params) -> str:
    """`evaluate.benchmark`, else the benchmark of `dataset.name`."""
    return params.evaluate.benchmark or DATASET_BENCHMARK[params.dataset.name]


def get_benchmark(name: str) -> Benchmark:
    try:
        return BENCHMARKS[name.lower()]
    except KeyError:
        known = ", ".join(b.name for b in BENCHMARKS.values())
        raise ValueError(f"unknown benchmark {name!r}; known: {known}") from None


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
    """Flat metrics over all sequences (`overall`) and per sequence."""

    benchmark: str
    overall: dict[str, float | int]
    per_sequence: dict[str, dict[str, float | int]] = field(default_factory=dict)


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


def load_results(results_dir: str | Path, sequences: list[GroundTruthSequence]) -> dict[str, np.ndarray]:
    """Validated result rows of every sequence; a missing file is a `MissingSequenceError`."""
    missing = [s.name for s in sequences if not result_file(results_dir, s.name).is_file()]
    if missing:
        raise mot.MissingSequenceError(
            results_dir, f"no result file for sequence(s) {missing} (expected {results_dir}/<seq>.txt)"
        )
    return {s.name: mot.read_results(result_file(results_dir, s.name), s.info.length) for s in sequences}


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
    results: dict[str, np.ndarray],
    benchmark: Benchmark,
    tracker_name: str,
) -> tuple[Path, Path]:
    """Write validated, normalised copies in TrackEval's layout (so its parser sees clean files)."""
    gt_root, trackers_root = tmp / "gt", tmp / "trackers"
    for seq in sequences:
        rows = mot.read_gt(seq.gt_file, seq.info, benchmark.rules)
        if benchmark.class_one_only:
            rows = rows[rows[:, 7] == 1]
        gt_file = gt_root / seq.name / "gt" / "gt.txt"
        gt_file.parent.mkdir(parents=True)
        # Full precision (scores equal those of the original files); identities only relabelled.
        gt_file.write_text(mot.format_gt(mot.compact_ids(rows), decimals=6))
        result = trackers_root / tracker_name / "data" / f"{seq.name}.txt"
        result.parent.mkdir(parents=True, exist_ok=True)
        result.write_text(mot.format_results(mot.compact_ids(results[seq.name]), decimals=6))
    return gt_root, trackers_root


def evaluate_folder(
    gt_dir: str | Path,
    results_dir: str | Path,
    benchmark: str = "synthetic",
    sequences: list[str] | None = None,
) -> Evaluation:
    """Score `results_dir/<seq>.txt` against `gt_dir/<seq>/gt/gt.txt` for every sequence of gt_dir.

    With `sequences` named, other result files are not looked at; without, a result file of a
    sequence gt_dir lacks is an error.
    """
    spec = get_benchmark(benchmark)
    gt_sequences = discover_sequences(gt_dir, sequences)
    if not has_labels(gt_sequences):
        raise FileNotFoundError(
            f"{gt_dir}: no ground-truth labels (gt/gt.txt); a test split gets a submission archive instead"
        )
    if sequences is None:
        check_no_unknown_results(results_dir, gt_sequences, gt_dir)
    results = load_results(results_dir, gt_sequences)
    tracker_name = "tracker"
    with tempfile.TemporaryDirectory(prefix="motrv3-trackeval-") as tmp_name:
        tmp = Path(tmp_name)
        gt_root, trackers_root = _stage(tmp, gt_sequences, results, spec, tracker_name)
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
        metric_config = {"THRESHOLD": 0.5, "PRINT_CONFIG": False}
        log = io.StringIO()
        try:
            with contextlib.redirect_stdout(log):
                evaluator = trackeval.Evaluator(eval_config)
                dataset = trackeval.datasets.MotChallenge2DBox(dataset_config)
                metrics = [
                    trackeval.metrics.HOTA(dict(metric_config)),
                    trackeval.metrics.CLEAR(dict(metric_config)),
                    trackeval.metrics.Identity(dict(metric_config)),
                ]
                output, messages = evaluator.evaluate([dataset], metrics)
        except trackeval.utils.TrackEvalException as error:
            raise EvaluationError(f"TrackEval: {error}\n{log.getvalue()[-2000:]}") from None
    message = messages["MotChallenge2DBox"][tracker_name]
    if message != "Success":
        raise EvaluationError(f"TrackEval: {message}\n{log.getvalue()[-2000:]}")
    res = output["MotChallenge2DBox"][tracker_name]
    per_sequence = {s.name: _flatten(res[s.name]["pedestrian"]) for s in gt_sequences}
    return Evaluation(spec.name, _flatten(res["COMBINED_SEQ"]["pedestrian"]), per_sequence)


def write_metrics_json(evaluation: Evaluation, path: str | Path, **extra: float) -> None:
    """The flat metrics JSON (a DVC metrics file); `extra` numbers such as FPS are added."""
    payload = dict(evaluation.overall)
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


def format_table(evaluation: Evaluation, keys: tuple[str, ...] = HEADLINE_KEYS) -> str:
    rows = [*evaluation.per_sequence.items(), ("COMBINED", evaluation.overall)]
    width = max(len(name) for name, _ in rows)
    lines = [f"{'sequence':<{width}}  " + "  ".join(f"{k:>7}" for k in keys)]
    for name, values in rows:
        cells = [f"{values[k]:>7d}" if isinstance(values[k], int) else f"{values[k]:>7.2f}" for k in keys]
        lines.append(f"{name:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)


def run(
    params: Params,
    results: str | Path,
    dataset_dir: str | Path,
    metrics_dir: str | Path = METRICS_DIR,
    stem: str = "metrics",
    benchmark: str | None = None,
    submission_archive: str | Path | None = None,
) -> Evaluation | Path:
    """Score `results/<seq>.txt` against the converted split's ground truth (exported for TrackEval).

    Labelled: writes `<metrics_dir>/<stem>.json` (+ FPS from the track step's fps.json) and
    `<stem>_per_sequence.csv`, returns the `Evaluation`. Unlabelled (a test split): validates and
    packages the results as `submission_archive` for the benchmark's server and returns its path.
    """
    results, dataset_dir = Path(results), Path(dataset_dir)
    benchmark = benchmark or benchmark_of(params)
    with tempfile.TemporaryDirectory(prefix="motrv3-gt-") as gt_dir:
        labelled = export_motchallenge_gt(dataset_dir, gt_dir)
        if not labelled:
            if submission_archive is None:
                raise FileNotFoundError(f"{dataset_dir}: no ground truth and no submission archive named")
            entries = read_manifest(dataset_dir)["sequences"]
            sequences = [
                GroundTruthSequence(name, mot.SeqInfo(name, entries[name]["last_frame"]), None)
                for name in list_sequences(dataset_dir)
            ]
            submission.make_submission(results, sequences, benchmark, submission_archive)
            return Path(submission_archive)
        unlabelled = sorted(set(list_sequences(dataset_dir)) - set(labelled))
        if unlabelled:
            raise FileNotFoundError(f"{dataset_dir}: sequences {unlabelled} have no ground truth, others do")
        evaluation = evaluate_folder(gt_dir, results, benchmark)
    extra = {}
    fps_file = results / FPS_FILE
    if fps_file.is_file():
        extra["FPS"] = float(json.loads(fps_file.read_text())["fps"])
    metrics_dir = Path(metrics_dir)
    write_metrics_json(evaluation, metrics_dir / f"{stem}.json", **extra)
    write_per_sequence_csv(evaluation, metrics_dir / f"{stem}_per_sequence.csv")
    return evaluation


def main(argv: list[str] | None = None) -> None:
    """`motrv3 evaluate --gt DIR --results DIR`: score any tracker's MOTChallenge result files."""
    parser = argparse.ArgumentParser(
        prog="motrv3 evaluate",
        description="Score MOTChallenge result files (RESULTS/<seq>.txt) against MOTChallenge-layout ground "
        "truth (GT/<seq>/{seqinfo.ini,gt/gt.txt}) with TrackEval; ground truth without labels (a test "
        "split) gets a submission archive instead.",
    )
    parser.add_argument(
        "--gt", required=True, type=Path, help="ground-truth folder, one sub-folder per sequence"
    )
    parser.add_argument("--results", required=True, type=Path, help="folder of <seq>.txt result files")
    parser.add_argument(
        "--benchmark",
        default="synthetic",
        help="MOT17, MOT16, MOT20 (distractor preprocessing), DanceTrack, synthetic, custom (class 1 only); "
        "default: %(default)s",
    )
    parser.add_argument("--json", type=Path, help="write the flat metrics JSON here")
    parser.add_argument("--csv", type=Path, help="write the per-sequence CSV here")
    parser.add_argument(
        "--submission", type=Path, help="archive path for unlabelled ground truth (default: RESULTS.zip)"
    )
    args = parser.parse_args(argv)
    try:
        sequences = discover_sequences(args.gt)
        if not has_labels(sequences):
            archive = args.submission or args.results.with_suffix(".zip")
            names = submission.make_submission(args.results, sequences, args.benchmark, archive)
            print(f"no labels in {args.gt}: wrote submission archive {archive} ({len(names)} files)")
            return
        evaluation = evaluate_folder(args.gt, args.results, args.benchmark)
    except (DataError, FileNotFoundError, ValueError, EvaluationError) as error:
        sys.exit(f"error: {error}")
    if args.json:
        write_metrics_json(evaluation, args.json)
    if args.csv:
        write_per_sequence_csv(evaluation, args.csv)
    print(format_table(evaluation))


if __name__ == "__main__":
    main()
