#!/usr/bin/env python3
"""Video evaluation: the attack suite of ../shared/EVAL.md on pan-and-zoom clips, and the speed
of `mark` next to a plain `ffmpeg -c:v libx264` transcode with the same settings.

Corpus (made here, never committed): the ffmpeg CLI pans and zooms (`zoompan`) over the
plasma wallpapers (benches/fetch-photos.sh) with wesnoth music as the soundtrack, encoded with
libx264 at several sizes. Attacks come from the ffmpeg CLI and strip the metadata, so only the
watermark can link a file back. Detection means `aigc-label verify` reports the exact payload.

Prints per attack: detection rate of the pictures' watermark, the soundtrack's watermark and
the rhythm label, and verify time; per clip: the watermark's luma PSNR (before encoding, from
mark's report), the soundtrack's SNR, and the mark / ffmpeg time ratio (ffmpeg re-encodes the
sound too, at its bitrate, as mark does). With --fp N, runs N random keys
over every unmarked clip and its attacked copies. Writes bench-out/video_eval/results.json.

  python3 benches/video_eval.py [--clips N] [--seconds S] [--fp N] [--attacks a,b]
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "bench-out", "video_eval")
AIGC = os.path.join(ROOT, "target", "release", "aigc-label")
VWM = os.path.join(ROOT, "target", "release", "examples", "vwm_tool")
PRODUCER = "001191110102MACQD9K64010000"
SIZES = [(1280, 720), (1920, 1080), (854, 480)]


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, **kw)


def ff(*args):
    sh("ffmpeg", "-v", "error", "-y", *args)


def duration(path):
    out = sh("ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path)
    return float(out.stdout.decode().strip())


def corpus(n, seconds):
    src = os.path.join(WORK, "corpus")
    os.makedirs(src, exist_ok=True)
    photos = sorted(glob.glob(os.path.join(ROOT, "bench-out", "photos", "*.jpg")))
    if not photos:
        sh("bash", os.path.join(ROOT, "benches", "fetch-photos.sh"))
        photos = sorted(glob.glob(os.path.join(ROOT, "bench-out", "photos", "*.jpg")))
    music = sorted(glob.glob(os.path.join(ROOT, "bench-out", "music", "x", "usr", "share", "games",
                                          "wesnoth", "*", "data", "core", "music", "*.ogg")))
    if not music:
        sh(sys.executable, os.path.join(ROOT, "benches", "audio_eval.py"), "--music", "1",
           "--speech", "0", "--attacks", "none")
        music = sorted(glob.glob(os.path.join(ROOT, "bench-out", "music", "x", "usr", "share",
                                              "games", "wesnoth", "*", "data", "core", "music",
                                              "*.ogg")))
    clips = []
    for i in range(n):
        photo = photos[(i * 7) % len(photos)]
        w, h = SIZES[i % len(SIZES)]
        length = "" if seconds == 10 else f"-{seconds:g}s"
        out = os.path.join(src, f"clip{i:02d}-{w}x{h}{length}.mp4")
        if not os.path.exists(out):
            frames = int(seconds * 30)
            # Alternate zooming in with panning across, so every clip moves differently.
            if i % 2 == 0:
                zp = (f"zoompan=z='min(zoom+0.0012,1.4)':x='iw/2-(iw/zoom/2)':"
                      f"y='ih/2-(ih/zoom/2)':d={frames}:s={w}x{h}:fps=30")
            else:
                zp = (f"zoompan=z=1.3:x='(iw-iw/zoom)*on/{frames}':y='ih/2-(ih/zoom/2)':"
                      f"d={frames}:s={w}x{h}:fps=30")
            ff("-loop", "1", "-i", photo, "-stream_loop", "-1", "-ss", str(20 + 7 * i),
               "-i", music[i % len(music)],
               "-filter_complex", f"[0:v]scale=3840:-2,{zp},format=yuv420p[v]",
               "-map", "[v]", "-map", "1:a", "-t", str(seconds), "-c:v", "libx264", "-crf", "20",
               "-preset", "fast", "-c:a", "aac", "-b:a", "128k", out)
        clips.append(out)
    return clips


def attacks(seconds):
    enc = ["-c:v", "libx264", "-preset", "fast", "-c:a", "copy", "-map_metadata", "-1"]
    mid = max(0.0, seconds / 2 - 2.5)
    return {
        "none": ["-c", "copy", "-map_metadata", "-1"],
        "h264_crf23": enc + ["-crf", "23"],
        "h264_crf28": enc + ["-crf", "28"],
        "scale50": ["-vf", "scale=trunc(iw/4)*2:trunc(ih/4)*2"] + enc + ["-crf", "23"],
        # 1080p to 720p, 720p to 480p: a platform's smaller rendition, at a scale the
        # detector must search for.
        "scale67": ["-vf", "scale=trunc(iw/3)*2:trunc(ih/3)*2"] + enc + ["-crf", "23"],
        "crop80": ["-vf", "crop=trunc(iw*0.4)*2:trunc(ih*0.4)*2"] + enc + ["-crf", "23"],
        "fps24": ["-vf", "fps=24"] + enc + ["-crf", "23"],
        "cut5": ["-ss", f"{mid:.2f}", "-t", "5"] + enc + ["-crf", "23"],
        # The sound alone re-encoded, the pictures copied: for the soundtrack's watermark.
        "aac96": ["-c:v", "copy", "-c:a", "aac", "-b:a", "96k", "-map_metadata", "-1"],
    }


def attack(src, name, args, out_dir):
    out = os.path.join(out_dir, f"{os.path.basename(src)[:-4]}-{name}.mp4")
    if name == "cut5":
        ff(args[0], args[1], "-i", src, *args[2:], out)
    else:
        ff("-i", src, *args, out)
    return out


def audio_bit_rate(path):
    o = sh("ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
           "stream=bit_rate", "-of", "csv=p=0", path)
    text = o.stdout.decode().strip()
    return text if text.isdigit() else "128000"


def verify(path, extra=()):
    t = time.perf_counter()
    o = subprocess.run([AIGC, "verify", "--json", *extra, path], capture_output=True)
    dt = time.perf_counter() - t
    lines = [l for l in o.stdout.decode().splitlines() if l.startswith("{")]
    return (json.loads(lines[0]) if lines else {"error": o.stderr.decode()}), dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--fp", type=int, default=0, help="random keys per unmarked file")
    ap.add_argument("--attacks", default="")
    a = ap.parse_args()
    sh("cargo", "build", "--release", "-q", "-p", "aigc-label", cwd=ROOT)
    sh("cargo", "build", "--release", "-q", "-p", "aigc-video", "--examples", cwd=ROOT)
    clips = corpus(a.clips, a.seconds)
    marked_dir = os.path.join(WORK, "marked")
    att_dir = os.path.join(WORK, "attacked")
    ref_dir = os.path.join(WORK, "ffmpeg")
    for d in (marked_dir, att_dir, ref_dir):
        os.makedirs(d, exist_ok=True)
    suite = attacks(a.seconds)
    if a.attacks:
        suite = {k: v for k, v in suite.items() if k in a.attacks.split(",")}
    per_clip = []
    t_mark = t_ffmpeg = 0.0
    for i, clip in enumerate(clips):
        out = os.path.join(marked_dir, os.path.basename(clip))
        ref = os.path.join(ref_dir, os.path.basename(clip))

        def run_mark():
            t = time.perf_counter()
            o = sh(AIGC, "mark", "--json", clip, "-o", out, "--producer", PRODUCER)
            return time.perf_counter() - t, json.loads(
                [l for l in o.stdout.decode().splitlines() if l.startswith("{")][0])

        def run_ffmpeg(crf, preset):
            t = time.perf_counter()
            # A plain transcode re-encodes the sound too, as mark does: the same codec and bitrate.
            ff("-i", clip, "-c:v", "libx264", "-crf", str(crf), "-preset", preset, "-c:a", "aac",
               "-b:a", audio_bit_rate(clip), ref)
            return time.perf_counter() - t

        # Alternate which runs first, so drift on a noisy machine evens out.
        if i % 2 == 0:
            dm, rep = run_mark()
            df = run_ffmpeg(rep["crf"], rep["preset"])
        else:
            probe, rep = run_mark()  # to learn the settings; timed again below
            df = run_ffmpeg(rep["crf"], rep["preset"])
            dm, rep = run_mark()
        t_mark += dm
        t_ffmpeg += df
        dur = duration(clip)
        v, vt = verify(out)
        row = {"clip": os.path.basename(clip), "width": rep["width"], "height": rep["height"],
               "seconds": dur, "crf": rep["crf"], "psnr_db": rep["watermark"]["psnr_db"],
               "mark_s": dm, "ffmpeg_s": df, "ratio": df / dm,
               "bytes_marked": os.path.getsize(out), "bytes_ffmpeg": os.path.getsize(ref),
               "visible_until": (v.get("visible") or {}).get("until_seconds"),
               "payload": rep["watermark"]["payload"], "verify_s": vt,
               "verify_x_realtime": dur / vt,
               "sound_payload": ((rep.get("sound") or {}).get("watermark") or {}).get("payload"),
               "sound_snr_db": ((rep.get("sound") or {}).get("watermark") or {}).get("snr_db"),
               "attacks": {}}
        for name, args in suite.items():
            f = attack(out, name, args, att_dir)
            res, dt = verify(f)
            wm = res.get("watermark") or {}
            ok = bool(wm.get("detected")) and wm.get("payload") == rep["watermark"]["payload"]
            snd = res.get("sound") or {}
            sound_ok = bool((snd.get("watermark") or {}).get("detected")) and \
                (snd.get("watermark") or {}).get("payload") == row["sound_payload"]
            rhythm_ok = bool((snd.get("rhythm") or {}).get("detected"))
            row["attacks"][name] = {"detected": ok, "verify_s": dt, "sound_detected": sound_ok,
                                    "rhythm_detected": rhythm_ok,
                                    "verdict": res.get("verdict"), "seconds": duration(f)}
        per_clip.append(row)
        print(f"{row['clip']}: psnr {row['psnr_db']:.2f} dB, mark {dm:.2f} s vs ffmpeg {df:.2f} s "
              f"(ratio {df / dm:.2f}), size {row['bytes_marked'] / row['bytes_ffmpeg']:.2f}x, "
              f"verify {vt:.2f} s ({dur / vt:.1f}x real time), visible until "
              f"{row['visible_until']} s; "
              + " ".join(f"{k}:{'ok' if r['detected'] else 'MISS'}"
                         f"/{'ok' if r['sound_detected'] else 'MISS'}"
                         f"/{'ok' if r['rhythm_detected'] else 'MISS'}"
                         for k, r in row["attacks"].items()), flush=True)
    print()
    print(f"{'attack':<12} {'pictures':>9} {'sound':>9} {'rhythm':>9} {'verify s':>9}")
    summary = {}
    n = len(per_clip)
    for name in suite:
        hits = sum(r["attacks"][name]["detected"] for r in per_clip)
        sound = sum(r["attacks"][name]["sound_detected"] for r in per_clip)
        rhythm = sum(r["attacks"][name]["rhythm_detected"] for r in per_clip)
        vt = sum(r["attacks"][name]["verify_s"] for r in per_clip) / n
        summary[name] = {"detected": hits, "clips": n, "rate": hits / n,
                         "sound_detected": sound, "rhythm_detected": rhythm,
                         "verify_s_mean": vt}
        print(f"{name:<12} {hits:>4}/{n:<4} {sound:>4}/{n:<4} {rhythm:>4}/{n:<4} {vt:>9.2f}")
    snr = [r["sound_snr_db"] for r in per_clip if r["sound_snr_db"] is not None]
    if snr:
        print(f"soundtrack watermark SNR: mean {sum(snr) / len(snr):.2f} dB, "
              f"min {min(snr):.2f} dB")
    psnr = [r["psnr_db"] for r in per_clip]
    print(f"\nwatermark luma PSNR: mean {sum(psnr) / len(psnr):.2f} dB, min {min(psnr):.2f} dB")
    print(f"throughput: mark {t_mark:.1f} s, ffmpeg -c:v libx264 (same crf and preset, the "
          f"sound re-encoded at its bitrate) "
          f"{t_ffmpeg:.1f} s: mark runs at {t_ffmpeg / t_mark:.2f}x ffmpeg's speed")
    fp = None
    if a.fp:
        files = list(clips)
        for clip in clips:
            for name, args in suite.items():
                if name != "none":
                    files.append(attack(clip, name, args, att_dir))
        o = sh(VWM, "fp-trials", str(a.fp), *files)
        text = o.stdout.decode()
        print(text.splitlines()[-2])
        fp = json.loads(text.splitlines()[-1])
    with open(os.path.join(WORK, "results.json"), "w") as f:
        json.dump({"clips": per_clip, "summary": summary, "mark_s": t_mark, "ffmpeg_s": t_ffmpeg,
                   "throughput_ratio": t_ffmpeg / t_mark, "false_positives": fp}, f, indent=1)


if __name__ == "__main__":
    main()
