"""Reading the user's pictures: find them, decode any common kind to 8-bit RGB, hash them.

Every picture a phone, camera or web page produces should load the same way for
training and for prediction: EXIF orientation applied, transparency composited on
white, grayscale, CMYK, palette and 16-bit files brought to 8-bit RGB, the first
frame of an animation taken. A file that cannot be decoded raises `ImageError`,
which names the file and says why. The user's files are only ever read.
"""
import contextlib
import hashlib
import io
import os

import numpy as np
from PIL import Image, ImageOps

from kapps.errors import UserError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"})
# The only decoders a file or upload reaches, whatever its name says (Pillow's format
# names; its JPEG opener also opens the multi-picture JPEGs, MPO, many phones save).
# Pillow knows dozens more (TIFF, PCX, SGI, TGA, ICO, JPEG 2000...): each is attack
# surface for pictures nobody trains on, so a TIFF renamed .jpg is refused like any
# other file that is not a picture.
DECODED_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP")
# What Pillow calls the pictures its JPEG opener opens: all decode at a reduced scale
# (an MPO's first picture is a JPEG; TensorFlow's decode_jpeg in graph.pb reduces it too).
JPEG_FORMATS = ("JPEG", "MPO")
FORMAT_NAMES = "JPEG, PNG, GIF, BMP or WebP"

# The reductions a JPEG decoder can apply while decoding (libjpeg's scaled IDCT), and
# the one the dataset scan uses: it only checks that a file decodes.
JPEG_SCALES = (8, 4, 2, 1)
_CHECK_SIDE = 64

_CHUNK = 1 << 20


class ImageError(UserError):
    """A file with an image extension that cannot be decoded."""

    def __init__(self, path, reason):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}; "
                         "replace or remove the file")


class TooManyPixelsError(ImageError):
    """A picture whose header promises more pixels than the caller lets it decode.

    A few kilobytes of PNG can decode to gigabytes (a decompression bomb), so the size
    is checked from the header, before any pixel is decoded.
    """


def is_image_file(name):
    """True for a visible file whose extension (any letter case) is in `IMAGE_EXTENSIONS`."""
    base = os.path.basename(name)
    return not base.startswith(".") and os.path.splitext(base)[1].lower() in IMAGE_EXTENSIONS


def list_image_files(folder):
    """All image files under `folder`, sub-folders included, in a stable sorted order.

    Hidden files and folders (a leading dot, like macOS `._x.jpg` resource forks) are
    skipped. The order is by relative path with `/` separators, so it is the same on
    every machine and file system.
    """
    folder = os.fspath(folder)
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if is_image_file(name):
                path = os.path.join(root, name)
                found.append((os.path.relpath(path, folder).replace(os.sep, "/"), path))
    return [path for _, path in sorted(found)]


