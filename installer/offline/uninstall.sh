#!/usr/bin/env bash
# Remove a station installed by install.sh, and its menu and autostart entries.
#
#   ./uninstall.sh TARGET
#
# Only removes a folder install.sh made (it holds .pininspect-station). The archive of flagged
# images and the settings file live where the station was told to keep them, not in TARGET,
# and are left alone.
set -euo pipefail
target="${1:-}"
case "$target" in
  -h|--help) sed -n 2,8p "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") echo "error: give the folder the station was installed into" >&2; exit 2 ;;
esac
if [ ! -f "$target/.pininspect-station" ]; then
  echo "error: $target is not a pininspect station install (no .pininspect-station in it); nothing removed" >&2
  exit 1
fi
target="$(cd "$target" && pwd)"
for f in "$HOME/.local/share/applications/pininspect-station.desktop" "$HOME/.config/autostart/pininspect-station.desktop"; do
  if [ -f "$f" ] && grep -q "Exec=$target/pininspect-station" "$f"; then rm -f "$f"; echo "removed $f"; fi
done
rm -rf "$target"
echo "removed $target"
