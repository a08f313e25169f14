#!/usr/bin/env bash
# Build the offline station package: everything a factory PC with no network needs.
#
#   installer/build_offline.sh [OUT_DIR]     (default: dist/pininspect-station-<version>-py<X.Y>)
#
# OUT_DIR/wheels   the pininspect wheel (with the shipped model bundle) and a wheel of every
#                  locked runtime dependency (requirements/station.lock) for this platform and Python
# OUT_DIR/install.sh TARGET [--desktop] [--autostart]    installs with pip --no-index
# OUT_DIR/uninstall.sh TARGET
# and OUT_DIR.tar.gz beside it. Run it on a machine with the index, with the Python version
# (PYTHON=python3.11 ...) and OS the factory PC has: wheels are per Python version and platform.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
py="${PYTHON:-python3}"
pyver="$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
version="$("$py" -c 'import re,sys; print(re.search(r"^version = \"(.+)\"", open(sys.argv[1]).read(), re.M)[1])' "$here/pyproject.toml")"
out="${1:-$here/dist/pininspect-station-$version-py$pyver}"
if [ ! -f "$here/models/default/bundle.json" ]; then
  echo "error: $here/models/default/bundle.json missing: export the model first (make export)" >&2
  exit 1
fi
if [ -e "$out" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ] && [ ! -f "$out/PYTHON_VERSION" ]; then
  echo "error: $out exists and is not an earlier station package; choose a new or empty folder" >&2
  exit 1
fi
rm -rf "$out"
mkdir -p "$out/wheels"
echo "[1/3] the pininspect wheel (with the model bundle)"
"$py" -m pip wheel --quiet --no-deps -w "$out/wheels" "$here"
echo "[2/3] wheels of the locked runtime dependencies for Python $pyver (requirements/station.lock)"
"$py" -m pip download --quiet --only-binary=:all: -d "$out/wheels" -r "$here/requirements/station.lock"
cp "$here/requirements/station.lock" "$out/station.lock"
echo "[3/3] install and uninstall scripts"
cp "$here/installer/offline/install.sh" "$here/installer/offline/uninstall.sh" "$out/"
cp "$here/installer/offline/README.txt" "$out/README.txt"
chmod +x "$out/install.sh" "$out/uninstall.sh"
echo "$pyver" > "$out/PYTHON_VERSION"
echo "$version" > "$out/VERSION"
tar -C "$(dirname "$out")" -czf "$out.tar.gz" "$(basename "$out")"
echo "built $out ($(du -sh "$out" | cut -f1)) and $out.tar.gz"
echo "on the factory PC: tar xzf $(basename "$out").tar.gz && $(basename "$out")/install.sh /opt/pininspect"
