"""Label translations: show `波斯猫` beside `persian_cat` without retraining.

A translations file holds `english,translated` lines in UTF-8 (a byte-order mark, as
spreadsheet programs write, is allowed). A label with no line, or with an empty
translation, is shown as itself. A file that would otherwise be ignored without a
word (another separator, labels of another model) gets one `TranslationsWarning`.
"""
import os
import re
import warnings

from kapps.errors import UserError


class TranslationsWarning(UserWarning):
    """A translations file has lines without a comma, or translates none of the labels."""


def normalize_label(label):
    """Lower-case, with runs of anything but letters and digits as one space.

    Folder names become labels in different spellings (`Persian_Cat`, `persian cat`),
    so a translations file written for one still matches the other.
    """
    return re.sub(r"[\W_]+", " ", label.lower()).strip()


def load_translations(path):
    """Read an `english,translated` file into a dict {english label: translation}.

    Only the first comma splits, so translations may hold commas. Blank lines are
    skipped; a line without a comma or with an empty translation adds nothing.
    """
    return read_translations(path)[0]


def read_translations(path):
    """(table, first bad line): `load_translations`'s table, and `(number, text)` of the
    first non-blank line without a comma (None if every line has one)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise UserError(f"translations file not found: {path}; pass --translations a file "
                        "of `english,translated` lines") from None
    except UnicodeDecodeError:
        raise UserError(f"translations file {path} is not UTF-8; save it as UTF-8 "
                        "(with or without BOM)") from None
    except OSError as err:  # a folder, no permission: the user's to fix, not a bug
        raise UserError(f"cannot read translations file {path} ({err.strerror or err}); "
                        "pass --translations a file of `english,translated` lines") from None
    table, bad = {}, None
    for number, line in enumerate(lines, 1):
        english, sep, translated = line.partition(",")
        if sep and english.strip() and translated.strip():
            table[english.strip()] = translated.strip()
        elif not sep and line.strip() and bad is None:
            bad = (number, line.strip())
    return table, bad


def check_translations(path, labels, table, bad):
    """Warn once (`TranslationsWarning`) if the file at `path` has a line without a comma
    or translates none of `labels`: naming the file, the first bad line and the count."""
    matched = sum(label != shown for label, shown in zip(labels, translate_labels(labels, table)))
    if bad is None and (matched or not labels):
        return
    problem = (f"line {bad[0]} {bad[1][:60]!r} has no comma (write `english,translated`, "
               "comma-separated, one a line)" if bad else "no line names one of its labels")
    warnings.warn(f"translations file {os.fspath(path)}: {problem}; {matched} of {len(labels)} "
                  "labels translated", TranslationsWarning, stacklevel=3)


def translate_labels(labels, table):
    """The translation of each label: matched exactly, then normalised; else the label itself."""
    normalized = {normalize_label(key): value for key, value in table.items()}
    return [table.get(label) or normalized.get(normalize_label(label)) or label
            for label in labels]
