"""Phone-size JPEGs for the benchmarks: 4000x3000 pictures of 1.5 MB or more, 3 classes.

    python bench/make_photos.py [--count 100] [--out bench/out/photos]

Pet photos come from phones: 12-megapixel JPEGs of 1.5-2.5 MB, which cost far more
to decode than the network costs to run at 224 px. Real photos cannot be shipped
here, so each picture is made with what keeps JPEG from compressing it to nothing:
a smooth two-colour gradient (the class sets its hues), a few shapes (the class
sets their kind), fine sensor-like noise, saved at quality 92 with 4:2:0 chroma
like a phone camera. Same `--seed`, same files. Written into `--out` (under
`bench/out/`, which git ignores), one folder per class.
"""
import argparse
import os

import numpy as np
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "out", "photos")
CLASSES = ("circles", "boxes", "stripes")
SIZE = (4000, 3000)


def photo(class_index, rng, size=SIZE):
    """One (height, width, 3) uint8 picture of class `class_index` (0..2)."""
    width, height = size
    hue = (class_index * 85 + rng.integers(-20, 20)) % 255
    start = np.array([hue, 255 - hue, rng.integers(40, 200)], np.float32)
    end = np.roll(start, 1) * 0.6 + 40
    angle = rng.uniform(0, np.pi)
    y, x = np.mgrid[0:height:8, 0:width:8].astype(np.float32)  # smooth: made small, upscaled
    t = (np.cos(angle) * x / width + np.sin(angle) * y / height + 1) / 2
    small = start * (1 - t[..., None]) + end * t[..., None]
    img = Image.fromarray(np.clip(small, 0, 255).astype(np.uint8)).resize(size, Image.BILINEAR)
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        cx, cy = rng.integers(0, width), rng.integers(0, height)
        r = int(rng.integers(150, 700))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        if class_index == 0:
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        elif class_index == 1:
            draw.rectangle([cx - r, cy - r // 2, cx + r, cy + r // 2], fill=colour)
        else:
            draw.line([cx - 2 * r, cy, cx + 2 * r, cy + r], fill=colour, width=r // 4)
    pixels = np.asarray(img).astype(np.int16)
    pixels += rng.integers(-6, 7, pixels.shape, dtype=np.int16)  # sensor noise
    return np.clip(pixels, 0, 255).astype(np.uint8)


def write_photos(out=DEFAULT_OUT, count=100, seed=0, quality=92):
    """Write `count` photos (classes in turn) under `out`; returns the folder.

    Files already there with the expected names are kept, so a second call is free.
    """
    rng = np.random.default_rng(seed)
    for i in range(count):
        class_index = i % len(CLASSES)
        folder = os.path.join(out, CLASSES[class_index])
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"IMG_{i:04d}.jpg")
        pixels = photo(class_index, rng)  # drawn even when kept, so the files stay the same
        if not os.path.exists(path):
            Image.fromarray(pixels).save(path + ".tmp", format="JPEG", quality=quality,
                                         subsampling=2)
            os.replace(path + ".tmp", path)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = write_photos(args.out, args.count, args.seed)
    sizes = [os.path.getsize(os.path.join(root, n)) for root, _, names in os.walk(out)
             for n in names if n.endswith(".jpg")]
    print(f"{len(sizes)} photos in {out}: {min(sizes) / 1e6:.2f} to {max(sizes) / 1e6:.2f} MB, "
          f"{sum(sizes) / 1e6:.0f} MB in all")


if __name__ == "__main__":
    main()
