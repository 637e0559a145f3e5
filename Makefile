# Set-up and entry points. `make demo` and `make test` each build .venv from nothing.
#
# torch: on a machine without CUDA we install the CPU wheel torch==2.13.0 *before* edgeseg, so
# that no dependency pulls the multi-GB CUDA build. On Jetson, create the venv with
# VENV_FLAGS=--system-site-packages so JetPack's own torch is used and never replaced.

PYTHON     ?= python3
VENV       ?= .venv
VENV_FLAGS ?=
TORCH_SPEC ?= torch==2.13.0
BIN        := $(VENV)/bin
STAMP      := $(VENV)/.edgeseg-installed
PIP        := $(BIN)/python -m pip --disable-pip-version-check

# torch's OpenMP threads spin while they wait by default; on a small shared CPU (CI, laptops, a
# 2-core box running two test workers) that made training steps 8-40x slower (docs/demo-model.md).
export OMP_WAIT_POLICY ?= PASSIVE

# Seconds since the epoch when make started (evaluated once), so demo/test can report their time
# including the venv set-up.
START := $(shell date +%s)
elapsed = $$(( $$(date +%s) - $(START) ))

.PHONY: venv demo test lint typecheck clean

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(BIN)/python -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)"
	# --no-build-isolation: the C++ op builds against the torch installed above (an isolated
	# build environment would download another torch).
	$(PIP) install -q --no-build-isolation -e ".[dev,video]"
	# Type stubs only, for mypy over edgeseg/trt: their declared dependency is TensorRT itself,
	# which cannot be installed here, hence --no-deps.
	$(PIP) install -q --no-deps "tensorrt-stubs>=10.3"
	touch $@

demo: $(STAMP)
	$(BIN)/edgeseg build --precision int8
	@echo "make demo: done in $(elapsed) s; build folder engines/demo_dbmsnet/ (report.json, build.json, validation.png)"

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --junitxml=test-results/junit.xml tests
	@echo "make test: done in $(elapsed) s; per-test results in test-results/junit.xml"

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	# The stubs lack py.typed, so plain mypy would treat tensorrt as Any; this test repairs and uses them.
	$(BIN)/python -m pytest -q tests/trt/test_typecheck.py

clean:
	rm -rf $(VENV) build dist test-results *.egg-info
