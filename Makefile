# Two entry points on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: setup
	$(BIN)/cnnstudy run studies/quick.yaml
	$(BIN)/cnnstudy report runs/quick

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/transfer.py

clean:
	rm -rf runs .cache
