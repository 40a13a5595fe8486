#!/usr/bin/env bash
# Installs what aigc-label's build, tests and benchmarks need on Debian 12 (run as root, or with
# sudo available): the Rust toolchain if cargo is missing, the independent tools the tests check
# our output with (exiftool, ImageMagick, libwebp and libheif tools, ffmpeg, mkvtoolnix,
# vorbis-tools, Pillow, mutagen), what the benchmarks run (numpy, invisible-watermark), and the
# FFmpeg -dev libraries and clang that ffmpeg-next builds against.
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
pip_install() {
  python3 -m pip install -q "$@" 2>/dev/null || python3 -m pip install -q --break-system-packages "$@"
}
if ! python3 -c "import PIL, mutagen" 2>/dev/null; then
  pip_install pillow mutagen
fi
# The benchmarks' attacks (numpy) and their peer, invisible-watermark's dwtDct. Its package
# also names torch and onnxruntime, for the neural rivaGan method the benchmark does not run,
# so it is installed without its dependencies and with only those dwtDct uses.
if ! python3 -c "import numpy, pywt, cv2, imwatermark" 2>/dev/null; then
  pip_install numpy PyWavelets opencv-python-headless
  pip_install --no-deps invisible-watermark
fi
if ! command -v cargo >/dev/null 2>&1; then
  # Debian 12's own cargo is too old (1.63) for this workspace; rustup installs a current one.
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
