# Everything a developer or CI needs, from a fresh clone. `make demo` and `make test` create the virtual
# environment on first use (CPU PyTorch first, so pip never pulls a multi-GB CUDA build).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED ?= ../shared
TORCH_VERSION ?= 2.13.0

.PHONY: venv demo test test-fast lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

venv: $(BIN)/.installed

# AutoLFADS on synthetic Lorenz spikes, then one model with the default hyperparameters for the same wall
# time, and both models' rate R² against the true rates (autolfads/demo.py has the settings and why).
demo: $(BIN)/.installed
	$(BIN)/python -m autolfads.demo --dir runs/demo

lint: $(BIN)/.installed
	$(BIN)/ruff check autolfads operators tests bench
	$(BIN)/lint-imports

# The whole suite, slow end-to-end tests included. CI runs exactly this.
test: $(BIN)/.installed lint
	. ./.ci/test-env.sh && $(BIN)/python -m pytest

# The quick set for working on the code.
test-fast: $(BIN)/.installed
	. ./.ci/test-env.sh && $(BIN)/python -m pytest -m "not slow" -q

bench: $(BIN)/.installed
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache
