"""Docs cannot go stale: every repository path, module, params key and link that README.md and
docs/*.md name must exist.

What a doc names, and how it is checked:
- paths: `code spans` without spaces that start at a top-level entry of the repository (or name a
  source file, `*.py`/`*.cpp`/…, bare or package-relative: some file of the repository must end so),
  the same paths in prose and in command lines, and markdown links (relative to the doc). A path
  under a generated root (what .gitignore and dvc.yaml's outs name, plus `GENERATED_EXTRA`) exists
  only after a run: only its root is checked. Placeholders (`<method>`, `*`, `{a,b}`) match any
  name. `file.py::test_x` needs the test function too. Absolute paths are not the repository's.
- modules: `motrv3.…`, `pipeline.…`, `stages.…`, `benchmarks.…` spans and `python -m` modules; each
  attribute must be defined in the module (read with `ast`, imports followed, nothing imported).
- params keys: `section.key` spans (also `key=value`, `key: value`, `-S`/`--set key=value`) whose
  section is a params section, and the keys of YAML blocks made of params sections, resolved
  against the pydantic schema `pipeline.params.Params`. `train.run` style names of a step's
  function (`pipeline.steps.train.run`) are modules, not keys.
- anchors: `#heading` links, against the target doc's headings.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
import re
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from pipeline.params import Params

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

# Roots that exist only after a run, beyond .gitignore's and dvc.yaml's outputs (reason each).
GENERATED_EXTRA = {
    "weights": "the paper profile's downloaded checkpoints and detections (docs/reproducing.md)",
    "dvc_plots": "`dvc plots show` output",
}
# Files a command writes into a source directory, not there until it has run (reason each).
WRITTEN_BY_COMMANDS = {
    "benchmarks/results/gpu_check.json": "`make gpu-check`, on a machine with CUDA",
}
# Files of other projects that the docs compare against (MOTR / MOTRv2 sources).
EXTERNAL = {"submit_dance.py", "models/motr.py", "models/qim.py", "models/backbone.py"}
# Source files: a bare or package-relative name of one must be some file of the repository.
SOURCE_EXTENSIONS = (".py", ".cpp", ".cu", ".h")
# File extensions: a dotted name ending in one is a file name, not a module or params key.
EXTENSIONS = {
    "py", "md", "yaml", "yml", "json", "toml", "txt", "csv", "ini", "db", "pt", "pth", "png", "jpg",
    "mp4", "zip", "onnx", "parquet", "safetensors", "sh", "log", "cfg", "html", "odgt",
}  # fmt: skip
MODULE_ROOTS = ("motrv3", "pipeline", "stages", "benchmarks")
# Where a `section.run`-style shorthand of a step function may live (docs/architecture.md).
STEP_PACKAGES = ("pipeline.steps", "pipeline.studies", "stages")

KEY = r"[a-z_][a-z0-9_]*(?:\.(?:[A-Za-z_]\w*|\*))+"
SPAN = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)\s*(\w*)")
OVERRIDE = re.compile(rf"(?:-S|--set)\s+({KEY})=")
PYTHON_M = re.compile(rf"python\d?(?:\.\d+)? -m ((?:{'|'.join(MODULE_ROOTS)})(?:\.\w+)*)")
MODULE_REF = re.compile(rf"\b((?:{'|'.join(MODULE_ROOTS)})(?:\.\w+)+)")
SPAN_MODULE = re.compile(rf"((?:{'|'.join(MODULE_ROOTS)})(?:\.\w+)+)\.?…?(?=$|\()")  # `a.b.c`, `a.b(…)`
PLACEHOLDER = re.compile(r"<[^>]*>|…|\*+")


@functools.cache
def generated_roots() -> frozenset[str]:
    """Top-level names a pipeline run, `make setup` or a download creates (never in git)."""
    roots = set(GENERATED_EXTRA)
    for line in (REPO / ".gitignore").read_text().splitlines():
        entry = line.strip()
        if entry and not entry.startswith(("#", "!")) and not any(c in entry for c in "*?["):
            roots.add(entry.strip("/").split("/")[0])
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    for stage in dvc["stages"].values():
        stage = stage.get("do", stage)
        for kind in ("outs", "metrics", "plots"):
            for out in stage.get(kind, []):
                name = out if isinstance(out, str) else next(iter(out))
                roots.add(name.split("/")[0])
    return frozenset(roots)


@functools.cache
def top_level() -> frozenset[str]:
    """The repository's own top-level entries (what a repository path starts with)."""
    return frozenset(p.name for p in REPO.iterdir() if p.name not in generated_roots() and p.name != ".git")


