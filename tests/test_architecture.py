"""Architecture contracts checked from the source: no import cycle inside pipeline/, the model library
never imports the pipeline, the layers of pipeline/ point one way (no step imports another step or a
study; nothing below the steps imports a step or a study), and every module a DVC stage runs is a
dependency of that stage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("motrv3", "pipeline", "stages")  # the repository's own code


def module_file(name: str) -> Path | None:
    """The file of a repository module (`a.b` → a/b.py or a/b/__init__.py), None if not ours."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = REPO.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Repository modules `path` imports anywhere in its body (function-level imports included)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from a import b` may import the module a.b or a name of a
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            # The longest prefix that is a module of ours (a.b.func → a.b), and its parent packages.
            parts = name.split(".")
            for end in range(len(parts), 0, -1):
                if module_file(".".join(parts[:end])) is not None:
                    found.update(".".join(parts[:k]) for k in range(1, end + 1))
                    break
    found.discard(module_name(path))
    return {name for name in found if module_file(name) is not None}


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            graph[module_name(path)] = imports_of(path)
    return graph


def closure(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph.get(name, ()))
    return seen


def find_cycle(graph: dict[str, set[str]], nodes: set[str]) -> list[str] | None:
    """A cycle of imports among `nodes`, or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node] & nodes):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(nodes):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_reports_a_cycle_and_no_false_one():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    assert find_cycle(graph, set(graph)) == ["a", "b", "c", "a"]
    graph["c"] = set()
    assert find_cycle(graph, set(graph)) is None


def test_no_import_cycle_in_pipeline():
    graph = import_graph()
    # Package `__init__`s left out: importing a submodule runs its package first by definition.
    modules = {m for m in graph if m.startswith("pipeline") and module_file(m).name != "__init__.py"}
    cycle = find_cycle(graph, modules)
    assert cycle is None, " → ".join(cycle)


def test_model_library_never_imports_the_pipeline():
    graph = import_graph()
    offenders = {m: sorted(d for d in deps if not d.startswith("motrv3")) for m, deps in graph.items()}
    assert not {m: d for m, d in offenders.items() if m.startswith("motrv3") and d}


# The layers of pipeline/, top down: entry points (stages/, pipeline.cli, pipeline.commands) →
# studies → steps → everything else (evaluation, inference, reporting, data, formats, params, ...).
ENTRY_POINTS = ("pipeline.cli", "pipeline.commands")


def in_package(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def step_of(name: str) -> str | None:
    """`pipeline.steps.<step>[.…]` → `<step>` (a module or a package of the steps), else None."""
    parts = name.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["pipeline", "steps"] else None


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports that run against the layers: step → other step, step → study, lower layer → step or study."""
    found = []
    for module, deps in sorted(graph.items()):
        if not in_package(module, "pipeline") or any(in_package(module, e) for e in ENTRY_POINTS):
            continue
        step = step_of(module)
        upper = in_package(module, "pipeline.studies")
        for dep in sorted(deps):
            if step is not None and step_of(dep) not in (None, step):
                found.append(f"{module} → {dep}: a step imports another step")
            elif step is not None and in_package(dep, "pipeline.studies"):
                found.append(f"{module} → {dep}: a step imports a study")
            elif (
                step is None
                and not upper
                and (in_package(dep, "pipeline.steps") or in_package(dep, "pipeline.studies"))
            ):
                found.append(f"{module} → {dep}: a module below the steps imports a step or a study")
    return found


def test_layer_check_reports_each_kind_of_back_arrow():
    graph = {
        "pipeline.steps.track": {"pipeline.steps", "pipeline.steps.evaluate"},
        "pipeline.steps.tables": {"pipeline.studies.reports"},
        "pipeline.evaluation.split": {"pipeline.steps.evaluate"},
        "pipeline.steps.train.driver": {"pipeline.steps.train.worker", "pipeline.evaluation"},
        "pipeline.studies.sweep": {"pipeline.steps.train"},
        "pipeline.commands.evaluate": {"pipeline.steps.evaluate"},
    }
    assert layer_violations(graph) == [
        "pipeline.evaluation.split → pipeline.steps.evaluate: a module below the steps imports a step or a study",
        "pipeline.steps.tables → pipeline.studies.reports: a step imports a study",
        "pipeline.steps.track → pipeline.steps.evaluate: a step imports another step",
    ]


def test_pipeline_layers_point_one_way():
    violations = layer_violations(import_graph())
    assert not violations, "\n".join(violations)


