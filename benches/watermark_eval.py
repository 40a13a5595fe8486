#!/usr/bin/env python3
"""Evaluation of the image watermark against the attack suite of shared/EVAL.md, with
invisible-watermark's dwtDct (the watermark Stable Diffusion ships, from PyPI) measured on the
same images in the same run.

    benches/watermark_eval.py [--limit N] [--out DIR]

Images: Debian's plasma wallpapers (benches/fetch-photos.sh), each at one of five sizes from
256x256 to 12 MP, saved losslessly. Attacks come from ImageMagick and Pillow, never from
aigc-label's code. Our embed and detect times come from the wm_tool example (decode and encode
excluded); dwtDct is timed the same way in this process.

Prints a table per attack (detection rate, bit accuracy, for both), writes results.json and
chart.svg under DIR (default bench-out/watermark_eval).
"""
import argparse, json, os, subprocess, sys, time, types

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = ["256x256", "512", "1024", "2048", "12mp"]
ATTACKS = ["none", "jpeg90", "jpeg75", "jpeg50", "webp75", "resize50", "resize75", "resize150",
           "crop75", "crop50area", "noise5", "blur1", "bright120", "contrast80", "social",
           "rotate2", "overlay"]
FONT = os.path.join(ROOT, "crates/aigc-image/fonts/AIGCLabelSans-Bold.otf")


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def magick(src, dst, *ops):
    run(["convert", src, *ops, dst])


