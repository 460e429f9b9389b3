"""Scoring, below the steps: the TrackEval runner (`trackeval_runner`), the benchmarks' ground-truth
rules (`benchmarks`), scoring against a converted split (`split`), the duplicate diagnostic of a
tracker's false positives (`duplicates`), the detector's AP50 and precision/recall
(`detection_metrics`) and test-server submission archives (`submission`)."""
