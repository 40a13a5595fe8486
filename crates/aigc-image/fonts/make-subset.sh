#!/usr/bin/env bash
# Cuts fonts/AIGCLabelSans-Bold.otf from Debian's fonts-noto-cjk (Noto Sans CJK SC Bold, SIL OFL
# 1.1): printable ASCII plus the Chinese characters label texts use. Renamed, as the OFL asks of
# modified fonts. Also writes OFL.txt from the package's copyright file.
# Needs: apt-get (download only), python3 with fonttools (pip install fonttools).
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download fonts-noto-cjk >/dev/null)
dpkg -x "$work"/fonts-noto-cjk_*.deb "$work/x"
# The OFL text is the copyright file's SIL-1.1 licence paragraph, after the fonts' copyright line.
{ awk '/^Files: \*$/ {on = 1; next} on && /^Copyright:/ {sub(/^Copyright: */, "Copyright "); print; next} on && /^License:/ {exit} on {sub(/^ +/, "Copyright "); print}' \
    "$work/x/usr/share/doc/fonts-noto-cjk/copyright"
  echo "AIGCLabelSans-Bold.otf is a subset of Noto Sans CJK SC Bold, renamed."
  echo
awk '/^License: SIL-1.1$/ && ++n == 2 {on = 1; next} on && /^License:/ {exit} on {sub(/^ /, ""); sub(/^\.$/, ""); print}' \
  "$work/x/usr/share/doc/fonts-noto-cjk/copyright"; } > OFL.txt
chars='AI生成合成人工智能本内容由的，。：（）、'
python3 - "$work/x/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc" "$chars" <<'PY'
import sys
from fontTools.ttLib import TTCollection
from fontTools import subset
path, chars = sys.argv[1], sys.argv[2]
font = TTCollection(path).fonts[2]  # Noto Sans CJK SC Bold
assert "SC" in font["name"].getDebugName(4)
opts = subset.Options()
opts.layout_features = ["kern", "palt"]
opts.name_IDs = ["*"]
opts.notdef_outline = True
sub = subset.Subsetter(opts)
sub.populate(text="".join(chr(c) for c in range(0x20, 0x7F)) + chars)
sub.subset(font)
family = "AIGC Label Sans"
for rec in font["name"].names:
    if rec.nameID in (1, 16):
        rec.string = family
    elif rec.nameID in (4,):
        rec.string = family + " Bold"
    elif rec.nameID == 6:
        rec.string = "AIGCLabelSans-Bold"
font.save("AIGCLabelSans-Bold.otf")
PY
ls -la AIGCLabelSans-Bold.otf OFL.txt
