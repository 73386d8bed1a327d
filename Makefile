# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# glibc's malloc asks for transparent huge pages on the large blocks it maps (the worker images set the
# same): torch's CPU activations fault in 2 MiB pages, not 4 KiB ones (README, "CPU memory allocation")
export GLIBC_TUNABLES ?= glibc.malloc.hugetlb=1

.PHONY: demo test lint bench bench-engines clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[model,demo,research,fullscale,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m vsr.demo --out demo_output

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) -m bench.fastvsr_vs_baseline --out bench/results/cpu_fastvsr_vs_baseline.json

bench-engines: $(STAMP)
	$(PY) -m bench.engines --sizes 180p --out bench/results/cpu_engines.json

clean:
	rm -rf $(VENV) demo_output .pytest_cache
