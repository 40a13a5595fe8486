#!/usr/bin/env python3
"""The share of quiet hops that tells speech from music for the audio watermark's strength
(aigc_audio::watermark::Pauses): hops of 1/75 s quieter than half the mean of their 64-hop
window, on the file decoded by the ffmpeg CLI to 16 kHz mono. The marker aims at 36 dB under
the sound up to 0.35 and 33 dB from 0.5.

    benches/pause_share.py FILE...
"""
import subprocess, sys

import numpy as np

RATE, WINDOW = 16000, 64


def share(path):
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-ac", "1", "-ar", str(RATE),
                          "-f", "f32le", "-"], capture_output=True, check=True).stdout
    x = np.frombuffer(raw, np.float32)
    hop = RATE // 75
    n = len(x) // hop
    e = (x[: n * hop].reshape(n, hop).astype(np.float64) ** 2).sum(1)
    quiet = hops = 0
    for b in range(0, n - WINDOW + 1, WINDOW):
        w = e[b:b + WINDOW]
        if w.mean() > 0:
            quiet += int((w < 0.5 * w.mean()).sum())
            hops += WINDOW
    return quiet / hops if hops else 0.0


for p in sys.argv[1:]:
    print(f"{share(p):.2f} {p}")