def test_no_pipeline_module_over_450_lines():
    long = {
        str(p.relative_to(REPO)): n
        for p in (REPO / "pipeline").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 450
    }
    assert not long, long


# ---------------------------------------------------------------------------------------------
# dvc.yaml dependencies derived from the import graph


def stage_entry_points(dvc: dict) -> dict[str, tuple[str, list[str]]]:
    """stage name → (entry module of `python -m <module>`, its deps); `foreach` stages per item."""
    result = {}
    for name, stage in dvc["stages"].items():
        items = [(name, stage)]
        if "foreach" in stage:
            items = [
                (f"{name}@{item}", yaml.safe_load(yaml.safe_dump(stage["do"]).replace("${item}", str(item))))
                for item in stage["foreach"]
            ]
        for label, body in items:
            words = body["cmd"].split()
            module = words[words.index("-m") + 1]
            result[label] = (module, [str(dep) for dep in body.get("deps", [])])
    return result


def uncovered_modules(dvc: dict) -> dict[str, list[str]]:
    """Per stage, the repository files its entry point imports (transitively) that no dep covers."""
    graph = import_graph()
    missing = {}
    for stage, (entry, deps) in stage_entry_points(dvc).items():
        files = sorted(str(module_file(m).relative_to(REPO)) for m in closure(graph, entry))
        covered = [d.rstrip("/") for d in deps]
        lacking = [f for f in files if not any(f == d or f.startswith(d + "/") for d in covered)]
        if lacking:
            missing[stage] = lacking
    return missing


def test_every_module_a_stage_imports_is_a_dvc_dependency():
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    missing = uncovered_modules(dvc)
    assert not missing, f"dvc.yaml: add these deps (a directory covers its files): {missing}"


@pytest.mark.parametrize("stage", ["train_motrv3", "tables", "convert"])
def test_dvc_deps_check_fails_when_a_dependency_is_removed(stage):
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    deps = dvc["stages"][stage]["deps"]
    code = [d for d in deps if d.split("/")[0] in PACKAGES]
    assert code, f"{stage} declares no code dependency"
    dvc["stages"][stage]["deps"] = [d for d in deps if d != code[-1]]
    assert stage in uncovered_modules(dvc)


def missing_params(dvc: dict, params: dict) -> dict[str, list[str]]:
    """Per stage, the `params:` keys (dotted) that params.yaml lacks: `dvc repro` refuses them."""
    missing = {}
    for name, stage in dvc["stages"].items():
        body = stage.get("do", stage)
        lacking = []
        for entry in body.get("params", []):
            keys = [entry] if isinstance(entry, str) else []  # {file: [keys]} entries name other files
            for key in keys:
                node = params
                for part in key.split("."):
                    if not isinstance(node, dict) or part not in node:
                        lacking.append(key)
                        break
                    node = node[part]
        if lacking:
            missing[name] = lacking
    return missing


def test_every_dvc_param_exists_in_params_yaml():
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    missing = missing_params(dvc, params)
    assert not missing, f"dvc.yaml params absent from params.yaml (dvc repro fails): {missing}"
    params.pop("tracking")
    assert "baselines" in missing_params(dvc, params)


def test_steps_that_read_params_and_scores_start_without_torch():
    """`motrv3` loads its public names on first use, so generate, convert, evaluate and tables (and
    everything that only reads params) start without importing torch (~5 s per process here)."""
    import subprocess
    import sys

    light = ["motrv3", "motrv3.config", "pipeline.params", "pipeline.data.synthetic"]
    light += [f"pipeline.steps.{step}" for step in ("convert", "evaluate", "tables")]
    # importing them and validating params.yaml (every step does) load neither torch nor timm
    code = (
        f"import sys; import {', '.join(light)}; pipeline.params.load_params('params.yaml'); "
        "print(sorted(m for m in ('torch', 'timm') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr

    import motrv3

    assert set(motrv3.__all__) == set(motrv3._EXPORTS)
    # the names type checkers see (the `if TYPE_CHECKING:` imports) are the ones loaded lazily
    tree = ast.parse((REPO / "motrv3" / "__init__.py").read_text())
    guarded = next(node for node in tree.body if isinstance(node, ast.If))
    typed = {alias.name: node.module for node in guarded.body for alias in node.names}
    assert typed == motrv3._EXPORTS
    resolved = {name: getattr(motrv3, name) for name in motrv3.__all__}
    assert (
        resolved["build_model"] is motrv3.model.build_model and resolved["MOTR"].__module__ == "motrv3.model"
    )
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        motrv3.not_a_name  # noqa: B018
