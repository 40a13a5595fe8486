#!/usr/bin/env bash
# Installs what aigc-label's build, tests and benchmarks need on Debian 12 (run as root, or with
# sudo available): the Rust toolchain if cargo is missing, and the independent tools the tests
# check our output with (exiftool, ImageMagick, libwebp and libheif tools, ffmpeg, mkvtoolnix,
# vorbis-tools, Pillow, mutagen), and the FFmpeg -dev libraries and clang that ffmpeg-next builds
# against.
set -euo pipefail
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
pkgs=(libimage-exiftool-perl imagemagick webp libheif-examples libheif1 libde265-0 libdav1d6 libaom3
      ffmpeg mkvtoolnix vorbis-tools xfsprogs python3 python3-pip time bc ca-certificates curl
      libavcodec-dev libavformat-dev libavutil-dev libswresample-dev libswscale-dev clang libclang-dev pkg-config
      flac espeak-ng)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! python3 -c "import PIL, mutagen" 2>/dev/null; then
  python3 -m pip install -q pillow mutagen 2>/dev/null || python3 -m pip install -q --break-system-packages pillow mutagen
fi
if ! command -v cargo >/dev/null 2>&1; then
  # Debian 12's own cargo is too old (1.63) for this workspace; rustup installs a current one.
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
