"""Decoding every kind of picture a user's folder may hold, and refusing broken ones."""
import hashlib
import os

import numpy as np
import pytest

import imagegen
from kapps.errors import UserError
from retrain.data.images import (ImageError, file_digest, inspect_image, jpeg_scale,
                            list_image_files, load_image)

RED = (220, 30, 30)


def _close(pixel, expected, tol=6):
    return np.all(np.abs(np.asarray(pixel, int) - np.asarray(expected, int)) <= tol)


@pytest.mark.parametrize("name,fmt", [("a.jpg", None), ("b.JPG", "JPEG"), ("c.jpeg", None),
                                      ("d.png", None), ("e.gif", None), ("f.bmp", None),
                                      ("g.webp", None), ("h.PNG", "PNG")])
def test_every_format_loads_as_uint8_rgb(tmp_path, name, fmt):
    path = imagegen.write_image(tmp_path / name, RED, size=(40, 24), fmt=fmt)
    pixels = load_image(path)
    assert pixels.dtype == np.uint8 and pixels.shape == (24, 40, 3)
    assert _close(pixels[12, 20], RED, tol=12)


@pytest.mark.parametrize("fmt", ["TIFF", "ICO", "TGA", "PCX", "SGI", "PPM", "JPEG2000", "DDS"])
def test_only_the_named_formats_are_decoded_whatever_the_file_is_called(tmp_path, fmt):
    """Pillow decodes dozens of formats; each decoder is attack surface, so a file that
    is not JPEG, PNG, GIF, BMP or WebP is refused however it is named, as an upload too."""
    from PIL import Image

    from retrain.data.images import decode_bytes, inspect_image

    path = tmp_path / "looks_like.jpg"
    Image.new("RGB", (16, 16), RED).save(path, format=fmt)
    with pytest.raises(ImageError, match="not a JPEG, PNG, GIF, BMP or WebP picture"):
        load_image(path)
    with pytest.raises(ImageError, match="not a JPEG, PNG, GIF, BMP or WebP picture"):
        decode_bytes(path.read_bytes())
    assert "not a JPEG" in inspect_image(path, verify="header")[1]


def test_a_phone_multi_picture_jpeg_still_decodes(tmp_path):
    """The negative twin: MPO, what many phones save, is a JPEG to the decoder."""
    from PIL import Image

    path = tmp_path / "phone.jpg"
    Image.new("RGB", (32, 24), RED).save(path, format="MPO", save_all=True,
                                         append_images=[Image.new("RGB", (32, 24), (0, 0, 0))])
    with Image.open(path) as img:
        assert img.format == "MPO"
    assert _close(load_image(path)[12, 16], RED)


def test_a_multi_picture_jpeg_decodes_at_the_reduced_scale_of_a_jpeg(tmp_path):
    """A phone's MPO is reduced as a JPEG is (the graph.pb export's decode_jpeg reduces
    it too): the same pixels as the same picture saved as a plain JPEG."""
    from PIL import Image

    from retrain.data.images import decoded_pixels

    rng = np.random.default_rng(0)
    picture = Image.fromarray((rng.random((480, 640, 3)) * 255).astype(np.uint8))
    plain, phone = tmp_path / "plain.jpg", tmp_path / "phone.jpg"
    picture.save(plain, format="JPEG", quality=90)
    picture.save(phone, format="MPO", save_all=True, quality=90,
                 append_images=[Image.new("RGB", (640, 480), (0, 0, 0))])
    reduced = load_image(plain, min_side=100)
    assert reduced.shape == (120, 160, 3)  # decoded at 1/4
    assert np.array_equal(load_image(phone, min_side=100), reduced)
    assert decoded_pixels(phone.read_bytes(), min_side=100) == 120 * 160
    import tensorflow as tf

    from retrain.formats.graph import decode_picture

    graph = tf.function(lambda c: decode_picture(c, 100))(phone.read_bytes()).numpy()
    assert np.array_equal(graph, reduced)  # what graph.pb answers from


