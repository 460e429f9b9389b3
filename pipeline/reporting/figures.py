"""Figures of the paper from the pipeline's outputs: Fig. 2 and Fig. 6 (label assignment statistics
of training) and Fig. 4 (the scaling study). PNGs go to `reports/figures/`, the DVC plot data to
`reports/plots/*.csv`; every file is written atomically."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from pipeline.paths import MODELS_DIR, REPORTS_DIR, atomic_path  # noqa: E402
from pipeline.reporting.tables import METHOD_LABELS, ReportError, read_json, write_csv  # noqa: E402


@dataclass
class EpochAssignment:
    """Per-epoch label assignment numbers of one training run (one entry of assignment_stats.json)."""

    epoch: int
    detect_share: float  # fraction of labels assigned to detect queries (Fig. 2 c/d)
    track_share: float
    misaligned_share: float | None  # Fig. 6: share of labels whose detect query differs, layer l<L vs L
    # Per detect-query slot: labels matched this epoch, all supervised layers (Fig. 2 a/b).
    activations: list[float]


PREFIX = "assign/"  # key prefix of `AssignmentStats.summary()`


def _number(data: dict, path: Path, *names: str, default: Any = KeyError) -> Any:
    for name in names:
        if name in data:
            return data[name]
    if default is KeyError:
        raise ReportError(f"{path}: field {names[0]!r} missing; have {sorted(data)}")
    return default


def read_assignment_stats(path: str | Path) -> list[EpochAssignment]:
    """`models/<method>/assignment_stats.json` → per-epoch statistics.

    The file (written by `pipeline.steps.train`) holds `{"method", "epochs": [entry, ...]}`, an entry
    being `motrv3.AssignmentStats.summary()` (keys `assign/...`) plus `epoch` and `slot_histogram`.
    """
    path = Path(path)
    data = read_json(path)
    entries = data.get("epochs") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise ReportError(f"{path}: field 'epochs' must be a non-empty list of per-epoch summaries")
    result = []
    for index, entry in enumerate(entries):
        where = Path(f"{path}[epochs][{index}]")
        if not isinstance(entry, dict):
            raise ReportError(f"{where}: expected an object")
        # Fig. 2 c/d: shares over the early (RFS) layers; without aux losses only the last layer exists.
        early = [entry.get(f"{PREFIX}early_det_share"), entry.get(f"{PREFIX}early_track_share")]
        if all(isinstance(v, int | float) for v in early) and sum(early) > 0:
            detect, track = early
        else:
            detect = _number(entry, where, f"{PREFIX}last_det_share")
            track = _number(entry, where, f"{PREFIX}last_track_share")
        histogram = _number(entry, where, "slot_histogram")
        if not isinstance(histogram, list):
            raise ReportError(f"{where}: field 'slot_histogram' must be a list of counts")
        misaligned = entry.get(f"{PREFIX}misaligned_share")
        result.append(
            EpochAssignment(
                epoch=int(_number(entry, where, "epoch", default=index)),
                detect_share=float(detect),
                track_share=float(track),
                misaligned_share=None if misaligned is None else float(misaligned),
                activations=[float(v) for v in histogram],
            )
        )
    return result


def save_figure(fig, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def _wide(x_name: str, series: dict[str, dict[Any, float]], order: Sequence[Any] | None = None) -> list[dict]:
    """Series → one row per x, one column per series: the shape DVC `plots` reads (`y: [col, ...]`)."""
    xs = list(order) if order is not None else sorted({x for values in series.values() for x in values})
    return [{x_name: x, **{name: values.get(x) for name, values in series.items()}} for x in xs]


def figure2(runs: dict[str, list[EpochAssignment]], out_dir: Path = REPORTS_DIR) -> list[Path]:
    """Fig. 2: (a, b) detect-query activation counts without/with RFS; (c, d) label shares per epoch.

    `runs` maps "without RFS"/"with RFS" (or any two labels) to their per-epoch statistics.
    Writes the PNG and the DVC plot data (`plots/fig2_activations.csv`, `plots/fig2_label_shares.csv`,
    one column per run, e.g. `detect_pct_with_rfs_motrv3`).
    """
    labels = list(runs)
    fig, axes = plt.subplots(2, len(labels), figsize=(5 * len(labels), 7), squeeze=False)
    activations: dict[str, dict[int, float]] = {}
    shares: dict[str, dict[int, float]] = {}
    for col, label in enumerate(labels):
        epochs = runs[label]
        slots = max((len(e.activations) for e in epochs), default=0)
        totals = [sum(e.activations[i] for e in epochs if i < len(e.activations)) for i in range(slots)]
        activations[f"activations_{_slug(label)}"] = dict(enumerate(totals))
        ax = axes[0][col]
        ax.bar(range(slots), totals, color="tab:blue" if col == 0 else "tab:orange")
        ax.set_title(f"({'ab'[col] if col < 2 else col}) detect-query activations, {label}")
        ax.set_xlabel("detect query id")
        ax.set_ylabel("labels matched, all supervised layers")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax = axes[1][col]
        xs = [e.epoch for e in epochs]
        ax.plot(xs, [100 * e.detect_share for e in epochs], marker="o", label="detect queries")
        ax.plot(xs, [100 * e.track_share for e in epochs], marker="s", label="track queries")
        ax.set_ylim(0, 100)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"({'cd'[col] if col < 2 else col}) label share, {label}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("% of box labels")
        ax.legend()
        shares[f"detect_pct_{_slug(label)}"] = {e.epoch: 100 * e.detect_share for e in epochs}
        shares[f"track_pct_{_slug(label)}"] = {e.epoch: 100 * e.track_share for e in epochs}
    top = max((max(v.values(), default=0) for v in activations.values()), default=0)
    for ax in axes[0]:
        ax.set_ylim(0, max(top, 1) * 1.05)  # same scale left and right: the counts are compared
    fig.tight_layout()
    return [
        save_figure(fig, Path(out_dir) / "figures" / "fig2_label_assignment.png"),
        write_csv(Path(out_dir) / "plots" / "fig2_activations.csv", _wide("query", activations)),
        write_csv(Path(out_dir) / "plots" / "fig2_label_shares.csv", _wide("epoch", shares)),
    ]


def figure6(runs: dict[str, list[EpochAssignment]], out_dir: Path = REPORTS_DIR) -> list[Path]:
    """Fig. 6: share of misaligned detect-query labels (layer l < L vs the last layer) per epoch."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    series: dict[str, dict[int, float]] = {}
    for label, epochs in runs.items():
        points = [(e.epoch, 100 * e.misaligned_share) for e in epochs if e.misaligned_share is not None]
        if not points:
            continue
        ax.plot(*zip(*points, strict=True), marker="o", label=label)
        series[f"misaligned_pct_{_slug(label)}"] = dict(points)
    if not series:
        plt.close(fig)
        raise ReportError("Fig. 6: no run has 'misaligned_share' in its assignment statistics")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("misaligned labels (%)")
    ax.set_title("Fig. 6: matching diversity during training")
    ax.legend()
    fig.tight_layout()
    return [
        save_figure(fig, Path(out_dir) / "figures" / "fig6_misalignment.png"),
        write_csv(Path(out_dir) / "plots" / "fig6_misalignment.csv", _wide("epoch", series)),
    ]


