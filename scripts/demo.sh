#!/usr/bin/env bash
# The main job on the bundled sample media: label every image, audio and video file in
# testdata/samples and testdata/samples-av (writing to labeled-samples/), verify the results, and
# show that independent tools (exiftool, ffprobe) read the label.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --quiet -p aigc-label
bin=target/release/aigc-label
rm -rf labeled-samples
$bin mark -r testdata/samples testdata/samples-av --out-dir labeled-samples --producer 001191110102MACQD9K64010000
$bin verify -r --require labeled-samples
echo
echo "exiftool reads the label back:"
exiftool -config testdata/exiftool-tc260.config -s -XMP-TC260:AIGC labeled-samples/photo.jpg
echo "ffprobe reads the label of a video:"
ffprobe -v error -show_entries format_tags=AIGC -of default=nw=1 labeled-samples/clip.mp4
