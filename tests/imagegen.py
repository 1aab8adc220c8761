"""Small synthetic pictures for tests: every kind a user's folder may hold, made on the fly.

Import from a test as `import imagegen` (pytest puts `tests/` on the import path).
`make_class_folder` writes a folder a model can learn in a few steps: each class is a
solid colour far from the others, each picture slightly different so no two files
are identical.
"""
import io
import os

import numpy as np
from PIL import Image

# Well-separated colours; class i gets CLASS_COLORS[i % len(CLASS_COLORS)].
CLASS_COLORS = [
    (220, 30, 30), (30, 200, 40), (30, 60, 220), (240, 220, 30), (200, 40, 200),
    (30, 210, 210), (250, 140, 20), (120, 60, 20), (20, 20, 20), (235, 235, 235),
]


def _size(size):
    return (size, size) if isinstance(size, int) else tuple(size)


def image_array(color, size=32, noise=0, seed=0):
    """A (height, width, 3) uint8 picture of `color` with +-`noise` per pixel; `size`: int or (w, h)."""
    width, height = _size(size)
    pixels = np.empty((height, width, 3), np.float64)
    pixels[:] = color
    if noise:
        pixels += np.random.default_rng(seed).integers(-noise, noise + 1, pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def write_image(path, color, size=32, mode="RGB", fmt=None, noise=0, seed=0, **save_kwargs):
    """Write a solid `color` picture to `path` and return the path.

    Args:
        path: where to write; parent folders are created.
        color: an (r, g, b) tuple.
        size: an int for a square or `(width, height)`.
        mode: PIL mode to convert to before saving: `"RGB"`, `"L"`, `"RGBA"`, `"LA"`,
            `"CMYK"`, `"P"`, `"I;16"` (16-bit grayscale PNG).
        fmt: PIL format name; defaults to the one the extension implies.
        noise, seed: per-pixel noise, so pictures of one colour differ.
        save_kwargs: passed to `Image.save` (e.g. `exif=`, `transparency=`).
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    img = Image.fromarray(image_array(color, size, noise, seed), "RGB")
    if mode == "I;16":
        gray = np.asarray(img.convert("L")).astype(np.uint16) * 257
        img = Image.fromarray(gray)
    elif mode == "P":
        img = img.convert("P", palette=Image.ADAPTIVE)
    elif mode != "RGB":
        img = img.convert(mode)
    img.save(path, format=fmt, **save_kwargs)
    return path


def make_class_folder(root, counts, size=32, ext=".png", noise=8):
    """Write `counts` (`{"cat": 5, "dog": 5}`) pictures per class under `root/<class>/`.

    Class i is a solid colour from `CLASS_COLORS` with small noise (a different seed for
    every picture, so no two files are identical). Returns `root`.
    """
    root = os.fspath(root)
    for class_index, (name, count) in enumerate(counts.items()):
        color = CLASS_COLORS[class_index % len(CLASS_COLORS)]
        for i in range(count):
            write_image(os.path.join(root, name, f"{name}_{i:03d}{ext}"), color, size=size,
                        noise=noise, seed=class_index * 100003 + i)
    return root


def write_exif_rotated_jpeg(path, size=(48, 24), orientation=6, color=(200, 50, 50)):
    """A `size` (w, h) JPEG whose EXIF says to rotate it: orientation 6 or 8 swap w and h.

    The left half is dark, so the rotation can be checked from the pixels too.
    """
    width, height = _size(size)
    pixels = image_array(color, (width, height))
    pixels[:, : width // 2] = 0
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(pixels, "RGB").save(path, format="JPEG", exif=exif.tobytes(), quality=95)
    return path


def write_palette_png_with_transparency(path, size=32):
    """A palette (`P`) PNG: left half colour index 0 marked transparent, right half red."""
    width, height = _size(size)
    img = Image.new("P", (width, height), 1)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    img.paste(0, (0, 0, width // 2, height))
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    img.save(path, format="PNG", transparency=0)
    return path


def write_animated_gif(path, colors=((255, 0, 0), (0, 0, 255)), size=32):
    """A GIF with one frame per colour; the first frame is `colors[0]`."""
    frames = [Image.new("RGB", _size(size), c).convert("P") for c in colors]
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    return path


def write_truncated_jpeg(path, size=64, keep=0.5):
    """A JPEG cut to the first `keep` fraction of its bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image_array((90, 120, 200), size, noise=40), "RGB").save(buffer, "JPEG")
    data = buffer.getvalue()
    return write_bytes(path, data[: int(len(data) * keep)])


def write_bytes(path, data):
    """Write raw `data` (e.g. `b""` or text) to `path`: a file that only looks like a picture."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def write_camera_jpeg(path, size=(4000, 3000), orientation=None, seed=0):
    """A phone-camera-size JPEG (`size` (w, h)) of smooth content: gradients and a dark left
    quarter, so a decode at reduced scale, its rotation and its resize can all be checked.

    Made small and enlarged (smooth, like a photo at model scale), saved with 4:2:0 chroma
    as cameras do; `orientation` adds an EXIF rotation.
    """
    width, height = _size(size)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:48, 0:64].astype(np.float64)
    small = np.stack([x * 4, y * 5, 255 - (x + y) * 2], axis=-1) + rng.uniform(0, 20, (48, 64, 3))
    small[:, :16] *= 0.2
    img = Image.fromarray(np.clip(small, 0, 255).astype(np.uint8)).resize((width, height),
                                                                          Image.BILINEAR)
    kwargs = {}
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    img.save(path, format="JPEG", quality=90, subsampling=2, **kwargs)
    return path
