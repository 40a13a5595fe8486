#!/usr/bin/env bash
# Benchmark: label audio and video files with `aigc-label mark`, next to `ffmpeg -c copy
# -metadata AIGC=...` (the usual way, which rewrites the container) and `cp`, in one script.
#   Part 1: a folder of FILES small files in every container (default 300).
#   Part 2: one large MP4 with moov first (every chunk offset shifts) and one RF64 WAV, SIZE_GB
#           each (default 4), to show memory stays flat.
# Each timing includes `sync`. Needs ffmpeg and /usr/bin/time.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
files=${1:-300}
size_gb=${SIZE_GB:-4}
work=$root/bench-out/mark_av
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p aigc-label
bin=$root/target/release/aigc-label
producer=001191110102MACQD9K64010000
json='{"Label":"1","ContentProducer":"'$producer'","ProduceID":"bench","ReservedCode1":"","ContentPropagator":"","PropagateID":"","ReservedCode2":""}'
t() { local s e; sync; s=$(date +%s.%N); "$@" >/dev/null 2>&1; sync; e=$(date +%s.%N); echo "$e - $s" | bc; }
rss() { grep "Maximum resident" "$1" | awk '{printf "%.1f", $6 / 1024}'; }
ffmeta() { # ffmpeg's way: remux each file with the tag (MP4/MOV need use_metadata_tags)
  for f in "$1"/*; do
    local extra=()
    case $f in *.mp4|*.mov|*.m4a) extra=(-movflags use_metadata_tags) ;; esac
    ffmpeg -v error -y -i "$f" -map 0 -c copy -metadata "AIGC=$json" "${extra[@]}" "$2/$(basename "$f")"
  done
}

# Part 1
src=$work/small
rm -rf "$work/small" "$work/small-ours" "$work/small-ff" "$work/small-cp"
mkdir -p "$src" "$work/small-ff"
mapfile -t samples < <(ls "$root"/testdata/samples-av/*)
for ((i = 0; i < files; i++)); do
  s=${samples[$((i % ${#samples[@]}))]}
  cp "$s" "$src/$(printf %05d "$i")-$(basename "$s")"
done
cat "$src"/* > /dev/null
ours=$(t "$bin" mark --no-watermark --no-rhythm -r "$src" --out-dir "$work/small-ours" --producer "$producer")
ff=$(t ffmeta "$src" "$work/small-ff")
cpt=$(t cp -r "$src" "$work/small-cp")
"$bin" verify -r --require "$work/small-ours" >/dev/null 2>&1 || { echo "outputs do not verify" >&2; exit 1; }
printf '\nmark_av part 1: %d audio/video files (%s), %s cores\n' "$files" "$(du -sh "$src" | cut -f1)" "$(nproc)"
printf '%-34s %9s %9s\n' tool seconds files/s
printf '%-34s %9.3f %9.1f\n' "aigc-label mark" "$ours" "$(echo "$files / $ours" | bc -l)"
printf '%-34s %9.3f %9.1f\n' "ffmpeg -c copy -metadata" "$ff" "$(echo "$files / $ff" | bc -l)"
printf '%-34s %9.3f %9.1f\n' "cp -r" "$cpt" "$(echo "$files / $cpt" | bc -l)"
printf 'ratio: aigc-label is %.1fx ffmpeg -c copy; takes %.2fx the time of cp -r\n' "$(echo "$ff / $ours" | bc -l)" "$(echo "$ours / $cpt" | bc -l)"
rm -rf "$work/small" "$work/small-ours" "$work/small-ff" "$work/small-cp"

# Part 2
big=$work/big
mkdir -p "$big"
if [ ! -f "$big/.done-$size_gb" ]; then
  rm -f "$big"/*
  # Loop the 1080p-class source by stream copy until SIZE_GB, then move moov to the front.
  ffmpeg -v error -f lavfi -i "testsrc2=size=1920x1080:rate=30:duration=20" -f lavfi -i "sine=duration=20" \
    -c:v libx264 -preset ultrafast -b:v 40M -c:a aac -shortest "$big/seed.mp4"
  ffmpeg -v error -stream_loop -1 -i "$big/seed.mp4" -c copy -fs "${size_gb}G" "$big/tmp.mp4"
  ffmpeg -v error -i "$big/tmp.mp4" -c copy -movflags +faststart "$big/large.mp4"
  rm -f "$big/tmp.mp4" "$big/seed.mp4"
  ffmpeg -v error -f lavfi -i "sine=frequency=440:sample_rate=48000" -ac 2 -c:a pcm_s24le -rf64 always \
    -fs "${size_gb}G" "$big/large.wav"
  touch "$big/.done-$size_gb"
fi
printf '\nmark_av part 2: single large files, %s cores\n' "$(nproc)"
printf '%-10s %8s %-26s %9s %12s\n' file size tool seconds peak-RSS-MB
for f in large.mp4 large.wav; do
  in=$big/$f
  sz=$(du -h "$in" | cut -f1)
  cat "$in" > /dev/null
  o=$(t /usr/bin/time -v -o "$work/ours.time" "$bin" mark --no-watermark --no-rhythm "$in" -o "$big/out-$f" --producer "$producer")
  printf '%-10s %8s %-26s %9.2f %12s\n' "$f" "$sz" "aigc-label mark" "$o" "$(rss "$work/ours.time")"
  "$bin" verify --require "$big/out-$f" >/dev/null
  rm -f "$big/out-$f"
  extra=()
  case $f in *.mp4) extra=(-movflags use_metadata_tags) ;; esac
  o=$(t /usr/bin/time -v -o "$work/ff.time" ffmpeg -v error -y -i "$in" -map 0 -c copy -metadata "AIGC=$json" "${extra[@]}" "$big/ff-$f")
  printf '%-10s %8s %-26s %9.2f %12s\n' "$f" "$sz" "ffmpeg -c copy -metadata" "$o" "$(rss "$work/ff.time")"
  rm -f "$big/ff-$f"
  o=$(t cp "$in" "$big/cp-$f")
  printf '%-10s %8s %-26s %9.2f %12s\n' "$f" "$sz" "cp" "$o" "-"
  rm -f "$big/cp-$f"
done