@functools.cache
def repo_files() -> tuple[str, ...]:
    """Every file of the repository (generated roots, caches and .git left out), repo-relative."""
    skip = generated_roots() | {".git", ".dvc"}
    found = []
    for root, dirs, files in os.walk(REPO):
        rel = Path(root).relative_to(REPO)
        dirs[:] = [d for d in dirs if not (rel == Path(".") and d in skip) and not d.endswith(".egg-info")]
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        found.extend((rel / name).as_posix() for name in files)
    return tuple(found)


# --- paths -------------------------------------------------------------------------------------


def expand_braces(text: str) -> list[str]:
    match = re.search(r"\{([^{}]*)\}", text)
    if not match:
        return [text]
    head, tail = text[: match.start()], text[match.end() :]
    return [out for option in match.group(1).split(",") for out in expand_braces(head + option + tail)]


def _exists(rel: str) -> bool:
    """`rel` (repo-relative, placeholders allowed; a trailing / asks for a directory) exists."""
    want_dir = rel.endswith("/")
    rel = rel.rstrip("/")
    if PLACEHOLDER.search(rel):
        pattern = PLACEHOLDER.sub("*", rel)
        matches = list(REPO.glob(pattern))
        return any(m.is_dir() for m in matches) if want_dir else bool(matches)
    path = REPO / rel
    return path.is_dir() if want_dir else path.exists()


def _test_exists(file: Path, node: str) -> bool:
    tree = ast.parse(file.read_text())
    scope: list[ast.stmt] = tree.body
    for name in node.split("::"):
        name = name.split("[")[0]
        found = next(
            (s for s in scope if isinstance(s, ast.FunctionDef | ast.ClassDef) and s.name == name), None
        )
        if found is None:
            return False
        scope = found.body if isinstance(found, ast.ClassDef) else []
    return True


def path_problem(token: str, base: Path = REPO) -> str | None:
    """Why repository path `token` (relative to `base`) is stale; None if it exists or is no repo path."""
    token, _, node = token.partition("::")
    token = re.sub(r":\d+(?::\d+)?$", "", token)  # file.py:12
    if token in EXTERNAL or token in WRITTEN_BY_COMMANDS:
        return None
    if base != REPO:
        try:
            token = (base / token).resolve().relative_to(REPO).as_posix() + (
                "/" if token.endswith("/") else ""
            )
        except ValueError:
            return "points outside the repository"
    for candidate in expand_braces(token):
        first = candidate.split("/")[0]
        if first in generated_roots():
            continue  # exists after a run; the root is a known output
        if first == "":
            continue  # an absolute path: outside the repository
        if first in top_level():
            if not _exists(candidate):
                return "no such file or directory"
            if node and not _test_exists(REPO / candidate, node):
                return f"{candidate} has no test {node}"
        elif candidate.endswith(SOURCE_EXTENSIONS) and not PLACEHOLDER.search(candidate):
            # A bare module name or a path relative to a package (docs/architecture.md's table).
            suffix = "/" + candidate
            if not any(("/" + f).endswith(suffix) for f in repo_files()):
                return "no file of the repository has this name"
    return None


def link_problem(target: str, base: Path) -> str | None:
    """A markdown link names a path for sure: it exists, or lies under a generated root."""
    try:
        rel = (base / target).resolve().relative_to(REPO).as_posix()
    except ValueError:
        return "points outside the repository"
    if rel.split("/")[0] in generated_roots():
        return None
    return path_problem(rel) or (None if _exists(rel) else "no such file or directory")


def looks_like_path(token: str) -> bool:
    if not token or any(c.isspace() for c in token) or "://" in token or token.startswith(("-", "$", "~")):
        return False
    return "/" in token or token.rsplit(".", 1)[-1] in EXTENSIONS and "." in token


