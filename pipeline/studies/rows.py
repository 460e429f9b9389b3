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


STRATEGIES = ("rfs", "pld", "tgd")


def shown_label(label: str, settings: dict[str, Any]) -> str:
    """A label as figures and notes show it: Table 3's bare row numbers get their strategies
    ("2" → "2 RFS", "5" → "5 RFS+PLD"); every other label as it is."""
    if not label.isdigit():
        return label
    switched = [name.upper() for name in STRATEGIES if settings.get(name) is True]
    return f"{label} {'+'.join(switched)}" if switched else label
