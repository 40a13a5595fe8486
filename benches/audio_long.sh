#!/usr/bin/env bash
# Long audio files: time and peak memory of `mark` and `verify` against ffmpeg decoding the
# same file (to null), side by side, on MP3 128k files of MINUTES (default 3 20 120) made by
# looping the audio harness's eight music excerpts. `verify` runs on the unmarked file (the
# speed search always runs there, its slowest case) and on the marked one.
#
#   benches/audio_long.sh [MINUTES...]        $AIGC_BIN: another aigc-label binary to measure
#
# Needs audio_eval.py to have run once (bench-out/audio_eval/corpus). Prints one line per run:
# seconds, peak RSS, and the ratio of the run's time to ffmpeg's decode of the same file.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
corpus=$root/bench-out/audio_eval/corpus
dest=$root/bench-out/audio_long
bin=${AIGC_BIN:-$root/target/release/aigc-label}
if ! ls "$corpus"/music-*.wav > /dev/null 2>&1; then
  echo "run benches/audio_eval.py first (it makes the corpus)" >&2
  exit 1
fi
[ -n "${AIGC_BIN:-}" ] || (cd "$root" && cargo build --release --quiet -p aigc-label)
mkdir -p "$dest"
ff() { ffmpeg -v error -nostdin -y "$@"; }
# "SECONDS PEAK_KB" of a command.
measure() { /usr/bin/time -f "%e %M" "$@" 2>&1 > /dev/null | tail -1; }
for minutes in "${@:-3 20 120}"; do
  for m in $minutes; do
    long=$dest/long-$m.mp3
    if [ ! -e "$long" ]; then
      list=$dest/list-$m.txt
      : > "$list"
      # Eight one-minute excerpts, looped until there are enough.
      for i in $(seq 0 $((m - 1))); do
        files=("$corpus"/music-*.wav)
        echo "file '${files[$((i % ${#files[@]}))]}'" >> "$list"
      done
      ff -f concat -safe 0 -i "$list" -c:a libmp3lame -b:a 128k "$long"
    fi
    marked=$dest/long-$m-marked.mp3
    read -r ff_s ff_kb < <(measure ffmpeg -v error -nostdin -i "$long" -f null -)
    read -r mark_s mark_kb < <(measure "$bin" mark --producer 001191110102MACQD9K64010000 \
      "$long" -o "$marked")
    read -r v_s v_kb < <(measure "$bin" verify "$long")
    read -r vm_s vm_kb < <(measure "$bin" verify "$marked")
    found=$("$bin" verify --json "$marked" 2>/dev/null | grep -c '"watermark":{"detected":true' || true)
    printf '%4d min: ffmpeg decode %6.2f s %4d MB | mark %7.2f s %4d MB | verify unmarked %6.2f s %4d MB (%.1fx the decode) | verify marked %6.2f s %4d MB, watermark found: %s\n' \
      "$m" "$ff_s" $((ff_kb / 1024)) "$mark_s" $((mark_kb / 1024)) "$v_s" $((v_kb / 1024)) \
      "$(echo "$v_s / $ff_s" | bc -l)" "$vm_s" $((vm_kb / 1024)) "$([ "$found" = 1 ] && echo yes || echo NO)"
  done
done