@pytest.mark.parametrize("mode", ["L", "LA", "CMYK", "P", "I;16"])
def test_other_colour_modes_become_rgb(tmp_path, mode):
    ext = ".jpg" if mode == "CMYK" else ".png"
    path = imagegen.write_image(tmp_path / f"x{ext}", (120, 120, 120), mode=mode)
    pixels = load_image(path)
    assert pixels.shape == (32, 32, 3)
    assert _close(pixels[5, 5], (120, 120, 120), tol=8)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_pixels_are_composited_on_white(tmp_path, mode):
    from PIL import Image
    pixels = np.zeros((16, 16, 4), np.uint8)
    pixels[:, :8] = (0, 0, 0, 0)  # fully transparent black: must come out white
    pixels[:, 8:] = (0, 0, 0, 255)  # opaque black stays black
    path = tmp_path / "alpha.png"
    Image.fromarray(pixels, "RGBA").convert(mode).save(path)
    out = load_image(path)
    assert _close(out[4, 2], (255, 255, 255), tol=0)
    assert _close(out[4, 12], (0, 0, 0), tol=0)


def test_palette_png_with_transparency(tmp_path):
    out = load_image(imagegen.write_palette_png_with_transparency(tmp_path / "p.png"))
    assert _close(out[10, 2], (255, 255, 255), tol=0)
    assert _close(out[10, 30], (255, 0, 0), tol=0)


def test_16_bit_png_is_scaled_by_the_format_range(tmp_path):
    from PIL import Image
    gray = np.full((8, 8), 40 * 257, np.uint16)  # a dark picture must stay dark
    gray[0, 0] = 200 * 257
    path = tmp_path / "deep.png"
    Image.fromarray(gray).save(path)
    assert Image.open(path).mode.startswith("I")
    out = load_image(path)
    assert out.dtype == np.uint8
    assert tuple(out[4, 4]) == (40, 40, 40) and tuple(out[0, 0]) == (200, 200, 200)


def test_gif_gives_its_first_frame(tmp_path):
    out = load_image(imagegen.write_animated_gif(tmp_path / "anim.gif"))
    assert _close(out[3, 3], (255, 0, 0), tol=10)


@pytest.mark.parametrize("orientation,shape", [(6, (48, 24, 3)), (8, (48, 24, 3)),
                                               (1, (24, 48, 3))])
def test_exif_orientation_is_applied(tmp_path, orientation, shape):
    path = imagegen.write_exif_rotated_jpeg(tmp_path / "r.jpg", size=(48, 24),
                                            orientation=orientation)
    out = load_image(path)
    assert out.shape == shape
    if orientation == 6:  # 90 degrees clockwise: the dark left half goes to the top
        assert out[:20].mean() < 40 and out[28:].mean() > 80
    if orientation == 8:  # counter-clockwise: the dark half goes to the bottom
        assert out[28:].mean() < 40 and out[:20].mean() > 80


@pytest.mark.parametrize("writer,reason_part", [
    (lambda p: imagegen.write_bytes(p, b""), "empty"),
    (lambda p: imagegen.write_bytes(p, b"hello, I am text\n" * 20), "not a picture"),
    (lambda p: imagegen.write_truncated_jpeg(p), "truncated"),
])
def test_broken_files_raise_image_error_naming_the_file(tmp_path, writer, reason_part):
    path = str(tmp_path / "broken.jpg")
    writer(path)
    with pytest.raises(ImageError) as info:
        load_image(path)
    err = info.value
    assert isinstance(err, UserError)
    assert err.path == path and reason_part in err.reason
    assert path in str(err) and "\n" not in str(err)
    digest, reason = inspect_image(path)
    assert reason_part in reason and digest == hashlib.sha1(open(path, "rb").read()).hexdigest()


def test_inspect_image_accepts_a_good_file(tmp_path):
    path = imagegen.write_image(tmp_path / "ok.jpg", RED)
    assert inspect_image(path) == (file_digest(path), None)