def attack(name, src, out_dir):
    """Writes the attacked copy of src and returns its path."""
    stem = os.path.join(out_dir, name)
    if name == "none":
        magick(src, stem + ".png")
        return stem + ".png"
    if name.startswith("jpeg"):
        magick(src, stem + ".jpg", "-quality", name[4:])
        return stem + ".jpg"
    if name == "webp75":
        magick(src, stem + ".webp", "-quality", "75")
        return stem + ".webp"
    if name.startswith("resize"):
        magick(src, stem + ".png", "-filter", "Catrom", "-resize", name[6:] + "%")
        return stem + ".png"
    if name == "crop75":
        magick(src, stem + ".png", "-gravity", "center", "-crop", "75%x75%+0+0", "+repage")
        return stem + ".png"
    if name == "crop50area":
        magick(src, stem + ".png", "-gravity", "NorthWest", "-crop", "70.7%x70.7%+0+0", "+repage")
        return stem + ".png"
    if name == "social":
        magick(src, stem + ".jpg", "-filter", "Catrom", "-resize", "75%", "-quality", "75")
        return stem + ".jpg"
    if name == "rotate2":
        magick(src, stem + ".png", "-virtual-pixel", "black", "-distort", "SRT", "2")
        return stem + ".png"
    if name == "overlay":
        w, h = Image.open(src).size
        s = min(w, h)
        magick(src, stem + ".png", "-gravity", "SouthEast", "-font", FONT,
               "-pointsize", str(max(8, s * 6 // 70)), "-fill", "white", "-undercolor", "#000000B0",
               "-annotate", f"+{s // 50}+{s // 50}", "AI生成")
        return stem + ".png"
    img = Image.open(src).convert("RGB")
    if name == "noise5":
        a = np.asarray(img, dtype=np.float32)
        rng = np.random.default_rng(5)
        a = np.clip(a + rng.normal(0, 5, a.shape), 0, 255).round().astype(np.uint8)
        img = Image.fromarray(a)
    elif name == "blur1":
        img = img.filter(ImageFilter.GaussianBlur(1))
    elif name == "bright120":
        img = ImageEnhance.Brightness(img).enhance(1.2)
    elif name == "contrast80":
        img = ImageEnhance.Contrast(img).enhance(0.8)
    img.save(stem + ".png")
    return stem + ".png"


def psnr(a_path, b_path):
    a = np.asarray(Image.open(a_path).convert("RGB"), dtype=np.float64)
    b = np.asarray(Image.open(b_path).convert("RGB"), dtype=np.float64)
    mse = ((a - b) ** 2).mean()
    return 99.0 if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def bits_right(a, b):
    return 64 - bin(a ^ b).count("1")


def peer():
    """invisible-watermark's dwtDct, imported without its neural (rivaGan) dependencies."""
    for m in ("torch", "onnxruntime", "onnx"):
        sys.modules.setdefault(m, types.ModuleType(m))
    from imwatermark import WatermarkDecoder, WatermarkEncoder
    import cv2
    return WatermarkEncoder, WatermarkDecoder, cv2


def make_images(limit, work):
    photos = run([os.path.join(ROOT, "benches/fetch-photos.sh")]).strip()
    src = os.path.join(work, "originals")
    os.makedirs(src, exist_ok=True)
    out = []
    names = sorted(n for n in os.listdir(photos) if not n.startswith("."))
    for i, name in enumerate(names[:limit]):
        size = SIZES[i % len(SIZES)]
        dst = os.path.join(src, f"{os.path.splitext(name)[0]}-{size}.png")
        if not os.path.exists(dst):
            p = os.path.join(photos, name)
            if size == "256x256":
                magick(p, dst, "-resize", "256x256^", "-gravity", "center", "-extent", "256x256")
            elif size == "12mp":
                magick(p, dst, "-resize", "12000000@")
            else:
                magick(p, dst, "-resize", f"{size}x{size}")
        out.append(dst)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=30)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-out/watermark_eval"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    run(["cargo", "build", "--release", "--quiet", "-p", "aigc-image", "--example", "wm_tool"], cwd=ROOT)
    tool = os.path.join(ROOT, "target/release/examples/wm_tool")
    Enc, Dec, cv2 = peer()
    images = make_images(args.limit, args.out)
    rows = {a: {"ours_ok": 0, "ours_bits": 0, "peer_ok": 0, "peer_bits": 0, "n": 0,
                "ours_ms_per_mp": [], "peer_ms_per_mp": [],
                "ours_ms": 0.0, "peer_ms": 0.0, "ours_mp": 0.0, "peer_mp": 0.0} for a in ATTACKS}
    quality = []
    for k, orig in enumerate(images):
        stem = os.path.splitext(os.path.basename(orig))[0]
        d = os.path.join(args.out, "work", stem)
        os.makedirs(d, exist_ok=True)
        payload = (0x9E3779B97F4A7C15 * (k + 1)) & (2 ** 64 - 1)
        ours = os.path.join(d, "ours.png")
        e = json.loads(run([tool, "embed", orig, ours, f"{payload:016x}"]))
        # dwtDct, same payload, timed without decode/encode.
        bgr = cv2.imread(orig)
        enc = Enc()
        enc.set_watermark("bytes", payload.to_bytes(8, "big"))
        t = time.perf_counter()
        peer_bgr = enc.encode(bgr, "dwtDct")
        peer_embed_ms = (time.perf_counter() - t) * 1e3
        theirs = os.path.join(d, "peer.png")
        cv2.imwrite(theirs, peer_bgr)
        mp = e["megapixels"]
        quality.append({"image": stem, "megapixels": mp, "ours_psnr": psnr(orig, ours),
                        "peer_psnr": psnr(orig, theirs), "ours_embed_ms_per_mp": e["embed_ms"] / mp,
                        "peer_embed_ms_per_mp": peer_embed_ms / mp})
        attacked = []
        for a in ATTACKS:
            ad = os.path.join(d, "ours-att"); pd = os.path.join(d, "peer-att")
            os.makedirs(ad, exist_ok=True); os.makedirs(pd, exist_ok=True)
            attacked.append((a, attack(a, ours, ad), attack(a, theirs, pd)))
        found = [json.loads(l) for l in run([tool, "detect", *[p for _, p, _ in attacked]]).splitlines()]
        for (a, _, theirs_att), f in zip(attacked, found):
            r = rows[a]
            r["n"] += 1
            ok = f.get("detected") and int(f["payload"], 16) == payload
            r["ours_ok"] += bool(ok)
            guess = int(f.get("payload", f.get("best_guess", "0")), 16)
            r["ours_bits"] += bits_right(guess, payload)
            r["ours_ms_per_mp"].append(f["detect_ms"] / f["megapixels"])
            r["ours_ms"] += f["detect_ms"]; r["ours_mp"] += f["megapixels"]
            img = cv2.imread(theirs_att)
            t = time.perf_counter()
            try:
                got = Dec("bytes", 64).decode(img, "dwtDct")
                got = int.from_bytes(bytes(got), "big")
            except RuntimeError:  # dwtDct refuses images under 256x256
                got = payload ^ (2 ** 64 - 1)
            ms = (time.perf_counter() - t) * 1e3
            r["peer_ok"] += got == payload
            r["peer_bits"] += bits_right(got, payload)
            r["peer_ms_per_mp"].append(ms / (img.shape[0] * img.shape[1] / 1e6))
            r["peer_ms"] += ms; r["peer_mp"] += img.shape[0] * img.shape[1] / 1e6
        print(f"[{k + 1}/{len(images)}] {stem}: PSNR {quality[-1]['ours_psnr']:.1f} dB, "
              f"missed: {[a for (a, _, _), f in zip(attacked, found) if not f.get('detected')]}", flush=True)
    table = []
    # ms/MP two ways: the median image (small images weigh as much as 12 MP ones, and a fixed
    # cost per image shows), and pooled (all time over all megapixels: throughput).
    print(f"\n{'attack':12} {'ours det':>9} {'ours bits':>9} {'dwtDct det':>10} {'dwtDct bits':>11} "
          f"{'ours ms/MP':>10} {'dwtDct ms/MP':>12} {'ours pooled':>11} {'dwtDct pooled':>13}")
    for a in ATTACKS:
        r = rows[a]; n = r["n"]
        row = {"attack": a, "images": n, "ours_detection": r["ours_ok"] / n, "ours_bit_accuracy": r["ours_bits"] / (64 * n),
               "peer_detection": r["peer_ok"] / n, "peer_bit_accuracy": r["peer_bits"] / (64 * n),
               "ours_detect_ms_per_mp": float(np.median(r["ours_ms_per_mp"])),
               "peer_detect_ms_per_mp": float(np.median(r["peer_ms_per_mp"])),
               "ours_detect_ms_per_mp_pooled": r["ours_ms"] / r["ours_mp"],
               "peer_detect_ms_per_mp_pooled": r["peer_ms"] / r["peer_mp"]}
        table.append(row)
        print(f"{a:12} {row['ours_detection']:9.1%} {row['ours_bit_accuracy']:9.1%} {row['peer_detection']:10.1%} "
              f"{row['peer_bit_accuracy']:11.1%} {row['ours_detect_ms_per_mp']:10.1f} {row['peer_detect_ms_per_mp']:12.1f} "
              f"{row['ours_detect_ms_per_mp_pooled']:11.1f} {row['peer_detect_ms_per_mp_pooled']:13.1f}")
    q = {k: float(np.mean([x[k] for x in quality])) for k in quality[0] if k != "image"}
    q["ours_psnr_min"] = float(min(x["ours_psnr"] for x in quality))
    print(f"\nPSNR ours mean {q['ours_psnr']:.2f} dB (min {q['ours_psnr_min']:.2f}), dwtDct mean {q['peer_psnr']:.2f} dB")
    print(f"embed ms/MP (mean): ours {q['ours_embed_ms_per_mp']:.1f}, dwtDct {q['peer_embed_ms_per_mp']:.1f}")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"attacks": table, "quality": quality, "summary": q}, f, indent=1)
    write_chart(table, os.path.join(args.out, "chart.svg"))
    print(f"wrote {args.out}/results.json and chart.svg")


