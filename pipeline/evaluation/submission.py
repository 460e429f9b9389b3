"""Submission archives for benchmark test servers (test splits have no public labels).

Both servers take one zip with one MOTChallenge result file per sequence at the archive's root,
named exactly like the sequence (case sensitive), 10 values per row (motchallenge.net/instructions;
DanceTrack's CodaLab server uses the same format: `dancetrack0003.txt`, ...). MOT17 scores every
test sequence three times, once per public detection set, so it needs `MOT17-01-DPM.txt`,
`MOT17-01-FRCNN.txt` and `MOT17-01-SDP.txt`: a tracker without public detections (ours) submits the
same results under the three names.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from pipeline.formats import motchallenge as mot
from pipeline.paths import RESULTS_DIR, atomic_path

_MOT17_NAME = re.compile(r"(MOT17-\d{2})(?:-(DPM|FRCNN|SDP))?")


def submission_path(method: str, split: str) -> Path:
    """Where the evaluate stage puts a test split's archive."""
    return RESULTS_DIR / method / f"{split}-submission.zip"


def submission_names(benchmark: str, sequences: list[str]) -> dict[str, str]:
    """Archive member name (without .txt) → the sequence whose result file it carries."""
    if benchmark.lower() != "mot17":
        return {name: name for name in sequences}
    variants: dict[str, dict[str | None, str]] = {}
    for name in sequences:
        match = _MOT17_NAME.fullmatch(name)
        if match is None:
            raise ValueError(f"sequence {name!r}: not a MOT17 name (MOT17-NN or MOT17-NN-{{DPM,FRCNN,SDP}})")
        variants.setdefault(match.group(1), {})[match.group(2)] = name
    names: dict[str, str] = {}
    for base, present in sorted(variants.items()):
        fallback = next(iter(present.values()))
        for detector in mot.MOT17_DETECTORS:
            names[f"{base}-{detector}"] = present.get(detector, fallback)
    return names


def make_submission(
    results_dir: str | Path,
    sequences: list,
    benchmark: str,
    archive: str | Path,
) -> list[str]:
    """Validate `results_dir/<seq>.txt` for every sequence and zip them in the server's layout.

    `sequences`: names, or `pipeline.evaluation.trackeval_runner.GroundTruthSequence`s (then
    frames are checked against the sequence length too). Returns the archive's member names. Written atomically.
    """
    results_dir = Path(results_dir)
    lengths = {}
    for seq in sequences:
        if isinstance(seq, str):
            lengths[seq] = None
        else:
            lengths[seq.name] = seq.info.length
    missing = [name for name in lengths if not (results_dir / f"{name}.txt").is_file()]
    if missing:
        raise mot.MissingSequenceError(
            results_dir, f"no result file for sequence(s) {missing} (expected {results_dir}/<seq>.txt)"
        )
    texts = {
        # The servers' 2D format: x, y, z (columns 8-10) are -1.
        name: mot.format_results(mot.read_results(results_dir / f"{name}.txt", length)[:, :7])
        for name, length in lengths.items()
    }
    members = []
    with (
        atomic_path(archive, suffix=".zip") as tmp,
        zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as bundle,
    ):
        for member, source in submission_names(benchmark, list(lengths)).items():
            bundle.writestr(f"{member}.txt", texts[source])
            members.append(f"{member}.txt")
    return members
