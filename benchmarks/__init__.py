"""Speed and memory benchmarks; each writes benchmarks/results/<name>.json (see harness.py)."""
