"""Stable train/validation/test split by hashing each file's name.

The algorithm is the one of TensorFlow's original `retrain.py`: a file's split is a
pure function of its name, so adding pictures later never moves an old picture into
another split (a random shuffle would leak old training pictures into the new test
set), and every run on the same folder gets the same split.

The name hashed is the path *relative to the class folder*, with `/` separators
(`sub/img1.jpg`), so moving or renaming the whole image folder, or the class folder,
keeps every split. Anything after `_nohash_` in a file name is ignored, so
`alice_nohash_1.jpg` and `alice_nohash_2.jpg` (e.g. one person's pictures) always
land in the same split.
"""
import hashlib
import numbers
import re

from kapps.errors import UserError

SPLITS = ("train", "validation", "test")

# Kept from retrain.py: changing it would change every existing split.
MAX_NUM_IMAGES_PER_CLASS = 2 ** 27 - 1


def check_percentages(testing_percentage, validation_percentage):
    """Raise `UserError` unless both are numbers in [0, 100) that leave some for training."""
    for name, value in (("testing_percentage", testing_percentage),
                        ("validation_percentage", validation_percentage)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                or not 0 <= value < 100:
            raise UserError(f"{name} must be a number from 0 to 100; received {value!r}")
    if testing_percentage + validation_percentage >= 100:
        raise UserError(
            "testing_percentage + validation_percentage must be below 100 so some pictures "
            f"are left for training; received {testing_percentage} + {validation_percentage}")


def split_key(rel_path):
    """The string hashed for `rel_path`: `/` separators, `_nohash_...` cut off the file name."""
    rel_path = str(rel_path).replace("\\", "/")
    folder, _, name = rel_path.rpartition("/")
    name = re.sub(r"_nohash_.*$", "", name)
    return f"{folder}/{name}" if folder else name


def name_hash(rel_path):
    """The stable number a file's name hashes to (SHA-1 of `split_key`): its split, and
    its worker's share of a multi-worker feature pass, are read from it."""
    return int(hashlib.sha1(split_key(rel_path).encode("utf-8")).hexdigest(), 16)


def which_split(rel_path, testing_percentage, validation_percentage):
    """`"train"`, `"validation"` or `"test"` for the file at `rel_path` within its class folder.

    Args:
        rel_path: the file's path relative to its class folder, e.g. `"img1.jpg"` or
            `"summer/img1.jpg"` (either separator).
        testing_percentage: share of pictures for the test split, 0 to 100.
        validation_percentage: share of pictures for the validation split, 0 to 100.
    """
    check_percentages(testing_percentage, validation_percentage)
    percentage = ((name_hash(rel_path) % (MAX_NUM_IMAGES_PER_CLASS + 1))
                  * (100.0 / MAX_NUM_IMAGES_PER_CLASS))
    if percentage < validation_percentage:
        return "validation"
    if percentage < testing_percentage + validation_percentage:
        return "test"
    return "train"
