#!/usr/bin/env bash
# The main job on the bundled sample media: label every image in testdata/samples (writing to
# labeled-samples/), then verify the results, and show that exiftool reads the label.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --quiet -p aigc-label
bin=target/release/aigc-label
rm -rf labeled-samples
$bin mark -r testdata/samples --out-dir labeled-samples --producer 001191110102MACQD9K64010000
$bin verify -r --require labeled-samples
echo
echo "exiftool reads the label back:"
exiftool -config testdata/exiftool-tc260.config -s -XMP-TC260:AIGC labeled-samples/photo.jpg
