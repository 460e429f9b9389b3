# The two quick-start commands (README): `make run` and `make test`. Both are idempotent:
# the virtual environment is (re)built only when pyproject.toml changes.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Quiet, loopback-only, telemetry-free defaults for every tool we start.
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER := 0
export RAY_AUTH_MODE := disabled
export RAY_TRAIN_ENABLE_PREEMPTION_WATCHER := 0
export RAY_USAGE_STATS_ENABLED := 0
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1

.PHONY: setup run test lint bench gpu-check mlflow-ui clean-env table3-study strategies-study

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -e '.[dev]'
	@# trackeval pulls in opencv-python, which needs the system's libGL; keep only the headless build.
	@if $(BIN)/python -m pip show --quiet opencv-python >/dev/null 2>&1; then \
		$(BIN)/python -m pip uninstall --quiet -y opencv-python && \
		$(BIN)/python -m pip install --quiet --no-compile --force-reinstall --no-deps \
			"opencv-python-headless==$$($(BIN)/python -m pip show opencv-python-headless | sed -n 's/^Version: //p')"; \
	fi
	@# Bytecode on every core: pip compiles on one (177 s → 84 s + 38 s here, README "Tests
	@# and benchmarks"). A few of torch's test files use newer Python syntax; pip skips them too, hence || true.
	@$(BIN)/python -m compileall -q -j 0 $(VENV)/lib >/dev/null 2>&1 || true
	touch $@

setup: $(STAMP)

## Quick start 1: set up and run the whole pipeline (embedded synthetic default unless params.yaml says otherwise).
## Each stage prints its progress and a summary; Ray's and the libraries' output goes to
## logs/<stage>.log (MOTRV3_VERBOSE=1 shows it too). Ends with Table 1 and where the rest is.
run: setup
	@PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro --quiet
	@echo
	@cat reports/table1.md
	@echo
	@echo "Figures: reports/figures/   Tables: reports/*.md   Logs: logs/<stage>.log"
	@echo "MLflow UI: make mlflow-ui, then http://127.0.0.1:5000 (experiment motrv3; tick runs, Compare: params beside HOTA)"

## Quick start 2: set up and run the whole test suite.
test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: setup
	$(BIN)/python -m benchmarks

## CUDA op, tracker FPS and a training step on this machine's GPU (docs/gpu_check.md). Installs
## nothing: runs in any environment with torch, torchvision, timm, numpy, scipy: $(VENV) once `make setup` made
## it, else $(PYTHON) (a fresh clone on a CUDA machine); VENV=... or PYTHON=... to pick another.
## GPU_CHECK_ARGS=... passes options (--rebuild, --compile, --dry-run).
GPU_PYTHON = $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))
gpu-check:
	@$(GPU_PYTHON) -c "import importlib.util as u, sys; m = [n for n in ('torch', 'torchvision', 'timm', 'numpy', 'scipy') if u.find_spec(n) is None]; m and sys.exit('make gpu-check: $(GPU_PYTHON) has no ' + ', '.join(m) + ': install them (README, GPU installation), or run make setup, or pass PYTHON=/path/to/python')"
	$(GPU_PYTHON) -m benchmarks.gpu_check $(GPU_CHECK_ARGS)

## Table 3 over seeds (README "Table 3 over seeds"): its six rows (Base, RFS, PLD, TGD, RFS+PLD,
## MOTRv3), 3 seeds each, at the default budget (no per-epoch validation: each trial is scored once
## at its end), then each trial at sweep.birth_thresholds; ~1 h 25 min on 2 cores. Needs the default
## pipeline's detector and pseudo labels.
table3-study: run
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m stages.sweep --table 3 --seeds 0 1 2 \
		--set train.validate_every_epochs=0

## Table 3's six rows at the profile's readings and teacher (DEFAULT_ROWS of pipeline/studies/study.py),
## 3 seeds each, at the default budget; any other reading: --row LABEL (docs/strategies.md); needs
## the default pipeline's detector and pseudo labels (hence `run` first).
strategies-study: run
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m stages.sweep --study strategies --seeds 0 1 2 \
		--set train.validate_every_epochs=0

mlflow-ui: setup
	$(BIN)/python -m pipeline.mlflow_ui

clean-env:
	rm -rf $(VENV)
