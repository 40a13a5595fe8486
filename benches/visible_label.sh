#!/usr/bin/env bash
# Benchmark and evaluation of the visible label on real photographs (plasma wallpapers) and
# drawings (Adwaita 512 px icons, transparent):
#  1. rendering cost of one label on a 12 MP image, per core (examples/render_timing.rs);
#  2. end to end, `aigc-label mark --no-watermark` against ImageMagick drawing the same text with
#     the same font and plate (`convert -annotate`) on the same files, same JPEG quality;
#  3. detection by `verify` after ImageMagick's JPEG q75 and 50% resize, and false detections on
#     the unlabeled originals and their attacked copies.
#
#   benches/visible_label.sh        (needs imagemagick; writes bench-out/visible_label/)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$root/bench-out/visible_label
photos=$("$root/benches/fetch-photos.sh")
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p aigc-label --examples
bin=$root/target/release/aigc-label
font=$root/crates/aigc-image/fonts/AIGCLabelSans-Bold.otf
producer=001191110102MACQD9K64010000
rm -rf "$work"; mkdir -p "$work/src" "$work/ours" "$work/magick" "$work/attacked" "$work/clean"

# Inputs: every photo at 12 MP (JPEG q90), and the drawings as they are.
for p in "$photos"/*; do
  convert "$p" -resize "12000000@" -quality 90 "$work/src/$(basename "${p%.*}").jpg"
done
for p in /usr/share/icons/Adwaita/512x512/*/*.png; do
  [ -f "$p" ] && cp "$p" "$work/src/icon-$(basename "$p")"
done
n=$(ls "$work/src" | wc -l)

echo "== 1. rendering one label on 12 MP, one core"
"$root/target/release/examples/render_timing" "$(ls "$work"/src/*.jpg | head -1)"

echo "== 2. end to end on $n files, one process at a time"
now() { date +%s.%N; }
t0=$(now)
for f in "$work"/src/*; do
  "$bin" mark --no-watermark -j 1 "$f" -o "$work/ours/$(basename "$f")" --producer "$producer" >/dev/null 2>&1
done
t1=$(now)
for f in "$work"/src/*; do
  # The same text, font, height (6% of the shortest side), plate and corner.
  wh=$(identify -format "%w %h" "$f"); w=${wh% *}; h=${wh#* }
  s=$(( w < h ? w : h )); pt=$(( s * 6 / 100 * 100 / 70 )); m=$(( s * 2 / 100 ))
  convert "$f" -gravity SouthEast -font "$font" -pointsize "$pt" -fill white \
    -undercolor '#000000B0' -annotate "+$m+$m" 'AI生成' -quality 90 "$work/magick/$(basename "$f")"
done
t2=$(now)
ours=$(echo "$t1 - $t0" | bc); magick=$(echo "$t2 - $t1" | bc)
printf 'aigc-label %.2f s, ImageMagick %.2f s: aigc-label is %.2fx ImageMagick'"'"'s speed\n' \
  "$ours" "$magick" "$(echo "$magick / $ours" | bc -l)"

echo "== 3. detection after jpeg75 and resize50; false detections on unlabeled files"
positions=(top-left top top-right left right bottom-left bottom bottom-right)
i=0
for f in "$work"/src/*; do
  b=$(basename "$f"); pos=${positions[$((i % 8))]}; i=$((i + 1))
  "$bin" mark --no-watermark "$f" -o "$work/ours/$b" --position "$pos" --producer "$producer" >/dev/null 2>&1
  echo "$b $pos" >> "$work/positions"
  convert "$work/ours/$b" -quality 75 "$work/attacked/jpeg75-${b%.*}.jpg"
  convert "$work/ours/$b" -resize 50% "$work/attacked/resize50-$b"
  convert "$f" -quality 75 "$work/clean/jpeg75-${b%.*}.jpg"
  convert "$f" -resize 50% "$work/clean/resize50-$b"
  cp "$f" "$work/clean/orig-$b"
done
"$bin" verify --json -r "$work/attacked" > "$work/attacked.jsonl" || true
"$bin" verify --json -r "$work/clean" > "$work/clean.jsonl" || true
python3 - "$work" <<'PY'
import json, os, sys
work = sys.argv[1]
want = dict(l.split() for l in open(os.path.join(work, "positions")))
rows = {}
for line in open(os.path.join(work, "attacked.jsonl")):
    v = json.loads(line)
    name = os.path.basename(v["path"])
    attack, rest = name.split("-", 1)
    stem = rest.rsplit(".", 1)[0]
    pos = next(p for b, p in want.items() if b.rsplit(".", 1)[0] == stem)
    vis = v.get("visible") or {}
    ok = vis.get("detected") and vis.get("position") == pos and vis["text_height_ratio"] >= 0.05
    r = rows.setdefault(attack, [0, 0]); r[0] += bool(ok); r[1] += 1
for attack, (ok, n) in sorted(rows.items()):
    print(f"{attack:9} found in the right place at >= 5%: {ok}/{n} ({100*ok/n:.1f}%)")
fp = n = 0
for line in open(os.path.join(work, "clean.jsonl")):
    v = json.loads(line); n += 1
    fp += bool((v.get("visible") or {}).get("detected"))
print(f"unlabeled (originals, jpeg75, resize50): {fp} false detections in {n} files")
PY
