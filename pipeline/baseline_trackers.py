"""Tracking-by-detection baselines (Table 1's ByteTrack / OC-SORT / SORT rows), one table.

A baseline tracker is anything with the `BaselineTracker` protocol (roboflow's `BaseTracker`:
`update(detections) -> detections` with `tracker_id`, `reset()`), built from numeric keywords.
`TRACKERS` lists them; the params schema (`baselines.trackers`), the report labels and the
baselines stage's outputs in dvc.yaml derive from it. A baseline of our own is one entry whose
`module` is ours.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class BaselineTracker(Protocol):
    def update(self, detections: Any) -> Any:
        """One frame's `supervision.Detections` → those tracked, `tracker_id` −1 when unconfirmed."""

    def reset(self) -> None:
        """Forget every track (a new sequence starts)."""


@dataclass(frozen=True)
class TrackerSpec:
    name: str  # `baselines.trackers` entry, results/<name>/, metrics/<name>.json
    label: str  # the row label of Table 1
    class_name: str
    package: str = "trackers"  # the distribution that provides it (recorded with its version)
    module: str | None = None  # where the class lives; None: the package itself

    def tracker_class(self) -> type:
        return getattr(importlib.import_module(self.module or self.package), self.class_name)

    def package_version(self) -> str:
        return version(self.package)


TRACKERS: dict[str, TrackerSpec] = {
    spec.name: spec
    for spec in (
        TrackerSpec("bytetrack", "ByteTrack", "ByteTrackTracker"),
        TrackerSpec("ocsort", "OC-SORT", "OCSORTTracker"),
        TrackerSpec("sort", "SORT", "SORTTracker"),
    )
}
TRACKER_NAMES = tuple(TRACKERS)  # the schema's choices (pipeline.params.BaselinesParams.trackers)


def get_tracker(name: str) -> TrackerSpec:
    if name not in TRACKERS:
        raise ValueError(f"baselines.trackers: unknown tracker {name!r}; known: {sorted(TRACKERS)}")
    return TRACKERS[name]


def tracker_settings(name: str, overrides: dict[str, float | int], frame_rate: float) -> dict[str, Any]:
    """Constructor keywords: the tracker's defaults, the sequence's frame rate, then `overrides`."""
    spec = get_tracker(name)
    signature = inspect.signature(spec.tracker_class())
    # Numeric keywords only (iou / state_estimator_class take objects and keep their defaults).
    defaults = {
        key: p.default
        for key, p in signature.parameters.items()
        if isinstance(p.default, int | float) and not isinstance(p.default, bool)
    }
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ValueError(
            f"baselines.tracker_args.{name}: unknown keyword(s) {unknown}; "
            f"{spec.package} {spec.package_version()} {spec.class_name} takes {sorted(defaults)}"
        )
    return {**defaults, "frame_rate": float(frame_rate), **overrides}


def make_tracker(name: str, settings: dict[str, Any]) -> BaselineTracker:
    return get_tracker(name).tracker_class()(**settings)
