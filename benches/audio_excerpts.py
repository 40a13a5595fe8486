#!/usr/bin/env python3
"""A quick loop for the audio watermark's hardest bar: short excerpts after MP3 128k. Each file
of audio_eval.py's corpus is marked (awm_tool embed, as `mark` does), encoded once by the
ffmpeg CLI with libmp3lame at 128k, and cut into --per-file excerpts of --seconds at starts
spread evenly over the file; each excerpt is decoded back to WAV by ffmpeg and read by
awm_tool detect. One excerpt per file (audio_eval.py's figure) is too few to tell a change
from luck.

    benches/audio_excerpts.py [--per-file N] [--seconds S] [--payload-bits 64|128] [--tag NAME]
                              [--snr DB]

Needs the corpus audio_eval.py prepared (bench-out/audio_eval/corpus). About a minute.
Prints found/total per class and the agreement of what was missed.
"""
import argparse
import glob
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import audio_eval as A  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-file", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--payload-bits", type=int, default=64, choices=(64, 128))
    ap.add_argument("--tag", default="quick")
    ap.add_argument("--snr", type=float, help="a fixed strength (dB), instead of what mark uses")
    a = ap.parse_args()
    payload = "1234567890abcdef" if a.payload_bits == 64 else "1234567890abcdef0fedcba987654321"
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "aigc-audio", "--example",
                    "awm_tool"], cwd=A.ROOT, check=True)
    work = os.path.join(A.ROOT, "bench-out", "audio_excerpts", a.tag)
    os.makedirs(work, exist_ok=True)
    corpus = sorted(glob.glob(os.path.join(A.WORK, "corpus", "*.wav")))
    if not corpus:
        raise SystemExit("no corpus: run benches/audio_eval.py first")
    excerpts = []
    snrs = {}
    for f in corpus:
        stem = os.path.basename(f)[:-4]
        marked = os.path.join(work, stem + ".wav")
        env = {**os.environ, "AIGC_WM_PAYLOAD": payload}
        if a.snr is not None:
            env["AIGC_WM_SNR"] = str(a.snr)
        r = json.loads(A.sh(A.TOOL, "embed", f, marked, env=env).stdout)
        snrs[stem] = r["snr_db"]
        mp3 = os.path.join(work, stem + ".mp3")
        A.ff("-i", marked, "-c:a", "libmp3lame", "-b:a", "128k", mp3)
        d = len(A.read_wav(marked)) / 44100
        span = max(0.0, d - a.seconds - 0.5)
        for i in range(a.per_file):
            start = span * (i + 0.5) / a.per_file
            out = os.path.join(work, f"{stem}-{i:02}.wav")
            A.ff("-ss", f"{start:.3f}", "-t", f"{a.seconds}", "-i", mp3, "-ar", "44100",
                 "-c:a", "pcm_f32le", out)
            excerpts.append((stem.split("-")[0], out))
    lines = A.sh(A.TOOL, "detect", *[p for _, p in excerpts]).stdout.decode().splitlines()
    found, total, missed = {}, {}, []
    for (cls, path), line in zip(excerpts, lines):
        r = json.loads(line)
        ok = r["found"] and r["payload"] == payload
        found[cls] = found.get(cls, 0) + ok
        total[cls] = total.get(cls, 0) + 1
        if not ok:
            missed.append(f"{os.path.basename(path)[:-4]} ({r['agreement']:.3f})")
    print("missed: " + ", ".join(missed))
    for cls in sorted({s.split("-")[0] for s in snrs}):
        s = [v for k, v in snrs.items() if k.startswith(cls)]
        print(f"{cls}: SNR mean {sum(s) / len(s):.2f} dB, lowest {min(s):.2f}")
    print(f"{a.tag} ({a.payload_bits} bits, {a.seconds:g} s): " +
          ", ".join(f"{c} {found[c]}/{total[c]}" for c in sorted(total)) +
          f", all {sum(found.values())}/{sum(total.values())}")


if __name__ == "__main__":
    main()
