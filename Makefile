# captum-semiring developer entry points.
#
#   make demo   - install into .venv (first time only) and run the CLI demo
#   make test   - install into .venv (first time only), then lint, type-check
#                 and run the test suite (this is exactly what .ci/run runs)
#
# Installation is tracked by the stamp file $(VENV)/.installed, rebuilt only
# when setup.cfg or pyproject.toml change, so a second `make test` is quick.
#
# torch is installed *first* and pinned to the exact local CPU build: a bare
# `torch` requirement with no torch present would pull GBs of CUDA wheels.
# Once torch==$(TORCH_VERSION) is importable, the project's plain `torch`
# requirement is already satisfied and pip installs nothing more for it.

PYTHON        ?= python3
VENV          ?= .venv
BIN           := $(VENV)/bin
STAMP         := $(VENV)/.installed
TORCH_VERSION := 2.13.0

.DEFAULT_GOAL := help
.PHONY: help install demo test lint typecheck unit tutorials clean

help:
	@echo "make demo       run the captum-semiring CLI demo"
	@echo "make test       ruff + mypy + pytest (what CI runs)"
	@echo "make install    create $(VENV) and install the project (editable)"
	@echo "make lint | typecheck | unit   run one step of 'make test'"
	@echo "make tutorials  execute the notebooks in place (stored with outputs)"
	@echo "make clean      remove caches and build artefacts (keeps $(VENV))"

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install torch==$(TORCH_VERSION)
	$(BIN)/pip install -e ".[dev,notebooks]"
	@# the native CPU kernels, built once into the user's cache (falls back without g++)
	$(BIN)/python -c "from captum_semiring.kernels import native; print(native.build())" \
		|| echo "warning: native kernels not built; torch kernels will be used"
	@# the report's browser test drives Debian's headless Chromium
	command -v chromedriver >/dev/null 2>&1 || apt-get install -y -q chromium chromium-driver \
		|| echo "warning: chromium not installed; tests/test_report_browser.py will skip"
	touch $@

install: $(STAMP)

tutorials: $(STAMP)
	$(BIN)/python tutorials/execute.py

demo: $(STAMP)
	$(BIN)/captum-semiring explain

# Each command's non-zero exit fails the recipe; that includes pytest's exit
# code 5 ("no tests collected"), so an empty test run is a failure.
test: $(STAMP)
	$(BIN)/ruff check captum_semiring tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 tests

lint: $(STAMP)
	$(BIN)/ruff check captum_semiring tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -n 2 tests

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print -exec rm -rf {} +
