#!/usr/bin/env python3
"""A quick loop for tuning the image watermark: the attack suite of watermark_eval.py (same
ImageMagick and Pillow attacks) on a chosen subset of its photos, exact payloads only, no
dwtDct. About 12 s for the twelve photos of 256 and 512 px.

    benches/watermark_quick.py [--match REGEX] [--tag NAME] [--payloads N] [--attacks A,B,...]

Needs the photos watermark_eval.py prepared (bench-out/watermark_eval/originals). Each photo
gets the payload watermark_eval.py gives it, so the two agree; --payloads N marks each photo
N times (the first payload as watermark_eval.py's, the others drawn from it), which tells a
change from the luck of one payload. $AIGC_WM_RMS (read by wm_tool) tries another strength.
"""
import argparse, json, os, re, subprocess

import watermark_eval as W

ROOT = W.ROOT
TOOL = os.path.join(ROOT, "target/release/examples/wm_tool")
ORIGINALS = os.path.join(ROOT, "bench-out/watermark_eval/originals")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--match", default="256|512", help="regex on the photo's file name")
    ap.add_argument("--tag", default="quick", help="work folder under bench-out/watermark_quick")
    ap.add_argument("--payloads", type=int, default=1, help="payloads per photo")
    ap.add_argument("--attacks", default=",".join(W.ATTACKS), help="comma-separated subset")
    a = ap.parse_args()
    attacks = a.attacks.split(",")
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "aigc-image", "--example",
                    "wm_tool"], cwd=ROOT, check=True)
    names = sorted(os.listdir(ORIGINALS))
    found = total = 0
    psnrs = []
    by_attack = {}
    for k, name in enumerate(names):
        if not re.search(a.match, name):
            continue
        for j in range(a.payloads):
            payload = (0x9E3779B97F4A7C15 * (k + 1) * (0x2545F4914F6CDD1D ** j)) & (2 ** 64 - 1)
            stem = os.path.splitext(name)[0]
            d = os.path.join(ROOT, "bench-out/watermark_quick", a.tag, stem, str(j))
            os.makedirs(os.path.join(d, "att"), exist_ok=True)
            src, ours = os.path.join(ORIGINALS, name), os.path.join(d, "ours.png")
            subprocess.run([TOOL, "embed", src, ours, f"{payload:016x}"], check=True,
                           capture_output=True)
            psnrs.append(W.psnr(src, ours))
            attacked = [(at, W.attack(at, ours, os.path.join(d, "att"))) for at in attacks]
            out = subprocess.run([TOOL, "detect", *[p for _, p in attacked]], check=True,
                                 capture_output=True, text=True).stdout.splitlines()
            missed = []
            for (at, _), line in zip(attacked, out):
                f = json.loads(line)
                ok = f.get("detected") and int(f["payload"], 16) == payload
                found += bool(ok)
                total += 1
                by_attack[at] = by_attack.get(at, 0) + bool(ok)
                if not ok:
                    missed.append(at)
            print(f"{stem:22} PSNR {psnrs[-1]:.2f} dB, missed {missed}", flush=True)
    print("per attack: " + ", ".join(f"{at} {by_attack.get(at, 0)}/{len(psnrs)}" for at in attacks))
    print(f"{a.tag}: {found}/{total} exact payloads, PSNR mean {sum(psnrs) / len(psnrs):.2f} dB, "
          f"lowest {min(psnrs):.2f} dB")


if __name__ == "__main__":
    main()
