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

# AutoLFADS on synthetic Lorenz spikes: 4 small LFADS models tuned by PBT on local Ray (1 min 28 s measured on
# a shared 2-core machine, 2026-11-30, README).
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
