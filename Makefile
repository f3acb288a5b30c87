# Everything a developer or CI needs, from a fresh clone. `make demo` and `make test` create the virtual
# environment on first use (CPU PyTorch first, so pip never pulls a multi-GB CUDA build).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED ?= ../shared
TORCH_VERSION ?= 2.13.0

.PHONY: demo test test-fast lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

venv: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/autolfads synth lorenz runs/demo/lorenz.h5 --force
	$(BIN)/autolfads train runs/demo/lorenz.h5 --out runs/demo/train --force trainer.max_epochs=40

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
