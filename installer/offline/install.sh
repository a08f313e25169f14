#!/usr/bin/env bash
# Install the operator station from this folder, with no network (pip --no-index).
#
#   ./install.sh TARGET [--desktop] [--autostart]
#
# TARGET       the folder to install into (created; e.g. /opt/pininspect or ~/pininspect)
# --desktop    also add a menu entry (~/.local/share/applications)
# --autostart  also start the station when this user logs in (~/.config/autostart)
# Then run: TARGET/pininspect-station   (--help for cameras, --headless for PCs with no display)
set -euo pipefail
pkg="$(cd "$(dirname "$0")" && pwd)"
usage() { sed -n 2,10p "$0" | sed 's/^# \{0,1\}//'; }
target="" desktop=0 autostart=0
for a in "$@"; do
  case "$a" in
    -h|--help) usage; exit 0 ;;
    --desktop) desktop=1 ;;
    --autostart) autostart=1 ;;
    -*) echo "error: unknown option $a" >&2; usage >&2; exit 2 ;;
    *) [ -z "$target" ] || { echo "error: one TARGET folder, got $target and $a" >&2; exit 2; }; target="$a" ;;
  esac
done
[ -n "$target" ] || { echo "error: give the folder to install into, e.g. ./install.sh /opt/pininspect" >&2; exit 2; }
py="${PYTHON:-python3}"
if [ ! -f "$pkg/PYTHON_VERSION" ] || [ ! -d "$pkg/wheels" ]; then
  echo "error: $pkg is not a built station package (no PYTHON_VERSION or wheels/); build one with: make installer" >&2
  exit 1
fi
want="$(cat "$pkg/PYTHON_VERSION")"
have="$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")' 2>/dev/null || echo none)"
if [ "$have" != "$want" ]; then
  echo "error: this package holds wheels for Python $want; $py is $have (set PYTHON=python$want)" >&2
  exit 1
fi
if [ -e "$target" ] && [ -n "$(ls -A "$target" 2>/dev/null)" ] && [ ! -f "$target/.pininspect-station" ]; then
  echo "error: $target exists and is not a pininspect station install; choose an empty or new folder" >&2
  exit 1
fi
mkdir -p "$target"
target="$(cd "$target" && pwd)"
echo "[1/3] environment in $target"
"$py" -m venv "$target"
touch "$target/.pininspect-station"
echo "[2/3] the station and its runtime, from $pkg/wheels (no network)"
PIP_CONFIG_FILE=/dev/null "$target/bin/python" -m pip install --quiet --no-index --find-links "$pkg/wheels" -c "$pkg/station.lock" pininspect
echo "[3/3] check"
"$target/bin/python" -c "import edge_app.station, models.runtime; from edge_app.settings import default_model_dir; assert (default_model_dir() / 'bundle.json').exists(), 'no model bundle'"
if "$target/bin/python" -c "import torch" 2>/dev/null; then
  echo "warning: torch is importable in $target; the station does not need it" >&2
fi
ln -sf "$target/bin/pininspect-station" "$target/pininspect-station"
entry="[Desktop Entry]
Type=Application
Name=Pin inspection station
Comment=Flags bent and pushed-back connector pins
Exec=$target/pininspect-station
Terminal=false
Categories=Utility;"
if [ "$desktop" = 1 ]; then
  mkdir -p "$HOME/.local/share/applications"
  echo "$entry" > "$HOME/.local/share/applications/pininspect-station.desktop"
  echo "menu entry: $HOME/.local/share/applications/pininspect-station.desktop"
fi
if [ "$autostart" = 1 ]; then
  mkdir -p "$HOME/.config/autostart"
  echo "$entry" > "$HOME/.config/autostart/pininspect-station.desktop"
  echo "autostart: $HOME/.config/autostart/pininspect-station.desktop"
fi
echo "installed; run: $target/pininspect-station   (remove with: $pkg/uninstall.sh $target)"
