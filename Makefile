# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# glibc's malloc asks for transparent huge pages on the large blocks it maps (the worker images set the
# same): torch's CPU activations fault in 2 MiB pages, not 4 KiB ones (README, "CPU memory allocation")
export GLIBC_TUNABLES ?= glibc.malloc.hugetlb=1
# The demo and the benchmarks run on tcmalloc where it is installed, as the CPU worker image does
# (worker/allocator.py); the tests do not (their Ceph and Chromium processes bring their own allocators).
TCMALLOC := $(firstword $(wildcard /usr/local/lib/libtcmalloc_minimal.so.4 /usr/lib/*/libtcmalloc_minimal.so.4))
ON_TCMALLOC := $(if $(TCMALLOC),LD_PRELOAD=$(TCMALLOC))

.PHONY: demo test lint bench bench-engines clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[model,demo,research,fullscale,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(ON_TCMALLOC) $(PY) -m vsr.demo --out demo_output

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(ON_TCMALLOC) $(PY) -m bench.fastvsr_vs_baseline --out bench/results/cpu_fastvsr_vs_baseline.json

bench-engines: $(STAMP)
	$(PY) -m bench.engines --sizes 180p --out bench/results/cpu_engines.json

clean:
	rm -rf $(VENV) demo_output .pytest_cache
