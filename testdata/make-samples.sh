#!/usr/bin/env bash
# Rebuilds testdata/samples/ from testdata/grace_hopper.jpg (a public-domain US Navy photograph,
# shipped as sample data in matplotlib's wheel) with independent encoders: ImageMagick, cwebp,
# heif-enc. Debian: apt-get install imagemagick webp libheif-examples
set -euo pipefail
cd "$(dirname "$0")"
src=grace_hopper.jpg
out=samples
mkdir -p "$out"
convert "$src" -resize 320x "$out/photo.jpg"
convert "$src" -resize 256x "$out/photo.png"
convert "$src" -resize 192x -alpha set -channel A -evaluate set 80% +channel "$out/alpha.png"
cwebp -quiet -q 75 "$out/photo.png" -o "$out/lossy.webp"
cwebp -quiet -lossless "$out/alpha.png" -o "$out/lossless-alpha.webp"
convert "$src" -resize 200x -compress lzw "$out/photo.tif"
convert "$src" -resize 160x -colorspace Gray -depth 16 "$out/gray16.tif"
convert "$src" -resize 96x \( +clone -negate \) -set delay 50 -loop 0 -colors 64 "$out/anim.gif"
heif-enc -q 60 "$out/photo.png" -o "$out/photo.heic"
heif-enc -A -q 60 "$out/photo.png" -o "$out/photo.avif"
ls -la "$out"