def write_chart(table, path):
    """Grouped bars: detection rate per attack, ours and dwtDct."""
    bw, gap, left, top, height = 14, 10, 60, 30, 220
    width = left + len(table) * (2 * bw + gap) + 20
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{top + height + 90}" font-family="sans-serif" font-size="11">',
             f'<text x="{left}" y="18" font-size="13">Exact 64-bit payload recovered (aigc-label vs invisible-watermark dwtDct)</text>']
    for p in (0, 25, 50, 75, 90, 100):
        y = top + height * (1 - p / 100)
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{p}%</text>')
    for i, r in enumerate(table):
        x = left + i * (2 * bw + gap) + gap / 2
        for j, (key, color) in enumerate((("ours_detection", "#1f77b4"), ("peer_detection", "#ff7f0e"))):
            h = height * r[key]
            parts.append(f'<rect x="{x + j * bw:.1f}" y="{top + height - h:.1f}" width="{bw - 1}" height="{h:.1f}" fill="{color}"/>')
        parts.append(f'<text transform="translate({x + bw:.1f},{top + height + 8}) rotate(60)">{r["attack"]}</text>')
    parts.append(f'<rect x="{width - 200}" y="{top + height + 60}" width="10" height="10" fill="#1f77b4"/><text x="{width - 185}" y="{top + height + 69}">aigc-label</text>'
                 f'<rect x="{width - 110}" y="{top + height + 60}" width="10" height="10" fill="#ff7f0e"/><text x="{width - 95}" y="{top + height + 69}">dwtDct</text></svg>')
    with open(path, "w") as f:
        f.write("\n".join(parts))


if __name__ == "__main__":
    main()
