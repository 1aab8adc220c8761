"""The hash split: same answers as TensorFlow's retrain.py, stable, grouped by `_nohash_`."""
import collections
import hashlib
import re

import pytest

from kapps.errors import UserError
from retrain.data.split import split_key, which_split


def _tf_retrain_split(file_name, testing_percentage, validation_percentage):
    """The loop body of `create_image_lists` in TensorFlow's retrain.py, for comparison."""
    max_num_images_per_class = 2 ** 27 - 1
    hash_name = re.sub(r"_nohash_.*$", "", file_name)
    hash_name_hashed = hashlib.sha1(hash_name.encode("utf-8")).hexdigest()
    percentage_hash = ((int(hash_name_hashed, 16) % (max_num_images_per_class + 1)) *
                       (100.0 / max_num_images_per_class))
    if percentage_hash < validation_percentage:
        return "validation"
    elif percentage_hash < (testing_percentage + validation_percentage):
        return "test"
    return "train"


NAMES = [f"img_{i:05d}.jpg" for i in range(4000)]


def test_same_split_as_tensorflow_retrain_py():
    for testing, validation in [(10, 10), (20, 5), (0, 30), (33.3, 0)]:
        ours = [which_split(n, testing, validation) for n in NAMES]
        assert ours == [_tf_retrain_split(n, testing, validation) for n in NAMES]


def test_proportions_follow_the_percentages():
    counts = collections.Counter(which_split(n, 15, 10) for n in NAMES)
    assert abs(counts["test"] / len(NAMES) - 0.15) < 0.03
    assert abs(counts["validation"] / len(NAMES) - 0.10) < 0.03
    assert counts["train"] == len(NAMES) - counts["test"] - counts["validation"]
    assert {which_split(n, 0, 0) for n in NAMES} == {"train"}


def test_nohash_suffix_groups_files():
    people = ["alice", "bob", "carol", "dave", "erin", "frank"]
    for person in people:
        splits = {which_split(f"{person}_nohash_{i}.png", 30, 30) for i in range(20)}
        assert splits == {which_split(person, 30, 30)}
    assert len({which_split(person, 30, 30) for person in people}) > 1
    # Without the marker the same twenty files spread over the splits.
    assert len({which_split(f"alice_{i}.png", 30, 30) for i in range(20)}) == 3


def test_nested_paths_hash_the_path_in_the_class_folder():
    assert split_key("summer/alice_nohash_3.jpg") == "summer/alice"
    assert split_key("summer\\beach\\x.jpg") == "summer/beach/x.jpg"
    assert split_key("a_nohash_x/b.jpg") == "a_nohash_x/b.jpg"
    for name in NAMES[:200]:
        assert which_split(f"sub\\{name}", 20, 20) == which_split(f"sub/{name}", 20, 20)
    differs = [n for n in NAMES[:200] if which_split(f"sub/{n}", 20, 20) != which_split(n, 20, 20)]
    assert differs, "the folder inside the class folder is part of the hashed name"


def test_unicode_names_hash_as_utf8():
    name = "猫の写真_01.jpg"
    assert which_split(name, 40, 40) == _tf_retrain_split(name, 40, 40)


@pytest.mark.parametrize("testing,validation,word", [
    (-1, 10, "testing_percentage"), (10, 100, "validation_percentage"),
    (60, 40, "below 100"), (70, 50, "below 100"), ("10", 10, "testing_percentage"),
    (True, 10, "testing_percentage"), (float("nan"), 10, "testing_percentage"),
])
def test_bad_percentages_are_user_errors(testing, validation, word):
    with pytest.raises(UserError) as info:
        which_split("a.jpg", testing, validation)
    assert word in str(info.value) and "\n" not in str(info.value)
