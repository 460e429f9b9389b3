"""What a stage shows a person: its own progress and summary on the console, everything else in a log.

`stage_console(name)` wraps a stage's work. Inside it the console (the `sys.stdout` of entry)
receives only `say(...)` lines and `Progress` bars; `sys.stdout`, `sys.stderr` and file
descriptor 2 go to `logs/<name>.log`, so Ray's forwarded worker and controller output, C++ logs,
warnings and library INFO lines land there and not between the stage's lines. A failure prints
the root cause (unwrapped from Ray's exception chain) and the log's path; the traceback is in
the log. `--verbose` or `MOTRV3_VERBOSE=1` turns all of this off (everything on the console).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

VERBOSE_ENV = "MOTRV3_VERBOSE"
LOG_DIR_ENV = "MOTRV3_LOG_DIR"  # default: logs/ under the working directory (the repo under DVC)
DEFAULT_LOG_DIR = Path("logs")

_console: IO[str] | None = None  # the console while a stage_console is active
_log: IO[str] | None = None


def add_console_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verbose",
        action="store_true",
        help=f"show Ray's and the libraries' output on the console too (or {VERBOSE_ENV}=1)",
    )


def verbose_requested(flag: bool = False) -> bool:
    return flag or os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def stream() -> IO[str]:
    """Where progress goes: the console of the active stage, else stderr."""
    return _console if _console is not None else sys.stderr


def say(text: str = "") -> None:
    """A line for the person running the stage (also kept in the stage's log)."""
    out = _console if _console is not None else sys.stdout
    print(text, file=out, flush=True)
    if _log is not None:
        print(text, file=_log, flush=True)


def is_terminal() -> bool:
    isatty = getattr(stream(), "isatty", None)
    return bool(isatty and isatty())


class Progress:
    """One unit of work: a live bar on a terminal, else one plain line when it closes."""

    def __init__(self, desc: str, total: int | None, unit: str = "it", initial: int = 0, live: bool = True):
        from tqdm import tqdm

        self.desc, self.total, self.unit, self.count = desc, total, unit, initial
        self.postfix: dict[str, Any] = {}
        self.started = time.perf_counter()
        self.live = live and is_terminal()
        self.bar = (
            tqdm(
                total=total,
                initial=initial,
                desc=desc,
                unit=unit,
                file=stream(),
                leave=True,
                dynamic_ncols=True,
            )
            if self.live
            else None
        )
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.count += n
        if self.bar is not None:
            self.bar.update(n)

    def set_postfix(self, **values: Any) -> None:
        self.postfix = values
        if self.bar is not None:
            self.bar.set_postfix(**values)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.bar is not None:
            self.bar.close()
            if _log is not None:
                print(self.line(), file=_log, flush=True)
            return
        say(self.line())

    def line(self) -> str:
        done = f"{self.count}/{self.total}" if self.total is not None else str(self.count)
        extra = "".join(f", {k} {v}" for k, v in self.postfix.items())
        return f"{self.desc}: {done} {self.unit}{extra} ({time.perf_counter() - self.started:.1f} s)"

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def root_cause(error: BaseException) -> BaseException:
    """The exception that started it: through Ray Train's worker/controller failures, Ray task
    errors (`.cause`) and `raise ... from` chains."""
    seen: set[int] = set()
    while id(error) not in seen:
        seen.add(id(error))
        failures = getattr(error, "worker_failures", None)  # Ray Train V2 WorkerGroupError
        if isinstance(failures, dict) and failures:
            error = failures[min(failures)]
            continue
        following = None
        # ControllerError, Ray Train's UserExceptionWithTraceback (a worker's error), RayTaskError
        for attribute in ("controller_failure", "_base_exc", "cause"):
            candidate = getattr(error, attribute, None)
            if isinstance(candidate, BaseException):
                following = candidate
                break
        following = following or error.__cause__
        if following is None:
            break
        error = following
    return error


def describe(error: BaseException, max_lines: int = 6) -> str:
    """`Type: message`, without a remote traceback Ray may have put into the message."""
    name = type(error).__name__
    for prefix in ("RayTaskError(", "TaskError("):  # Ray's dual classes: RayTaskError(RuntimeError)
        if name.startswith(prefix):
            name = name[len(prefix) : -1]
    lines = [line for line in str(error).splitlines() if line.strip()]
    if "Traceback (most recent call last):" in lines:
        lines = lines[-1:]  # Ray's message carries the remote traceback: its last line is the error
    text = "\n  ".join(lines[:max_lines])
    return f"{name}: {text}" if text else name


def log_path(name: str) -> Path:
    return Path(os.environ.get(LOG_DIR_ENV) or DEFAULT_LOG_DIR) / f"{name}.log"


def _shutdown_ray_if_started(was_running: bool) -> None:
    ray = sys.modules.get("ray")
    if ray is not None and not was_running and ray.is_initialized():
        ray.shutdown()  # inside the redirection: Ray's shutdown messages go to the log too


def _ray_running() -> bool:
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


@contextlib.contextmanager
def stage_console(name: str, verbose: bool = False) -> Iterator[Path | None]:
    """Run a stage with a clean console and a full log in `logs/<name>.log` (see the module doc).

    Yields the log path (None when verbose). A `sys.exit("error: ...")` keeps its message (the
    log's path is added); any other exception becomes such an exit with its root cause.
    """
    global _console, _log
    if verbose_requested(verbose) or _console is not None:  # verbose, or nested in another stage
        yield None
        return
    path = log_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    log = open(path, "w", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115 - closed below
    started = time.perf_counter()
    print(
        f"# {name}: {' '.join(sys.argv)}\n# started {datetime.datetime.now().isoformat(timespec='seconds')}",
        file=log,
    )
    console, saved_stdout, saved_stderr = sys.stdout, sys.stdout, sys.stderr
    for handle in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            handle.flush()
    saved_fd2 = os.dup(2)
    ray_was_running = _ray_running()
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    _console, _log = console, log
    say(f"▶ {name}")
    outcome: BaseException | None = None
    try:
        try:
            yield path
        finally:
            with contextlib.suppress(Exception):
                _shutdown_ray_if_started(ray_was_running)
    except SystemExit as exit_:
        outcome = exit_
        if isinstance(exit_.code, str):
            print(exit_.code, file=log)
            outcome = SystemExit(f"{exit_.code}\n  full log: {path}")
    except KeyboardInterrupt as interrupt:
        traceback.print_exc(file=log)
        outcome = interrupt
    except BaseException as error:  # noqa: BLE001 - reported as the stage's error, traceback in the log
        traceback.print_exc(file=log)
        outcome = SystemExit(f"error: {name} failed: {describe(root_cause(error))}\n  full log: {path}")
    finally:
        with contextlib.suppress(Exception):
            log.flush()
        os.dup2(saved_fd2, 2)
        os.close(saved_fd2)
        sys.stdout, sys.stderr = saved_stdout, saved_stderr
        _console = _log = None
    if outcome is None:
        print(f"{name} done in {time.perf_counter() - started:.0f} s · log: {path}", file=console, flush=True)
        print("# finished", file=log)
    log.close()
    if outcome is not None:
        raise outcome from None
