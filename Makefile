# One-command set-up: every target creates .venv at the repo root if it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help venv test test-all lint demo data train export benchmark train-speed isacheck clean lock installer

help:
	@echo "make demo       render the default part and run the station on a simulated line"
	@echo "make test       the default test suite (fast; slow ones: make test-all)"
	@echo "make lint       ruff, mypy and the import contracts"
	@echo "make train      retrain the shipped model on both renderers (~36 min on 2 AVX-512 cores, + a one-time ~55 min Blender render) and write its card"
	@echo "make export     export the default model to INT8 ONNX / OpenVINO"
	@echo "make benchmark  generator and model benchmarks"
	@echo "make train-speed  training images/s in float32 and bf16 on this CPU, and which the default picks (~3 min)"
	@echo "make isacheck   the shipped bundle's INT8 verdicts on an emulated AVX2-only CPU (needs qemu-user; 1-40 min by QEMU build)"
	@echo "make lock       re-resolve requirements/*.lock (uv) from pyproject.toml: newest versions that fit"
	@echo "make installer  the offline station package under dist/ (wheels + model + install/uninstall scripts)"
	@echo "make blender-venv  the Blender (bpy) venv for the second, path-traced renderer (training/blender)"

# Installs exactly the versions in requirements/dev.lock (what CI tested); make lock refreshes it.
$(STAMP): pyproject.toml requirements/dev.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements/dev.lock -e '.[training,export,dev]'
	touch $(STAMP)

venv: $(STAMP)

# The Blender render test needs .venv-blender (CPython 3.11 only); without it that test is skipped, with the reason.
test: $(STAMP)
	@$(MAKE) --no-print-directory blender-venv || echo "note: no Blender venv here; the Blender render test will be skipped"
	$(VENV)/bin/lint-imports
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -m "not slow"

test-all: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

# The station on a simulated line with the shipped model: a window where a display exists,
# headless (JSON lines and a summary) where none does.
demo: $(STAMP)
	$(PY) -m training.synth --out runs/demo --n 24 --seed 1 --overwrite --quiet --sheet runs/demo/sheet.png
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ]; then \
	  $(PY) -m edge_app --source sim --config runs/demo/station.json --archive runs/demo/archive; \
	else \
	  $(PY) -m edge_app --headless --source sim --frames 600 --quiet --config runs/demo/station.json --archive runs/demo/archive; \
	fi

# The shipped model: procedural renders and Blender frames (rendered once into data/, about an
# hour on 2 cores), then the model card (fresh test sets of both renderers) into models/default.
train: $(STAMP) blender-venv
	$(PY) -m training.train --preset both-renderers --set seed=1   # the shipped run: best of seeds 0-2 on the Blender selection frames (docs/ablation.md)
	$(PY) -m training.ship --run runs/default

export: $(STAMP)
	$(PY) -m export.quantize --name default --float-stem   # as the shipped bundle: conv stem in float (the model before it failed the gate without)

benchmark: $(STAMP)
	$(PY) -m training.synth.benchmark
	$(PY) -m export.benchmark --model models/default --json runs/benchmark/models.json --png runs/benchmark/models.png
	$(PY) -m edge_app --headless --source sim --frames 600 --no-archive --quiet

train-speed: $(STAMP)
	$(PY) -m training.speed

# An older factory PC's INT8 kernels, emulated (QEMU user mode, Debian package qemu-user).
isacheck: $(STAMP)
	$(PY) -m export.isacheck --model models/default --frames 8

clean:
	rm -rf runs data .pytest_cache .ruff_cache .mypy_cache

# The Blender renderer (training/blender) in its own venv: bpy 4.5 needs CPython 3.11 and
# numpy<2, the main venv's OpenCV needs numpy>=2. Only `models` and `training.blender` are used there.
BLENDER_PYTHON ?= python3
BLENDER_VENV := .venv-blender
BLENDER_STAMP := $(BLENDER_VENV)/.installed

.PHONY: blender-venv

$(BLENDER_STAMP): pyproject.toml
	@$(BLENDER_PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
	  { echo "bpy 4.5 needs CPython 3.11: make blender-venv BLENDER_PYTHON=python3.11"; exit 1; }
	test -x $(BLENDER_VENV)/bin/python || $(BLENDER_PYTHON) -m venv $(BLENDER_VENV)
	$(BLENDER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BLENDER_VENV)/bin/python -m pip install --quiet 'bpy==4.5.*' 'numpy<2' 'tqdm>=4.66'
	$(BLENDER_VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $(BLENDER_STAMP)

blender-venv: $(BLENDER_STAMP)

# Every platform and Python from 3.10 in one file each (uv's universal resolution): dev.lock for the
# desktop (training, export, tests), station.lock for a factory PC, the same versions in both.
lock: $(STAMP)
	$(VENV)/bin/uv pip compile pyproject.toml --universal --python-version 3.10 --upgrade \
	  --extra training --extra export --extra dev -o requirements/dev.lock
	$(VENV)/bin/uv pip compile pyproject.toml --universal --python-version 3.10 \
	  -c requirements/dev.lock -o requirements/station.lock

# The station for a PC with no network: dist/pininspect-station-<version>-py<X.Y>/ and its .tar.gz.
installer: $(STAMP)
	installer/build_offline.sh
