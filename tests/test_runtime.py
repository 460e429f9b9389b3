"""Process set-up of the pipeline (pipeline.runtime): the allocator setting, threads, the device."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from pipeline.paths import REPO_ROOT
from pipeline.runtime import configure_process, resolve_device, retain_freed_memory


def test_retained_memory_stops_page_faults_on_reuse():
    # In a child process: the setting is process-wide. A 64 MiB tensor allocated ten times costs
    # ~16 000 page faults each time by default (fresh mmap); retained, the heap reuses the block.
    script = textwrap.dedent(
        """
        import resource, sys, torch
        import motrv3.model  # as in the pipeline's processes: the model library loaded first
        from pipeline.runtime import retain_freed_memory
        if sys.argv[1] == "retain":
            assert retain_freed_memory()
        def faults():
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        # The heap settles first: a few of the first allocations extend it, as Python's own small
        # objects land around the block (0-6 of 10 here, by import order); from the second ten on,
        # none does (measured over four rounds).
        for _ in range(10):
            torch.ones(16 << 20)
        start = faults()
        for _ in range(10):
            torch.ones(16 << 20)
        print(faults() - start)
        """
    )
    counts = {}
    for mode in ("default", "retain"):
        done = subprocess.run(
            [sys.executable, "-c", script, mode], capture_output=True, text=True, check=True, cwd=REPO_ROOT
        )
        counts[mode] = int(done.stdout.strip().splitlines()[-1])
    # default: every allocation faults its 16 384 pages in again; retained: the settled heap reuses
    # the block (at most one extension allowed, a page or so of slack besides)
    assert counts["default"] > 10 * 10_000
    assert counts["retain"] < 16_384 + 100


def test_retain_freed_memory_opt_out(monkeypatch):
    monkeypatch.setenv("MOTRV3_RETAIN_FREED_MEMORY", "0")
    assert retain_freed_memory() is False


def test_configure_process_sets_threads_and_device_resolution():
    before = torch.get_num_threads()
    try:
        configure_process(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda:0")