# Repository paths in prose and command lines: they start at one of the repo's own top-level dirs.
def rooted_paths(text: str) -> list[str]:
    dirs = sorted(name for name in top_level() if (REPO / name).is_dir() and not name.startswith("."))
    pattern = re.compile(rf"(?<![\w./<>-])((?:{'|'.join(map(re.escape, dirs))})/[\w./{{}},<>*…-]*)")
    return [m.group(1).rstrip(".,:;") for m in pattern.finditer(text)]


# --- modules -----------------------------------------------------------------------------------


def _module_file(parts: list[str]) -> Path | None:
    """The file of repository module `parts`; a namespace package (no `__init__.py`): its directory."""
    base = REPO.joinpath(*parts)
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return base if base.is_dir() and any(base.glob("*.py")) else None


def _defined(body: list[ast.stmt]) -> dict[str, ast.AST]:
    """Names a module or class body binds → the statement that binds them."""
    names: dict[str, ast.AST] = {}
    for stmt in body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names[stmt.name] = stmt
        elif isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                for node in ast.walk(target):
                    if isinstance(node, ast.Name):
                        names[node.id] = stmt
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            names[stmt.target.id] = stmt
        elif isinstance(stmt, ast.Import | ast.ImportFrom):
            for alias in stmt.names:
                names[alias.asname or alias.name.split(".")[0]] = stmt
        elif isinstance(stmt, ast.If | ast.Try):
            for block in (
                stmt.body,
                getattr(stmt, "orelse", []),
                *[h.body for h in getattr(stmt, "handlers", [])],
            ):
                names.update(_defined(block))
    return names


def module_problem(dotted: str) -> str | None:
    """Why `a.b.c` (a repository module, then attributes) names nothing; None if it resolves."""
    parts = dotted.strip(".").split(".")
    for cut in range(len(parts), 0, -1):
        file = _module_file(parts[:cut])
        if file is not None:
            break
    else:
        return "no such module"
    module_parts, rest = parts[:cut], parts[cut:]
    if not rest:
        return None
    if file.is_dir():
        return f"namespace package {'.'.join(module_parts)} has no module {rest[0]!r}"
    names = _defined(ast.parse(file.read_text()).body)
    stmt = names.get(rest[0])
    if stmt is None:
        sub = _module_file([*module_parts, rest[0]])  # a submodule not imported by the package
        return None if sub is not None else f"{'.'.join(module_parts)} defines no {rest[0]!r}"
    if len(rest) == 1:
        return None
    if isinstance(stmt, ast.ImportFrom) and stmt.module and stmt.level == 0:
        alias = next(a for a in stmt.names if (a.asname or a.name) == rest[0])
        return module_problem(".".join([stmt.module, alias.name, *rest[1:]]))
    if isinstance(stmt, ast.ClassDef) and rest[1] not in _defined(stmt.body) and not stmt.bases:
        return f"class {rest[0]} defines no {rest[1]!r}"
    return None  # attributes of functions, instances, inherited members: not followed


# --- params keys -------------------------------------------------------------------------------


@functools.cache
def profile_names() -> frozenset[str]:
    return frozenset(yaml.safe_load((REPO / "params.yaml").read_text()).get("profiles") or {})


def _unwrap(annotation: Any) -> Any:
    """`X | None` → X."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def key_problem(key: str) -> str | None:
    """Why params key `section.key…` is not in the schema; None if it is."""
    parts = key.split(".")
    if parts[0] == "profiles":
        if len(parts) > 1 and parts[1] not in profile_names():
            return f"no profile {parts[1]!r} in params.yaml (has {sorted(profile_names())})"
        parts = parts[2:]
        if not parts:
            return None
    annotation: Any = Params
    walked: list[str] = []
    for part in parts:
        annotation = _unwrap(annotation)
        if part == "*" or annotation is Any:
            return None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(part)
            if field is None:
                where = ".".join(walked) or "params"
                return f"{where} has no key {part!r} (has {', '.join(annotation.model_fields)})"
            annotation = field.annotation
        elif typing.get_origin(annotation) is dict:
            key_type, annotation = typing.get_args(annotation)
            if typing.get_origin(key_type) is typing.Literal and part not in typing.get_args(key_type):
                return f"{'.'.join(walked)}: {part!r} is not one of {typing.get_args(key_type)}"
        else:
            return f"{'.'.join(walked)} is a value, it has no key {part!r}"
        walked.append(part)
    return None


def library_api(dotted: str) -> bool:
    """`mlflow.log_table`: a section named like an installed library, and a name that library's
    package defines (read from its `__init__`, not imported)."""
    first, _, rest = dotted.partition(".")
    spec = importlib.util.find_spec(first)
    if spec is None or not spec.origin or not spec.origin.endswith("__init__.py"):
        return False
    name = rest.split(".")[0]
    package = Path(spec.origin).parent
    if (package / name).is_dir() or (package / f"{name}.py").is_file():
        return True
    return re.search(rf"\b{re.escape(name)}\b", Path(spec.origin).read_text(errors="replace")) is not None


def params_key_problem(key: str) -> str | None:
    """`key_problem`, but a step function written `section.run` (`pipeline.steps.train.run`) and a
    library's API (`mlflow.log_table`) pass."""
    problem = key_problem(key)
    if problem is None or library_api(key):
        return None
    for package in STEP_PACKAGES:
        if (
            _module_file([*package.split("."), key.split(".")[0]])
            and module_problem(f"{package}.{key}") is None
        ):
            return None
    return problem


