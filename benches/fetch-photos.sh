#!/usr/bin/env bash
# Fetches real photographs for benchmarks into bench-out/photos (not committed): the large
# wallpapers of Debian's plasma-workspace-wallpapers package. Prints the folder.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=$root/bench-out/photos
if [ ! -f "$dest/.done" ]; then
  mkdir -p "$dest" "$root/bench-out/deb"
  (cd "$root/bench-out/deb" && apt-get download plasma-workspace-wallpapers >/dev/null 2>&1 \
     || { apt-get update -qq && apt-get download plasma-workspace-wallpapers >/dev/null; })
  dpkg -x "$root"/bench-out/deb/plasma-workspace-wallpapers*.deb "$root/bench-out/deb/x"
  # The largest rendition of each wallpaper.
  for d in "$root"/bench-out/deb/x/usr/share/wallpapers/*/contents/images; do
    best=$(ls -S "$d"/*.jpg "$d"/*.png 2>/dev/null | head -1 || true)
    [ -n "$best" ] && cp "$best" "$dest/$(basename "$(dirname "$(dirname "$d")")").${best##*.}"
  done
  touch "$dest/.done"
fi
echo "$dest"
