"""PNG bytes of pixels in memory: the demo's digits, a picture handed to graph.pb
losslessly, a Grad-CAM overlay served over HTTP."""
import io


def png_bytes(pixels, compress_level=6):
    """PNG bytes of uint8 pixels, (H, W) grey or (H, W, 3) RGB. PNG is lossless, so a
    decoder gets exactly these pixels back; `compress_level` 1 trades size for speed."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()
