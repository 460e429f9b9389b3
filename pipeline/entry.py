"""One way to start a command: the parser, the shared options and the error handler of every entry point.

An entry point is a module with `main(argv=None)`: a DVC stage (`python -m stages.<name>`) or a
`motrv3` command (`pipeline.commands.<name>`, dispatched by `pipeline.cli`). It builds its parser
here (`command_parser`: `--params`/`--set` and `--verbose`), takes the shared options under one name
each (`--clips-dir`, `--split`, `--metrics-dir`, `--no-progress`), does its work through a step or
the library, and reports a user's error (bad input, a missing file) through `user_errors`:
`error: <message>` and exit status 1, no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator

from pipeline.console import add_console_arguments
from pipeline.params import DEFAULT_PARAMS_FILE, Params, ParamsError, load_params
from pipeline.paths import CLIPS_DIR, METRICS_DIR


@contextlib.contextmanager
def user_errors(*errors: type[BaseException], hint: str = "") -> Iterator[None]:
    """Exceptions of `errors` leave as `sys.exit("error: <message><hint>")`; others propagate.

    Inside `pipeline.console.stage_console` the exit also names the stage's log.
    """
    try:
        yield
    except errors as error:
        sys.exit(f"error: {error}{hint}")


def add_params_arguments(parser: argparse.ArgumentParser) -> None:
    """`--params FILE` and `--set KEY=VALUE` (repeatable)."""
    parser.add_argument(
        "--params", default=str(DEFAULT_PARAMS_FILE), help="params file (default: %(default)s)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one param for this run, e.g. --set tgd.groups=5 (repeatable)",
    )


def params_from_args(args: argparse.Namespace) -> Params:
    with user_errors(ParamsError):
        return load_params(args.params, args.overrides)


def command_parser(prog: str, doc: str, params: bool = True, console: bool = True) -> argparse.ArgumentParser:
    """A parser described by the first line of `doc`, with the params and console options."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.strip().splitlines()[0])
    if params:
        add_params_arguments(parser)
    if console:
        add_console_arguments(parser)
    return parser


def add_clips_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--clips-dir", default=str(CLIPS_DIR), help="converted datasets folder (default: %(default)s)"
    )


def add_split(parser: argparse.ArgumentParser, default: str) -> None:
    """`--split NAME`; `default` says which params key applies without it."""
    parser.add_argument("--split", default=None, help=f"split under the clips folder (default: {default})")


def add_metrics_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-dir", default=str(METRICS_DIR), help="where metrics go (default: %(default)s)"
    )


def add_no_progress(parser: argparse.ArgumentParser, help: str = "no progress bar") -> None:
    parser.add_argument("--no-progress", action="store_true", help=help)
