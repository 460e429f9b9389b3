"""Studies that are not a paper table: rows of overrides on top of every strategy switched off.

The strategies study (issue #24, docs/strategies.md, `make strategies-study`) runs each reading of
a strategy on its own through the same Ray Tune sweep as Tables 3-5 (`pipeline.studies.sweep`),
and writes `reports/<name>.{md,csv}` with mean ± std over the seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pipeline import paths
from pipeline.params import DEFAULT_PARAMS_FILE, Params, switch_overrides
from pipeline.reporting.paper_results import METRICS
from pipeline.reporting.tables import Comparison, write_comparison
from pipeline.studies.sweep import DEFAULT_RUNNER, SweepError, SweepOutcome, SweepRow, run_sweep
from pipeline.studies.trial_outputs import rows_dir_of
from pipeline.studies.trial_reports import measured_notes, sweep_figures

# The strategies study (issue #24, docs/strategies.md): each reading of a strategy on its own, from
# one command (`make strategies-study`). Label → overrides on top of every strategy switched off.
STRATEGY_STUDY: dict[str, tuple[str, ...]] = {
    "Base (MOTR)": (),
    "RFS literal": ("rfs.enabled=true", "rfs.reading=literal"),
    "RFS keep_identity": ("rfs.enabled=true", "rfs.reading=keep_identity"),
    "PLD": ("pld.enabled=true", "pld.reading=literal"),
    "PLD track_aware": ("pld.enabled=true", "pld.reading=track_aware"),
    "TGD (sum)": ("tgd.enabled=true", "tgd.reduce=sum"),
    "TGD (mean)": ("tgd.enabled=true", "tgd.reduce=mean"),
    "TGD (mean, one-way mask)": ("tgd.enabled=true", "tgd.reduce=mean", "tgd.mask=one_way"),
    "RFS keep_identity + PLD + TGD (mean)": (
        "rfs.enabled=true", "rfs.reading=keep_identity", "pld.enabled=true", "pld.reading=literal",
        "tgd.enabled=true", "tgd.reduce=mean",
    ),
    "RFS keep_identity + PLD track_aware + TGD (mean)": (
        "rfs.enabled=true", "rfs.reading=keep_identity", "pld.enabled=true", "pld.reading=track_aware",
        "tgd.enabled=true", "tgd.reduce=mean",
    ),
}  # fmt: skip
_RFS = ("rfs.enabled=true", "rfs.reading=keep_identity")


def _pld(reading: str) -> tuple[str, ...]:
    return ("pld.enabled=true", f"pld.reading={reading}", "pld.sources=[detfile]")


_PLD = _pld("track_aware")
_TGD = ("tgd.enabled=true", "tgd.reduce=mean")
# Table 3's six rows at the cpu profile's readings and teacher (README "Duplicate births and the six
# rows"), and the diagnostics beside them. Labels are part of a trial's key: keep them as they are.
STRATEGY_STUDY |= {
    "RFS": _RFS,
    "PLD detfile": _PLD,
    "TGD": _TGD,
    "RFS+PLD detfile": (*_RFS, *_PLD),
    "MOTRv3 detfile": (*_RFS, *_PLD, *_TGD),
    "TGD+PLD detfile": (*_PLD, *_TGD),
    "MOTRv3 consistent": (*_RFS, *_pld("consistent"), *_TGD),
    "PLD consistent": _pld("consistent"),
    "RFS+PLD consistent": (*_RFS, *_pld("consistent")),
    # TGD's mask readings (docs/strategies.md, "TGD"), alone and in the full method
    "TGD replica mask": (*_TGD, "tgd.mask=replica"),
    "MOTRv3 consistent one_way": (*_RFS, *_pld("consistent"), *_TGD, "tgd.mask=one_way"),
    "MOTRv3 consistent replica": (*_RFS, *_pld("consistent"), *_TGD, "tgd.mask=replica"),
    "MOTRv3 consistent sum": (*_RFS, *_pld("consistent"), "tgd.enabled=true", "tgd.reduce=sum"),
    # Table 5's reference-point noise inside the full method: off, and above the default 0.4
    "MOTRv3 consistent no noise": (*_RFS, *_pld("consistent"), *_TGD, "tgd.noise=false"),
    "MOTRv3 consistent noise 0.6": (*_RFS, *_pld("consistent"), *_TGD, "tgd.noise_scale=0.6"),
    "MOTRv3 consistent noise 0.8": (*_RFS, *_pld("consistent"), *_TGD, "tgd.noise_scale=0.8"),
    # Training keeps an unmatched query as an identity-less track from the profile's birth score
    # rather than MOTRv2's 0.5, so training meets the duplicate tracks inference makes (README,
    # "Training on its own duplicate tracks")
    "Base fp0.25": ("tracking.fp_score_threshold=0.25",),
    "MOTRv3 fp0.25": (*_RFS, *_pld("consistent"), *_TGD, "tracking.fp_score_threshold=0.25"),
    # Twice the default budget (the lr drop at the same fraction): does the gap grow with training?
    "Base 10 epochs": ("train.epochs=10", "train.lr_drop=8"),
    "MOTRv3 10 epochs": (*_RFS, *_pld("consistent"), *_TGD, "train.epochs=10", "train.lr_drop=8"),
}
# What `make strategies-study` (no --row) runs: Table 3's six rows at the cpu profile's readings (PLD
# `consistent` since 2026-12-07). The `detfile` rows are the same with PLD `track_aware`.
DEFAULT_ROWS = (
    "Base (MOTR)", "RFS", "PLD consistent", "TGD", "RFS+PLD consistent", "MOTRv3 consistent",
)  # fmt: skip


def parse_row(spec: str) -> SweepRow:
    """`LABEL=key=value,key=value` (or a label of STRATEGY_STUDY) → a row on top of all strategies off."""
    label, _, rest = spec.partition("=")
    label = label.strip()
    if not rest:
        if label not in STRATEGY_STUDY:
            raise SweepError(
                f"--row {spec!r}: not a study row {sorted(STRATEGY_STUDY)} nor LABEL=key=value,..."
            )
        overrides = STRATEGY_STUDY[label]
    else:
        overrides = tuple(part.strip() for part in rest.split(",") if part.strip())
    return SweepRow(label=label, settings={"overrides": " ".join(overrides)},
                    overrides=(*switch_overrides(False, False, False), *overrides))  # fmt: skip


def run_study(
    name: str,
    rows: Sequence[SweepRow],
    params: Params,
    *,
    params_file: str | Path = DEFAULT_PARAMS_FILE,
    base_overrides: Sequence[str] = (),
    seeds: Sequence[int] | None = None,
    runner: str = DEFAULT_RUNNER,
    root: Path | None = None,
    reports_dir: Path | None = None,
) -> tuple[SweepOutcome, list[Path]]:
    """Rows that are not a paper table (e.g. the strategies study): the sweep and reports/<name>.{md,csv}."""
    root = Path(root or Path.cwd()).resolve()
    outcome = run_sweep(name, rows, params, params_file=params_file, base_overrides=base_overrides,
                        seeds=seeds, runner=runner, root=root, parent_tags={"study": name})  # fmt: skip
    split = params.sweep.split or params.dataset.eval_split
    rows_dir = rows_dir_of(params, root, name)
    seeds_run = sorted({int(t["seed"]) for t in outcome.trials})
    comparison = Comparison(
        name=name,
        title=f"Study {name}: each row's overrides on top of RFS, PLD and TGD off",
        measured_context=f"{params.dataset.name} {split}, profile {params.profile}, seeds {seeds_run}",
        columns=("overrides",),
        metrics=METRICS,
        measured=outcome.rows,
        measured_notes=measured_notes(outcome, rows_dir),
        notes=[f"MLflow: parent run `{name}` ({outcome.parent_run_id}) with one child run per trial."],
    )
    out_dir = reports_dir or root / paths.REPORTS_DIR
    written = list(write_comparison(comparison, out_dir))
    return outcome, written + sweep_figures(name, rows, rows_dir, out_dir)
