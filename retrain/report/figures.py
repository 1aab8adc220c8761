"""Every figure kapps draws: training curves, the confusion matrix, and pictures with
their top answers (one figure each, or contact sheets).

Figures are drawn on matplotlib's `Figure` without pyplot, so they work on a server
with no display and never change matplotlib's global backend; `show_figures` alone
opens windows. Labels get a font that has their glyphs (`retrain.common.fonts`).
"""
import os

import numpy as np

from kapps.errors import UserError
from retrain.data import images
from retrain.common.atomic import atomic_path
from retrain.common.fonts import font_for, quiet_missing_glyphs

# A sheet instead of one file per picture above this many pictures.
MAX_SINGLE_FIGURES = 8
SHEET_COLUMNS = 6
SHEET_ROWS = 4
THUMBNAIL_SIZE = 256
TITLE_ANSWERS = 3

def save_png(fig, path, **savefig_kwargs):
    """Write `fig` to `path` as a PNG, atomically."""
    with atomic_path(path) as tmp, quiet_missing_glyphs():
        fig.savefig(tmp, format="png", **savefig_kwargs)


def plot_history(history, path, best_epoch=None):
    """Loss and accuracy per epoch, training and validation, with the kept epoch marked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            values = history.get(key)
            if values:
                ax.plot(range(1, len(values) + 1), values, style, marker="o", markersize=3,
                        label="validation" if key.startswith("val_") else "training")
        if best_epoch is not None:
            ax.axvline(best_epoch + 1, color="grey", linestyle=":", label="kept epoch")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Training curves")
    save_png(fig, path, dpi=110, bbox_inches="tight")


def plot_confusion_matrix(matrix, classes, path, title="Confusion matrix (test split)"):
    """Counts per (true, predicted) class, with the numbers written in the cells."""
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix)
    n = len(classes)
    side = min(2 + 0.5 * n, 20)
    fig = Figure(figsize=(side, side))
    ax = fig.add_subplot()
    ax.imshow(matrix, cmap="Blues")
    font = font_for(classes)  # class names such as 猫 need a CJK font to show as glyphs
    ax.set_xticks(range(n), classes, rotation=90 if n > 10 else 45, ha="right",
                  fontproperties=font)
    ax.set_yticks(range(n), classes, fontproperties=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        high = matrix.max() / 2 if matrix.size else 0
        for (i, j), count in np.ndenumerate(matrix):
            if count:
                ax.text(j, i, str(count), ha="center", va="center",
                        color="white" if count > high else "black", fontsize=8)
    ax.set_title(title)
    save_png(fig, path, dpi=110, bbox_inches="tight")


def _title(result, font, size):
    if result.error is not None:
        lines = ["cannot read picture"]
    else:
        lines = [f"{p.display} ({p.score:.2f})" for p in result.predictions[:TITLE_ANSWERS]]
    kwargs = {"fontsize": size}
    if font is not None:
        font = font.copy()
        font.set_size(size)
        kwargs = {"fontproperties": font}
    return "\n".join(lines), kwargs


def _thumbnail(result, picture):
    """The picture (given, or read from `result.path`) shrunk to at most THUMBNAIL_SIZE px."""
    from PIL import Image

    if picture is None:
        if result.error is not None or result.path is None:
            return None
        try:
            picture = images.load_image(result.path)
        except images.ImageError:
            return None
    img = Image.fromarray(np.asarray(picture, dtype=np.uint8))
    img.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    return np.asarray(img)


def _draw(ax, result, picture, font, size):
    thumb = _thumbnail(result, picture)
    if thumb is not None:
        ax.imshow(thumb)
    ax.set_axis_off()
    text, kwargs = _title(result, font, size)
    ax.set_title(text, **kwargs)


def _pages(results, pictures):
    """Lists of (result, picture): one per figure, a sheet's worth each above the limit."""
    pairs = list(zip(results, pictures if pictures is not None else [None] * len(results)))
    per_page = 1 if len(pairs) <= MAX_SINGLE_FIGURES else SHEET_COLUMNS * SHEET_ROWS
    return [pairs[i:i + per_page] for i in range(0, len(pairs), per_page)]


