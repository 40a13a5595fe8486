#!/usr/bin/env bash
# Builds bench-out/audio_fp, the unmarked audio the false-positive trials run on:
#   target/release/examples/awm_tool fp-trials 250 bench-out/audio_fp/*
# From the wesnoth tracks audio_eval.py does not use (20 s from 0:30, or from the start of a
# track under 50 s; tracks under 8 s are left out), its four speech files (20 s from 0:05),
# and MP3 64k copies of five of the music excerpts. Needs audio_eval.py to have run once (it
# fetches the music and makes the speech). Prints the folder.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=$root/bench-out/audio_fp
corpus=$root/bench-out/audio_eval/corpus
music=$(ls "$root"/bench-out/music/x/usr/share/games/wesnoth/*/data/core/music/*.ogg 2>/dev/null || true)
if [ -z "$music" ] || [ ! -d "$corpus" ]; then
  echo "run benches/audio_eval.py first (it fetches the music and makes the speech)" >&2
  exit 1
fi
mkdir -p "$dest"
ff() { ffmpeg -v error -nostdin -y "$@"; }
secs() { ffprobe -v error -show_entries format=duration -of csv=p=0 "$1"; }
for ogg in $music; do
  name=$(basename "$ogg" .ogg)
  [ -e "$corpus/music-$name.wav" ] && continue
  len=$(secs "$ogg")
  out=$dest/m-$name.wav
  if awk "BEGIN{exit !($len < 8)}"; then continue; fi
  if awk "BEGIN{exit !($len < 50)}"; then
    ff -t 20 -i "$ogg" -ar 44100 -ac 2 -c:a pcm_s16le "$out"
  else
    ff -ss 30 -t 20 -i "$ogg" -ar 44100 -ac 2 -c:a pcm_s16le "$out"
  fi
done
for s in "$corpus"/speech-*.wav; do
  ff -ss 5 -t 20 -i "$s" -c:a pcm_s16le "$dest/$(basename "$s")"
done
for w in $(ls "$dest"/m-*.wav | sed -n '5,9p'); do
  ff -i "$w" -c:a libmp3lame -b:a 64k "${w%.wav}-64k.mp3"
done
echo "$dest"
