"""Orchestration of the motrv3 pipeline: params, data IO, Ray, MLflow, TrackEval, reports."""