def file_digest(path):
    """Hex sha1 of the file's bytes, read in chunks: for duplicate detection and cache keys."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _to_rgb(img):
    """Convert a loaded PIL image of any mode to 8-bit RGB."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit grayscale (PNG gives `I;16`, older Pillow `I`): map 0..65535 onto 0..255
        # by the format's range, not the picture's own maximum, so a dark picture stays dark.
        gray = np.asarray(img).astype(np.float64)
        gray = np.clip(np.rint(gray / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if mode == "F":
        gray = np.clip(np.rint(np.asarray(img, dtype=np.float64)), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode in ("LA", "La", "PA", "RGBa") or (mode == "L" and "transparency" in img.info) \
            or (mode == "RGB" and "transparency" in img.info):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def jpeg_scale(width, height, min_side):
    """The reduction (8, 4, 2 or 1) a JPEG of `width` x `height` is decoded at for `min_side`.

    The largest one that still leaves both sides at least `min_side` pixels (libjpeg
    rounds a reduced side up), so the model's bilinear resize never enlarges what the
    full picture would not have needed enlarging. `None` means full size. Pillow's
    `Image.draft(mode, (min_side, min_side))` picks exactly this scale, and the frozen
    graph (`retrain.formats.graph`) computes it from the JPEG header with the same rule,
    so every path decodes a picture to the same pixels.
    """
    if not min_side:
        return 1
    fits = min(width, height) // int(min_side)
    return next((s for s in JPEG_SCALES if s <= fits), 1)


def _decode(path, data=None, min_side=None, max_pixels=None):
    """Decode `path` (or its bytes `data`) to an RGB PIL image; raise `ImageError` on failure.

    With `min_side`, a JPEG is decoded at the reduced scale `jpeg_scale` picks (libjpeg's
    scaled IDCT: 4.5x faster on a 12-megapixel photo for 224 px), before the EXIF
    rotation. A reduced decode still reads every byte of the file, so it still finds
    truncation. `max_pixels` refuses a bigger picture with `TooManyPixelsError` before
    decoding it.
    """
    path = os.fspath(path)
    with _read_errors(path):
        if data is None:
            with open(path, "rb") as f:
                data = f.read()
        if not data:
            raise ImageError(path, "the file is empty (0 bytes)")
        with Image.open(io.BytesIO(data), formats=DECODED_FORMATS) as img:
            if max_pixels is not None and img.width * img.height > max_pixels:
                raise TooManyPixelsError(path, f"{img.width}x{img.height} is more than "
                                               f"{max_pixels:,} pixels")
            img.seek(0)
            if min_side and img.format in JPEG_FORMATS:
                img.draft(img.mode, (min_side, min_side))
            # The bytes are in memory: hand them to the decoder in one block. Pillow's
            # 64 KB blocks each take the GIL back, so a 2 MB photo decoded beside other
            # Python threads (tf.data's, a server's, TensorFlow's import) waited up to 32
            # times: 205 against 45 ms a photo beside a busy thread. Same pixels.
            img.decodermaxblock = max(img.decodermaxblock, len(data))
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)


def check_header(path, data):
    """Raise `ImageError` unless the bytes `data` of `path` open as a picture.

    Only the header is read (the format, the size): an empty file, another kind of file
    under a picture's name, or a decompression bomb is found without decoding a pixel;
    a truncated one is not, so whoever skips the full check must decode the picture
    later and treat a failure there as the check's.
    """
    decoded_pixels(data, path=path)


def decoded_pixels(data, min_side=None, path="upload"):
    """How many pixels decoding the bytes `data` for `min_side` makes (a JPEG's reduced by
    the scale `jpeg_scale` picks), read from the header alone; `ImageError` (naming
    `path`) if they do not open as a picture."""
    path = os.fspath(path)
    with _read_errors(path):
        if not data:
            raise ImageError(path, "the file is empty (0 bytes)")
        with Image.open(io.BytesIO(data), formats=DECODED_FORMATS) as img:
            width, height = img.size
            # As `_decode` reduces: a JPEG (an MPO's first picture is one).
            scale = jpeg_scale(width, height, min_side) if img.format in JPEG_FORMATS else 1
            return -(-width // scale) * -(-height // scale)


@contextlib.contextmanager
def _read_errors(path):
    """Pillow's and the file system's errors while reading `path`, as `ImageError`s."""
    try:
        yield
    except ImageError:
        raise
    except Image.UnidentifiedImageError:
        raise ImageError(path, f"not a {FORMAT_NAMES} picture (the content is another "
                               "format, or not a picture)") from None
    except Image.DecompressionBombError as err:
        raise TooManyPixelsError(path, f"too many pixels ({err})") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError) as err:
        reason = str(err) or type(err).__name__
        if "truncated" in reason or isinstance(err, EOFError):
            reason = f"the file is truncated or damaged ({reason})"
        raise ImageError(path, reason) from None


def load_image(path, min_side=None):
    """Decode the picture at `path` to a `uint8` array of shape (height, width, 3).

    EXIF orientation is applied; transparency is composited on white; grayscale,
    CMYK, palette and 16-bit pictures become 8-bit RGB; an animation gives its first
    frame. With `min_side` (the model's input side), a JPEG is decoded at the reduced
    scale that `jpeg_scale` picks, which training, the bottleneck cache and every
    prediction backend share. Raises `ImageError` if the file cannot be decoded.
    """
    return np.asarray(_decode(path, min_side=min_side))


def decode_bytes(data, name="upload", max_pixels=None, min_side=None):
    """Decode a picture's bytes, such as an upload, exactly as `load_image` decodes a file.

    Args:
        data: the encoded picture (JPEG, PNG, GIF, BMP, WebP).
        name: what error messages call the picture; nothing is opened by this name.
        max_pixels: refuse pictures with more pixels (width x height), judged from the
            header before decoding. Defaults to `None`: Pillow's own limit only.
        min_side: the model's input side, as for `load_image`. Defaults to `None`.

    Returns:
        A `uint8` array of shape (height, width, 3).

    Raises `TooManyPixelsError` for a picture over `max_pixels` (or Pillow's limit) and
    `ImageError` for bytes that are not a picture, empty or truncated.
    """
    return np.asarray(_decode(name, data=bytes(data), min_side=min_side,
                              max_pixels=max_pixels))


def inspect_image(path, verify=True):
    """Read `path` once: return `(digest, reason)` where `reason` is None if it decodes.

    `verify` says how much to check: `True` decodes the picture, `"header"` only opens
    it (`check_header`: for a picture that will be decoded later anyway), `False` only
    computes the digest. It may also be a function of the digest that returns one of
    these (a picture whose features are cached was decoded by an earlier run). Used to
    check thousands of files in a thread pool (Pillow releases the GIL while decoding).
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        return None, f"cannot open the file ({err.strerror or err})"
    digest = hashlib.sha1(data).hexdigest()
    check = verify(digest) if callable(verify) else verify
    try:
        if check == "header":
            check_header(path, data)
        elif check:
            _decode(path, data=data, min_side=_CHECK_SIDE)
    except ImageError as err:
        return digest, err.reason
    return digest, None
