"""Pictures with their top answers in the title: one figure each, or contact sheets.

Saved figures are drawn on matplotlib's Agg canvas without pyplot, so they work on a
server with no display; `show_figures` alone opens windows. Translated labels are
often Chinese, Japanese or Korean, which matplotlib's default font (DejaVu Sans)
lacks and draws as empty boxes, so a font with the glyphs is looked up among the
installed ones, and a warning names a package to install when there is none.
"""
import functools
import os
import warnings

import numpy as np

from retrain import images
from retrain.atomic import atomic_path
from retrain.errors import UserError

# A sheet instead of one file per picture above this many pictures.
MAX_SINGLE_FIGURES = 8
SHEET_COLUMNS = 6
SHEET_ROWS = 4
THUMBNAIL_SIZE = 256
TITLE_ANSWERS = 3

# Fonts with CJK glyphs, preferred in this order; any other installed font that has the
# glyphs is used after these.
CJK_FONT_FAMILIES = (
    "Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans CJK TC", "Noto Sans CJK KR",
    "Noto Sans SC", "Source Han Sans SC", "Source Han Sans CN", "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei", "Droid Sans Fallback", "AR PL UMing CN", "AR PL UKai CN",
    "AR PL New Sung", "Microsoft YaHei", "SimHei", "PingFang SC", "Hiragino Sans GB",
    "Arial Unicode MS",
)
FONT_PACKAGE_HINT = ("install a font with these glyphs, e.g. Debian/Ubuntu "
                     "`apt-get install fonts-noto-cjk` (or the smaller fonts-wqy-zenhei)")


class MissingFontWarning(UserWarning):
    """No installed font has the glyphs of some label, which will show as boxes."""


_warned_missing_font = False


@functools.lru_cache(maxsize=None)
def _charmap(font_path):
    """The code points the font file has glyphs for (empty if matplotlib cannot read it)."""
    from matplotlib import ft2font

    try:
        return frozenset(ft2font.FT2Font(font_path).get_charmap())
    except (OSError, RuntimeError, ValueError):
        return frozenset()


def _installed_fonts():
    """Paths of the installed font files: matplotlib's, those in `CJK_FONT_FAMILIES` first.

    matplotlib's font list is cached from when it was first built, so fonts installed
    since (say, after our warning) come from a fresh scan of the system's font folders.
    """
    from matplotlib import font_manager

    rank = {name: i for i, name in enumerate(CJK_FONT_FAMILIES)}
    entries = sorted(font_manager.fontManager.ttflist,
                     key=lambda entry: (rank.get(entry.name, len(rank)), entry.fname))
    paths = [entry.fname for entry in entries] + sorted(font_manager.findSystemFonts())
    # Last Resort (shipped with matplotlib) maps every code point to a box: no use here.
    return [path for path in dict.fromkeys(paths)
            if not os.path.basename(path).startswith("LastResort")]


def _default_font():
    from matplotlib import font_manager

    return font_manager.findfont(font_manager.FontProperties(), fallback_to_default=True)


def font_for(texts):
    """A `FontProperties` for a font with glyphs for every character of `texts`.

    None when matplotlib's default font already has them all. When no installed font
    has them, warns once (`MissingFontWarning`, naming a font package) and returns the
    font that covers the most.
    """
    global _warned_missing_font
    from matplotlib import font_manager

    wanted = {ord(c) for text in texts for c in text if not c.isspace()}
    missing = wanted - _charmap(_default_font())
    if not missing:
        return None
    best, best_count = None, 0
    for path in _installed_fonts():
        count = len(missing & _charmap(path))
        if count > best_count:
            best, best_count = path, count
        if count == len(missing):
            break
    if best_count < len(missing) and not _warned_missing_font:
        _warned_missing_font = True
        sample = "".join(sorted(chr(c) for c in missing - _charmap(best or _default_font()))[:8])
        warnings.warn(f"no installed font has the characters {sample!r} of some labels; they "
                      f"will show as boxes in figures: {FONT_PACKAGE_HINT}",
                      MissingFontWarning, stacklevel=2)
    return font_manager.FontProperties(fname=best) if best else None


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


def _page_names(pages):
    """File names: the picture's own name for single figures, numbered sheets otherwise."""
    if pages and len(pages[0]) > 1:
        return [f"predictions_{i + 1:03d}.png" for i in range(len(pages))]
    names, used = [], set()
    for i, page in enumerate(pages):
        result = page[0][0]
        stem = os.path.splitext(os.path.basename(result.path))[0] if result.path else f"picture_{i + 1}"
        name, n = f"{stem}.png", 1
        while name in used:
            n += 1
            name = f"{stem}_{n}.png"
        used.add(name)
        names.append(name)
    return names


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
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        paths.append(path)
    return paths


def show_figures(results, pictures=None):
    """Open a window per picture (or per sheet) with its top answers; blocks until closed."""
    import matplotlib.pyplot as plt

    require_display()
    font = font_for(_all_titles(results))
    for page in _pages(results, pictures):
        _figure(page, font, plt.figure)
    plt.show()


def require_display():
    """Raise `UserError` unless matplotlib can open windows here (checked before any work)."""
    import matplotlib.pyplot as plt

    if plt.get_backend().lower() in {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}:
        raise UserError("--show needs a display (matplotlib has no window backend here); "
                        "use --save_figure DIR instead")