def test_list_image_files_is_recursive_sorted_and_case_blind(tmp_path):
    for rel in ["b.JPG", "a.png", "sub/c.jpeg", "sub/deeper/d.WebP", "e.gif", "f.bmp"]:
        imagegen.write_bytes(tmp_path / rel, b"x")
    for rel in ["notes.txt", ".hidden.jpg", ".cache/x.jpg", "g.tiff"]:
        imagegen.write_bytes(tmp_path / rel, b"x")
    found = [os.path.relpath(p, tmp_path).replace(os.sep, "/") for p in list_image_files(tmp_path)]
    assert found == ["a.png", "b.JPG", "e.gif", "f.bmp", "sub/c.jpeg", "sub/deeper/d.WebP"]


def test_file_digest_reads_large_files_in_chunks(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, 3 * (1 << 20) + 17, np.uint8).tobytes()
    path = imagegen.write_bytes(tmp_path / "big.bin", data)
    assert file_digest(path) == hashlib.sha1(data).hexdigest()
    assert file_digest(imagegen.write_bytes(tmp_path / "other.bin", data[:-1])) != file_digest(path)


@pytest.mark.parametrize("width,height,min_side,scale", [
    (4000, 3000, 224, 8), (4000, 3000, 299, 8), (4000, 3000, 376, 4), (4000, 3000, 751, 2),
    (4000, 3000, 1501, 1), (3000, 4000, 224, 8), (300, 200, 224, 1), (900, 500, 224, 2),
    (4000, 3000, None, 1)])
def test_jpeg_scale_is_the_largest_reduction_keeping_min_side(width, height, min_side, scale):
    assert jpeg_scale(width, height, min_side) == scale
    if min_side and scale > 1:
        assert -(-min(width, height) // scale) >= min_side  # libjpeg rounds a side up
        assert -(-min(width, height) // (2 * scale)) < min_side or scale == 8


def test_camera_jpeg_decodes_at_reduced_scale_as_tensorflow_and_the_graph_do(tmp_path):
    import tensorflow as tf

    from retrain.formats.graph import decode_picture

    path = imagegen.write_camera_jpeg(tmp_path / "IMG_0001.jpg")
    data = open(path, "rb").read()
    assert load_image(path).shape == (3000, 4000, 3)
    for min_side, shape in ((224, (375, 500, 3)), (400, (750, 1000, 3)), (1600, (3000, 4000, 3))):
        pixels = load_image(path, min_side=min_side)
        assert pixels.shape == shape
        ratio = jpeg_scale(4000, 3000, min_side)
        tf_pixels = tf.io.decode_jpeg(data, channels=3, ratio=ratio,
                                      dct_method="INTEGER_ACCURATE").numpy()
        np.testing.assert_array_equal(pixels, tf_pixels)
        graph_pixels = tf.function(lambda c, m=min_side: decode_picture(c, m))(data).numpy()
        np.testing.assert_array_equal(pixels, graph_pixels)
    # PNG has no reduced decode: full size, whatever min_side says.
    png = imagegen.write_image(tmp_path / "p.png", RED, size=(600, 500))
    assert load_image(png, min_side=224).shape == (500, 600, 3)
    graph_png = tf.function(lambda c: decode_picture(c, 224))(open(png, "rb").read())
    np.testing.assert_array_equal(load_image(png), graph_png.numpy())


def test_exif_rotation_is_applied_after_a_reduced_decode(tmp_path):
    upright = load_image(imagegen.write_camera_jpeg(tmp_path / "a.jpg"), min_side=224)
    rotated = load_image(imagegen.write_camera_jpeg(tmp_path / "b.jpg", orientation=6),
                         min_side=224)
    assert rotated.shape == (500, 375, 3)
    # orientation 6: the camera was turned, the picture is shown turned 90 degrees clockwise
    np.testing.assert_array_equal(rotated, np.rot90(upright, k=-1))
    assert rotated[:100].mean() < 0.5 * rotated[-100:].mean()  # the dark quarter is on top