def is_params_key(dotted: str) -> bool:
    parts = dotted.split(".")
    return parts[0] in Params.model_fields and parts[-1] not in EXTENSIONS and len(parts) > 1


def yaml_keys(data: Any, prefix: str = "") -> list[str]:
    if not isinstance(data, dict):
        return [prefix] if prefix else []
    keys = []
    for name, value in data.items():
        path = f"{prefix}.{name}" if prefix else str(name)
        keys.extend(yaml_keys(value, path) if isinstance(value, dict) and value else [path])
    return keys


# --- anchors -----------------------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    found, seen = set(), {}
    in_fence = False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and (m := re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)):
            base = slug(m.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


# --- one doc -----------------------------------------------------------------------------------


def check_doc(text: str, name: str, base: Path) -> list[str]:
    """Every stale reference of one markdown doc, as `name:line: `ref`: why`."""
    problems: list[str] = []

    def report(line: int, ref: str, problem: str | None) -> None:
        if problem:
            problems.append(f"{name}:{line}: `{ref}`: {problem}")

    lines = text.splitlines()
    fence_lang: str | None = None
    block: list[str] = []
    block_start = 0
    for number, line in enumerate(lines, 1):
        fence = FENCE.match(line)
        if fence_lang is not None:  # inside a fenced block
            if fence:
                if fence_lang in ("yaml", "yml"):
                    data = yaml.safe_load("\n".join(block))
                    if isinstance(data, dict) and set(data) <= set(Params.model_fields):
                        for key in yaml_keys(data):
                            report(block_start, key, key_problem(key) if "." in key else None)
                fence_lang = None
                continue
            block.append(line)
            for key in OVERRIDE.findall(line):
                report(number, key, params_key_problem(key))
            for module in PYTHON_M.findall(line):
                report(number, module, module_problem(module))
            for path in rooted_paths(line):
                report(number, path, path_problem(path))
            if fence_lang == "python":
                for module in MODULE_REF.findall(line):
                    if module.rsplit(".", 1)[-1] not in EXTENSIONS:
                        report(number, module, module_problem(module))
            continue
        if fence:
            fence_lang, block, block_start = fence.group(2).lower(), [], number
            continue

        for target in LINK.findall(line):
            if re.match(r"^[a-z][\w+.-]*:", target):  # https:, mailto:
                continue
            file, _, anchor = target.partition("#")
            if file:
                problem = link_problem(file, base)
                report(number, target, problem)
                if problem or not anchor or not file.endswith(".md") or not (base / file).is_file():
                    continue
                headings = anchors((base / file).read_text())
            else:
                headings = anchors(text)
            if anchor and anchor not in headings:
                report(number, target, f"no heading with anchor #{anchor}")

        prose = SPAN.sub(" ", LINK.sub(" ", line))
        for path in rooted_paths(prose):
            report(number, path, path_problem(path))

        for _, span in SPAN.findall(line):
            span = span.strip()
            if looks_like_path(span):
                report(number, span, path_problem(span))
                continue
            for key in OVERRIDE.findall(span):
                report(number, key, params_key_problem(key))
            for module in PYTHON_M.findall(span):
                report(number, module, module_problem(module))
            if re.search(r"\s", span):
                for path in rooted_paths(span):
                    report(number, path, path_problem(path))
            # `a.b`, `a.b: v`, `a.b=v`, `a.b=v c.d=w`
            items = span.split() if all(re.fullmatch(rf"{KEY}=\S*", s) for s in span.split()) else [span]
            for item in items:
                match = re.fullmatch(rf"({KEY})(?:\s*[:=].*)?", item)
                if match and is_params_key(match.group(1)):
                    report(number, match.group(1), params_key_problem(match.group(1)))
            match = SPAN_MODULE.match(span)
            if match and match.group(1).rsplit(".", 1)[-1] not in EXTENSIONS:
                report(number, match.group(1), module_problem(match.group(1)))
    return problems


def doc_problems(doc: Path) -> list[str]:
    return check_doc(doc.read_text(), doc.relative_to(REPO).as_posix(), doc.parent)


# --- tests -------------------------------------------------------------------------------------


def test_the_docs_are_found():
    assert (REPO / "README.md") in DOCS and len(DOCS) > 5


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.relative_to(REPO).as_posix())
def test_doc_names_only_what_exists(doc: Path):
    problems = doc_problems(doc)
    assert not problems, (
        "stale references (fix the doc, or the checker in tests/test_docs.py):\n" + "\n".join(problems)
    )


