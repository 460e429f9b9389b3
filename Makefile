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

.PHONY: setup run test lint bench mlflow-ui clean-env

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@# trackeval pulls in opencv-python, which needs the system's libGL; keep only the headless build.
	@if $(BIN)/python -m pip show --quiet opencv-python >/dev/null 2>&1; then \
		$(BIN)/python -m pip uninstall --quiet -y opencv-python && \
		$(BIN)/python -m pip install --quiet --force-reinstall --no-deps \
			"opencv-python-headless==$$($(BIN)/python -m pip show opencv-python-headless | sed -n 's/^Version: //p')"; \
	fi
	touch $@

setup: $(STAMP)

## Quick start 1: set up and run the whole pipeline (embedded synthetic default unless params.yaml says otherwise).
run: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro

## Quick start 2: set up and run the whole test suite.
test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: setup
	$(BIN)/python -m benchmarks

mlflow-ui: setup
	$(BIN)/python -m pipeline.mlflow_ui

clean-env:
	rm -rf $(VENV)
