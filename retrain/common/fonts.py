"""Fonts for labels: a font that has every glyph of the labels, or one warning.

Translated labels are often Chinese, Japanese or Korean, which matplotlib's default
font (DejaVu Sans) lacks and draws as empty boxes. kapps depends on the PyPI package
`noto-cjk-sans-jp-regular` (Noto Sans CJK, SIL Open Font License, one 16 MB OpenType
file with Simplified and Traditional Chinese, Japanese and Korean glyphs), so a fresh
`pip install` draws them without root or a system font package; that font is tried
first, then the installed ones. When none has the glyphs, one warning names a package
to install, and matplotlib's own per-character `Glyph ... missing` warnings are kept
quiet from then on.
"""
import contextlib
import functools
import os
import warnings

# Fonts with CJK glyphs, preferred in this order; any other installed font that has the
# glyphs is used after these.
CJK_FONT_FAMILIES = (
    "Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans CJK TC", "Noto Sans CJK KR",
    "Noto Sans SC", "Source Han Sans SC", "Source Han Sans CN", "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei", "Droid Sans Fallback", "AR PL UMing CN", "AR PL UKai CN",
    "AR PL New Sung", "Microsoft YaHei", "SimHei", "PingFang SC", "Hiragino Sans GB",
    "Arial Unicode MS",
)
FONT_PACKAGE_HINT = ("install a font with these glyphs: `pip install noto-cjk-sans-jp-regular` "
                     "(kapps' own dependency), or on Debian/Ubuntu "
                     "`apt-get install fonts-noto-cjk`")


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


def _bundled_fonts():
    """The font files of kapps' font dependency (none if it is not installed)."""
    try:
        import noto_cjk_sans_jp_regular
    except ImportError:
        return []
    return [str(noto_cjk_sans_jp_regular.FONT_PATH)]


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
    for path in _bundled_fonts() + _installed_fonts():
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


@contextlib.contextmanager
def quiet_missing_glyphs():
    """Drawing with a font that lacks some glyphs: once `font_for` has warned about it,
    keep matplotlib's `Glyph N missing from font(s)` warnings (one per character) quiet."""
    with warnings.catch_warnings():
        if _warned_missing_font:
            warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from")
        yield
