"""A row of a study: what a table shows for it and the overrides that train it (`pipeline.studies.sweep`).

Apart from the sweep so that the modules reading trial outputs (`trial_outputs`) can name the type
without importing the sweep, which imports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SweepRow:
    """One row of an ablation table: what it shows (`settings`) and how it is trained (`overrides`)."""

    label: str
    settings: dict[str, Any]
    overrides: tuple[str, ...]
    method: str = "motrv3"  # `motr`: the baseline (pipeline.params.baseline)
    paper_label: str | None = None

    def as_config(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "settings": dict(self.settings),
            "overrides": list(self.overrides),
            "method": self.method,
        }
