"""The pseudo_labels step (PLD, §3.3): sources → detectors (`pipeline.inference`) → the pseudo-label store; `run(params)`."""

from pipeline.steps.pseudo_labels.driver import run

__all__ = ["run"]