def figure4(
    points: Sequence[dict[str, Any]], backbones: Sequence[str], title_note: str, out_dir: Path = REPORTS_DIR
) -> list[Path]:
    """Fig. 4: HOTA per backbone, one line per method. `points`: {method, backbone, HOTA, ...}."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    series: dict[str, dict[str, float]] = {}
    for method in dict.fromkeys(p["method"] for p in points):
        by_backbone = {p["backbone"]: p["HOTA"] for p in points if p["method"] == method}
        series[f"HOTA_{method}"] = by_backbone
        xs = [i for i, b in enumerate(backbones) if b in by_backbone]
        ax.plot(
            xs, [by_backbone[backbones[i]] for i in xs], marker="o", label=METHOD_LABELS.get(method, method)
        )
    ax.set_xticks(range(len(backbones)), list(backbones), rotation=15)
    ax.set_ylabel("HOTA (%)")
    ax.set_title(f"Fig. 4: model scaling up ({title_note})")
    ax.legend()
    fig.tight_layout()
    return [
        save_figure(fig, Path(out_dir) / "figures" / "fig4_scaling.png"),
        write_csv(Path(out_dir) / "plots" / "fig4_scaling.csv", _wide("backbone", series, order=backbones)),
    ]


def assignment_figures(root: Path = Path("."), out_dir: Path = REPORTS_DIR) -> list[Path]:
    """Fig. 2 and Fig. 6 from the trained baseline (without RFS) and MOTRv3 (with RFS)."""
    runs = {
        "without RFS (MOTR)": read_assignment_stats(root / MODELS_DIR / "motr" / "assignment_stats.json"),
        "with RFS (MOTRv3)": read_assignment_stats(root / MODELS_DIR / "motrv3" / "assignment_stats.json"),
    }
    return figure2(runs, out_dir) + figure6(runs, out_dir)
