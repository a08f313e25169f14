#!/usr/bin/env bash
# Install the operator station on a factory PC: the runtime only (numpy, OpenCV headless,
# ONNX Runtime, OpenVINO, PyQt6) - no torch, no training code's dependencies.
#
#   installer/install_station.sh [VENV_DIR]      (default: ./station-venv)
#
# Then: VENV_DIR/bin/pininspect-station            (or: VENV_DIR/bin/python -m edge_app)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-station-venv}"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -c "$here/requirements/station.lock" "$here"
if "$venv/bin/python" -c "import torch" 2>/dev/null; then
  echo "warning: torch is importable in $venv; the station does not need it" >&2
fi
"$venv/bin/python" -c "import edge_app.station, models.runtime, models.synth.render; print('station runtime installed')"
echo "run: $venv/bin/pininspect-station   (--help for sources, --headless for PCs without a display)"
