"""Label translations: show `波斯猫` beside `persian_cat` without retraining.

A translations file holds `english,translated` lines in UTF-8 (a byte-order mark, as
spreadsheet programs write, is allowed). A label with no line, or with an empty
translation, is shown as itself.
"""
import os
import re

from kapps.errors import UserError


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
    table = {}
    for line in lines:
        english, sep, translated = line.partition(",")
        if sep and english.strip() and translated.strip():
            table[english.strip()] = translated.strip()
    return table


def translate_labels(labels, table):
    """The translation of each label: matched exactly, then normalised; else the label itself."""
    normalized = {normalize_label(key): value for key, value in table.items()}
    return [table.get(label) or normalized.get(normalize_label(label)) or label
            for label in labels]
