# Two entry points on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# Development machines keep the test datasets in ../shared/data: search it too (after the data
# home, where anything missing is fetched). Elsewhere nothing is set and datasets are fetched.
DEV_DATA := $(wildcard ../shared/data)
ifneq ($(DEV_DATA),)
export CNNSTUDY_DATA ?= $(HOME)/.cache/cnnstudy/datasets:$(abspath $(DEV_DATA))
endif

.PHONY: setup demo test test-bf16 bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml src/cnnstudy/_version.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test,export,tracking,ray]'
	touch $@

demo: setup
	$(BIN)/cnnstudy run studies/quick.yaml

# Two pytest workers: one test's waits (spawned workers, torchrun, kills) overlap another's arithmetic;
# 9:05 -> 6:50 on 2 cores. More workers than that oversubscribe a small machine: TEST_WORKERS=auto elsewhere.
TEST_WORKERS ?= 2

test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

# The suite as a CPU with native bf16 (AVX512-BF16, AMX) runs it: `precision: auto` trains in bf16
# autocast. Emulated, and so slower, on an AVX2-only CPU; CI may land on either kind.
test-bf16: setup
	CNNSTUDY_AUTO_PRECISION=bf16 $(BIN)/python -m pytest -q -n $(TEST_WORKERS)

bench: setup
	$(BIN)/python benchmarks/transfer.py

clean:
	rm -rf runs .cache
