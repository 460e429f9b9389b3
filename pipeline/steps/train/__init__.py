"""The train step: `run(params, method)` trains MOTR, MOTRv3 or the PLD detector with Ray Train.

driver (Ray Train run, export) → worker (per-rank loop) → distributed (all-reduce,
gather, seeds) / checkpoints (state in Ray checkpoints) / telemetry (progress + MLflow) / optim.
"""

from pipeline.steps.train.driver import run, run_name
from pipeline.steps.train.methods import METHODS, TrainingError, method_params

__all__ = ["METHODS", "TrainingError", "method_params", "run", "run_name"]