def test_generated_roots_are_outputs_not_sources():
    roots = generated_roots()
    assert {"data", "models", "results", "reports", "metrics", "logs", ".venv"} <= roots
    assert not roots & {"pipeline", "motrv3", "stages", "tests", "docs", "benchmarks", "cluster"}


FAKE_DOC = """\
# Fake doc

## A section

Good: `pipeline/params.py`, `tests/test_docs.py::test_the_docs_are_found`, `reports/table1.md`,
`models/<method>/checkpoint.pt`, `reader.py`, `tgd.groups`, `train.max_steps_per_epoch: 60`,
`pseudo_labels.detfile.yolox.path`, `train.run`, `motrv3.Tracker.step`, `pipeline.params.load_params()`,
[arch](docs/architecture.md), [here](#a-section), `python -m stages.sweep --table 3`, prose pipeline/paths.py.
Bad path: `pipeline/tracking.py`.
Bad key: `scaling.cpu_backbones`.
Bad link: [x](docs/nope.md) and [y](docs/architecture.md#no-such-heading) and [z](#nowhere).
Bad test: `tests/test_docs.py::test_nope`. Bad bare file: `nowhere_at_all.py`.
Bad module: `motrv3.no_such_function`, `python -m stages.nope`. Bad prose path: stages/nope.py.

```bash
dvc exp run -S tgd.groupz=5
```

```yaml
train:
  max_steps_per_epochs: 3
```
"""


def test_checker_names_doc_line_and_each_stale_reference():
    problems = check_doc(FAKE_DOC, "fake.md", REPO)
    joined = "\n".join(problems)
    expected = {
        9: "`pipeline/tracking.py`",
        10: "`scaling.cpu_backbones`",
        11: "`docs/nope.md`",
        12: "`tests/test_docs.py::test_nope`",
        13: "`motrv3.no_such_function`",
    }
    for line, ref in expected.items():
        assert any(p.startswith(f"fake.md:{line}: {ref}") for p in problems), (line, ref, joined)
    for ref in (
        "docs/architecture.md#no-such-heading",
        "#nowhere",
        "nowhere_at_all.py",
        "stages.nope",
        "stages/nope.py",
        "tgd.groupz",
        "train.max_steps_per_epochs",
    ):
        assert f"`{ref}`" in joined, (ref, joined)
    assert "scaling has no key 'cpu_backbones'" in joined
    assert len(problems) == 12, joined  # nothing on the good lines


def test_checker_placeholders_braces_and_yaml():
    assert path_problem("pipeline/steps/{track,evaluate}.py") is None
    assert path_problem("pipeline/steps/{track,nope}.py") == "no such file or directory"
    assert path_problem("pipeline/<name>/") is None
    assert path_problem("pipeline/params.py/") == "no such file or directory"  # a file, not a dir
    assert key_problem("profiles.cpu.tgd.enabled") is None
    assert key_problem("profiles.nope.tgd.enabled") is not None
    assert key_problem("tgd.enabled.x") is not None
    assert yaml_keys({"a": {"b": 1, "c": {"d": 2}}}) == ["a.b", "a.c.d"]
