#!/usr/bin/env bash
# Benchmark: the metadata label alone (--no-visible --no-watermark) on a folder of JPEG and PNG
# files (1-12 MP, real wallpapers/photos) with
# `aigc-label mark`, and in the same script copy it with `cp -r` and label that copy with
# exiftool writing the same XMP tag. Reports throughput ratios and peak memory.
#
#   benches/mark_images.sh [FILES]      (default 1000; needs imagemagick, exiftool, time)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
files=${1:-1000}
work=$root/bench-out/mark_images
photos=$("$root/benches/fetch-photos.sh")
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p aigc-label
bin=$root/target/release/aigc-label
producer=001191110102MACQD9K64010000

# Distinct base images: each photo at 1, 2, 4, 6, 8 and 12 MP, as JPEG (q90) and PNG.
base=$work/base
if [ ! -f "$base/.done" ]; then
  rm -rf "$base"; mkdir -p "$base"
  for p in "$photos"/*; do
    n=$(basename "${p%.*}")
    for mp in 1 2 4 6 8 12; do
      px=$((mp * 1000000))
      convert "$p" -resize "${px}@" -quality 90 "$base/$n-${mp}mp.jpg"
      convert "$p" -resize "${px}@" "$base/$n-${mp}mp.png"
    done
  done
  touch "$base/.done"
fi
# The folder under test: FILES files cycling through the bases (half JPEG, half PNG).
src=$work/src
rm -rf "$src" "$work/ours" "$work/cp"
mkdir -p "$src"
mapfile -t bases < <(ls "$base"/*.jpg "$base"/*.png | sort -t- -k2 | awk 'NR%2{print}NR%2==0{print}')
for ((i = 0; i < files; i++)); do
  b=${bases[$((i % ${#bases[@]}))]}
  cp "$b" "$src/$(printf %05d "$i")-$(basename "$b")"
done
bytes=$(du -sb "$src" | cut -f1)
cat "$src"/* > /dev/null   # every run starts with the input in the page cache

# Each timing includes `sync`: every tool writes the same bytes, and that cost must count.
t() { local s e; sync; s=$(date +%s.%N); "$@" >/dev/null 2>&1; sync; e=$(date +%s.%N); echo "$e - $s" | bc; }
mem() { grep "Maximum resident" "$1" | awk '{print $6}'; }

ours=$(t /usr/bin/time -v -o "$work/ours.time" "$bin" mark --no-visible --no-watermark -r "$src" --out-dir "$work/ours" --producer "$producer")
sync
cpt=$(t cp -r "$src" "$work/cp")
sync
json='{"Label":"1","ContentProducer":"'$producer'","ProduceID":"bench","ReservedCode1":"","ContentPropagator":"","PropagateID":"","ReservedCode2":""}'
exif=$(t /usr/bin/time -v -o "$work/exif.time" exiftool -config "$root/testdata/exiftool-tc260.config" -q -overwrite_original -r "-XMP-TC260:AIGC=$json" "$work/cp")

# Every output carries the label (a sample read back by exiftool).
outs=("$work"/ours/*)
for f in "${outs[0]}" "${outs[1]}" "${outs[$((files - 1))]}"; do
  exiftool -config "$root/testdata/exiftool-tc260.config" -s3 -XMP-TC260:AIGC "$f" | grep -q ProduceID \
    || { echo "exiftool does not read the label in $f" >&2; exit 1; }
done
"$bin" verify -r --require "$work/ours" >/dev/null 2>&1 || { echo "verify --require failed on the outputs" >&2; exit 1; }

mb=$(echo "scale=1; $bytes / 1048576" | bc)
printf '\nmark_images: %d files (%s MB, JPEG+PNG, 1-12 MP), %s\n' "$files" "$mb" "$(nproc) cores"
printf '%-28s %9s %11s %12s\n' tool seconds files/s peak-RSS-MB
printf '%-28s %9.3f %11.1f %12.1f\n' "aigc-label mark" "$ours" "$(echo "$files / $ours" | bc -l)" "$(echo "$(mem "$work/ours.time") / 1024" | bc -l)"
printf '%-28s %9.3f %11.1f %12s\n' "cp -r" "$cpt" "$(echo "$files / $cpt" | bc -l)" "-"
printf '%-28s %9.3f %11.1f %12.1f\n' "exiftool (same tag)" "$exif" "$(echo "$files / $exif" | bc -l)" "$(echo "$(mem "$work/exif.time") / 1024" | bc -l)"
printf 'ratio: aigc-label is %.1fx exiftool; takes %.2fx the time of cp -r\n' "$(echo "$exif / $ours" | bc -l)" "$(echo "$ours / $cpt" | bc -l)"
rm -rf "$work/ours" "$work/cp" "$src"
