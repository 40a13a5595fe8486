#!/usr/bin/env python3
"""The rhythm label on real music and speech: is it found where `mark` put it after mp3_64 and
resample16k, and never in audio that does not carry it?

Labelled: the audio_eval.py corpus (music and speech, 44.1 kHz stereo WAV) marked by
`aigc-label mark` (watermark and metadata label included, as a user gets them) three ways:
inserted at the start (the default), inserted at the end (`--rhythm-at end`), and mixed over
the sound 20 s in (`--rhythm-mix --rhythm-at 20`, the label over loud music). Each output is
attacked by audio_eval.py's own ffmpeg attacks and read by `aigc-label verify --json`; a label
counts as found when an occurrence starts within 0.1 s of where `mark` reported it.

Unlabelled: the corpus originals and bench-out/audio_fp (the false-positive set, when
benches/audio_fp_set.sh has made it) under the same attacks; any occurrence is a false
detection.

    python3 benches/rhythm_eval.py [--music N] [--speech N] [--attacks none,mp3_64,resample16k]

Writes bench-out/rhythm_eval/results.json.
"""
import argparse
import glob
import json
import os
import random
import shutil

import audio_eval as A

ROOT = A.ROOT
WORK = os.path.join(ROOT, "bench-out", "rhythm_eval")
BIN = os.path.join(ROOT, "target", "release", "aigc-label")
PRODUCER = "001191110102MACQD9K64010000"
VARIANTS = [
    ("start", []),
    ("end", ["--rhythm-at", "end"]),
    ("mixed20", ["--rhythm-mix", "--rhythm-at", "20"]),
]
TOLERANCE_S = 0.1


def json_lines(*cmd):
    out = A.sh(*cmd).stdout.decode()
    return [json.loads(l) for l in out.splitlines() if l.strip()]


def verify(paths):
    """path -> the rhythm finding of `verify --json` (the watermark is not looked for: only
    the rhythm is measured here, and the two detectors are independent)."""
    rows = json_lines(BIN, "verify", "--json", "--no-watermark", *paths)
    return {r["path"]: r.get("rhythm") or {"detected": False, "occurrences": []} for r in rows}


def attacked_copies(name, files, dest, rng):
    """`name` applied to each of `files`: the attacked WAVs, in order."""
    os.makedirs(dest, exist_ok=True)
    outs = []
    for f in files:
        out = os.path.join(dest, os.path.splitext(os.path.basename(f))[0] + ".wav")
        A.attack(name, f, out, rng)
        outs.append(out)
    return outs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--music", type=int, default=8)
    ap.add_argument("--speech", type=int, default=4)
    ap.add_argument("--attacks", default="none,mp3_64,resample16k")
    a = ap.parse_args()
    attacks = a.attacks.split(",")
    A.sh("cargo", "build", "--release", "--quiet", "-p", "aigc-label", cwd=ROOT)
    corpus = [f for _, f in A.corpus(a.music, a.speech)]
    shutil.rmtree(WORK, ignore_errors=True)
    rng = random.Random(45438)
    results = {"labelled": {}, "unlabelled": {}}
    print(f"{'labelled':10} {'attack':12} {'found':>7} {'off by (max)':>13}")
    for variant, opts in VARIANTS:
        out_dir = os.path.join(WORK, variant, "marked")
        rows = json_lines(BIN, "mark", "--json", *corpus, "--out-dir", out_dir, "--producer",
                          PRODUCER, *opts)
        expected = {r["output"]: r["rhythm"]["start_seconds"] for r in rows}
        marked = sorted(expected)
        for name in attacks:
            outs = attacked_copies(name, marked, os.path.join(WORK, variant, name), rng)
            found = verify(outs)
            hits, worst, missed = 0, 0.0, []
            for src, out in zip(marked, outs):
                starts = [o["start_seconds"] for o in found[out]["occurrences"]]
                off = min((abs(s - expected[src]) for s in starts), default=None)
                if off is not None and off <= TOLERANCE_S:
                    hits += 1
                    worst = max(worst, off)
                else:
                    missed.append(os.path.basename(src))
            results["labelled"].setdefault(variant, {})[name] = {
                "found": hits, "total": len(outs), "max_offset_s": worst, "missed": missed}
            print(f"{variant:10} {name:12} {hits:>3}/{len(outs):<3} {worst * 1000:10.0f} ms"
                  + (f"  missed {missed}" if missed else ""), flush=True)
    unlabelled = corpus + sorted(glob.glob(os.path.join(ROOT, "bench-out", "audio_fp", "*")))
    print(f"{'unlabelled':10} {'attack':12} {'false':>7}")
    for name in attacks:
        outs = attacked_copies(name, unlabelled, os.path.join(WORK, "unlabelled", name), rng)
        found = verify(outs)
        false = [os.path.basename(p) for p in outs if found[p]["detected"]]
        results["unlabelled"][name] = {"false_detections": len(false), "total": len(outs),
                                       "files": false}
        print(f"{'':10} {name:12} {len(false):>3}/{len(outs):<3}"
              + (f"  {false}" if false else ""), flush=True)
    with open(os.path.join(WORK, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
