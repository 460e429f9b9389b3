"""Inference over a converted split, below the steps: a tracker checkpoint over every sequence
(`split_tracking`, the track step and validation) and detection models over every frame
(`detectors`, pseudo labels and the baselines' boxes)."""
