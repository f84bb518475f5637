# One-command set-up on a fresh Debian machine (Python >= 3.10): system packages, a virtual environment,
# the CPU torch wheel first, then this package. (pulseaudio + libasound2-plugins provide the tests' real-time
# virtual microphone.) Idempotent: a second run only checks stamps.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.edge-askd-installed
APT_PACKAGES := espeak-ng sox libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins \
  flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts wordnet-base fortunes fortunes-min
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
# A cache only helps a second install; on a fresh machine it doubles the ~3.5 GB the environment needs on disk.
export PIP_NO_CACHE_DIR := 1
# The environment (torch, converters, runtimes, teachers) takes ~3.5 GB, pip unpacks into TMPDIR on the way,
# and the test suite writes ~2 GB of exports: refuse early with one line instead of pip's ENOSPC half-way through.
MIN_FREE_GB ?= 6

.PHONY: setup disk-check system-packages demo experiment test lint wheel clean
.DEFAULT_GOAL := demo

system-packages:
	@dpkg -s $(APT_PACKAGES) >/dev/null 2>&1 || { \
	  echo "installing system packages: $(APT_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES); }
	@# Debian splits ensurepip (needed by venv) into python3-venv.
	@$(PYTHON) -c "import ensurepip, venv" >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-venv; }

disk-check:
	@$(PYTHON) -c "import shutil,sys,tempfile; need=$(MIN_FREE_GB); \
	  free={d: shutil.disk_usage(d).free / 2**30 for d in ('.', tempfile.gettempdir())}; \
	  low=[f'{gb:.1f} GB free in {d!r}' for d, gb in free.items() if gb < need]; \
	  low and sys.exit(f'error: only {low[0]}; setting up needs about {need} GB: free some space or point TMPDIR elsewhere (MIN_FREE_GB=N overrides the check)')"

$(STAMP): pyproject.toml constraints.txt Makefile
	@$(MAKE) --no-print-directory disk-check system-packages
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip "setuptools>=77" wheel
	# torch first, alone: an unpinned resolve would pull several GB of CUDA wheels.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $(STAMP)

setup: system-packages $(STAMP)

# The main job: data -> ASKD distillation (20 min budget) -> export -> bench -> transcribe -> quickstart/report/.
demo: setup
	$(BIN)/edge-askd quickstart

# The method comparison (CE / static KD / ASKD-decay / ASKD, same budget) on the default dynamic-context student
# -> docs/askd-experiment-dyn/ (the shallow-decoder comparison of issue 4: --preset base -> docs/askd-experiment/).
experiment: setup
	$(BIN)/python -m edge_askd.distill.experiment --preset tiny.en-dyn --out runs/exp-tiny.en-dyn --docs docs/askd-experiment-dyn

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/vermin --no-tips --violations --eval-annotations -t=3.10- edge_askd runtimes export benchmarks tests

test: setup lint
	$(BIN)/python -m pytest -q --durations=15

# The package for a board: dist/edge_askd-VERSION-py3-none-any.whl, installed there with its extras
# (README, "On the board"). Pure Python: one wheel serves every board.
wheel: setup
	$(BIN)/python -m pip wheel -q --no-deps --no-build-isolation -w dist .
	@ls dist/*.whl

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