def _figure(page, font, figure_cls):
    """Draw a page: one picture large, or a grid of thumbnails with smaller titles."""
    if len(page) == 1:
        fig = figure_cls(figsize=(5, 5.8))
        _draw(fig.add_subplot(1, 1, 1), *page[0], font, 11)
    else:
        rows = -(-len(page) // SHEET_COLUMNS)
        fig = figure_cls(figsize=(SHEET_COLUMNS * 2.6, rows * 3.2))
        for i, (result, picture) in enumerate(page):
            _draw(fig.add_subplot(rows, SHEET_COLUMNS, i + 1), result, picture, font, 7)
    fig.tight_layout()
    return fig


def picture_file_names(paths, suffix=".png"):
    """A file name per picture path (None: a picture given as an array, `picture_N`): its
    own name with `suffix`, numbered where two pictures share a name."""
    names, used = [], set()
    for i, path in enumerate(paths):
        stem = os.path.splitext(os.path.basename(path))[0] if path else f"picture_{i + 1}"
        name, n = f"{stem}{suffix}", 1
        while name in used:
            n += 1
            name = f"{stem}_{n}{suffix}"
        used.add(name)
        names.append(name)
    return names


def _page_names(pages):
    """File names: the picture's own name for single figures, numbered sheets otherwise."""
    if pages and len(pages[0]) > 1:
        return [f"predictions_{i + 1:03d}.png" for i in range(len(pages))]
    return picture_file_names([page[0][0].path for page in pages])


def _all_titles(results):
    return [p.display for r in results for p in r.predictions[:TITLE_ANSWERS]]


def save_figures(results, out_dir, pictures=None):
    """Write PNGs of `results` (`PictureResult`s) to `out_dir`, atomically; return the paths.

    One PNG per picture up to `MAX_SINGLE_FIGURES` pictures, else contact sheets of
    `SHEET_COLUMNS` x `SHEET_ROWS`. `pictures` gives the pixels of pictures without
    a path (arrays); others are read from their paths.
    """
    from matplotlib.figure import Figure

    font = font_for(_all_titles(results))
    pages = _pages(results, pictures)
    paths = []
    for page, name in zip(pages, _page_names(pages)):
        fig = _figure(page, font, Figure)
        path = os.path.join(os.fspath(out_dir), name)
        save_png(fig, path, dpi=100)
        paths.append(path)
    return paths


def show_figures(results, pictures=None):
    """Open a window per picture (or per sheet) with its top answers; blocks until closed."""
    import matplotlib.pyplot as plt

    require_display()
    font = font_for(_all_titles(results))
    for page in _pages(results, pictures):
        _figure(page, font, plt.figure)
    with quiet_missing_glyphs():
        plt.show()


def require_display():
    """Raise `UserError` unless matplotlib can open windows here (checked before any work)."""
    import matplotlib.pyplot as plt

    if plt.get_backend().lower() in {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}:
        raise UserError("--show needs a display (matplotlib has no window backend here); "
                        "use --save_figure DIR instead")


def save_contact_sheet(paths, captions, path, title=None, columns=8):
    """One PNG of the pictures at `paths`, in that order, in rows of `columns`, each with
    its caption (a font that has every caption's glyphs), written atomically to `path`.
    A picture that cannot be read any more keeps its place, captioned as such."""
    from matplotlib.figure import Figure

    font = font_for(list(captions) + ([title] if title else []))
    rows = max(1, -(-len(paths) // columns))
    fig = Figure(figsize=(columns * 1.7, rows * 2.1 + (0.5 if title else 0)))
    for i, (picture, caption) in enumerate(zip(paths, captions)):
        ax = fig.add_subplot(rows, columns, i + 1)
        try:
            img = images.load_image(picture)
        except images.ImageError:
            img, caption = None, f"{caption}\n(cannot read)"
        if img is not None:
            small = max(img.shape[:2]) < 64  # a digit's 8x8 pixels: squares, not a blur
            ax.imshow(_thumbnail(None, img), interpolation="nearest" if small else "antialiased")
        ax.set_axis_off()
        kwargs = {"fontsize": 7}
        if font is not None:
            kwargs = {"fontproperties": font.copy()}
            kwargs["fontproperties"].set_size(7)
        ax.set_title(caption, **kwargs)
    if title:
        kwargs = {"fontproperties": font} if font is not None else {}
        fig.suptitle(title, **kwargs)
    fig.tight_layout()
    save_png(fig, path, dpi=100)
    return path
