"""Fixtures every test file gets: quiet TensorFlow start-up, seeded randomness, and no
pictures left decoding ahead by a test whose stubbed run never took them."""
import os
import random
import sys

import numpy as np
import pytest

# Before TensorFlow is first imported, so its C++ start-up logs stay quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def seeded():
    """Seed Python, NumPy and (when Keras is already imported) Keras/TensorFlow."""
    random.seed(0)
    np.random.seed(0)
    if "keras" in sys.modules:
        sys.modules["keras"].utils.set_random_seed(0)


@pytest.fixture(autouse=True)
def no_decoding_left_ahead():
    """A command-line test may start decoding ahead for a run that a stub replaces."""
    yield
    from retrain.data import decode_ahead

    decode_ahead.stop()


def pytest_configure(config):
    # Deprecation notices raised inside Keras and keras-tuner themselves (NumPy 2's copy
    # keyword, threading.currentThread) are theirs to fix and drown our own warnings.
    for module in ("keras", "keras_tuner"):
        config.addinivalue_line("filterwarnings", f"ignore::DeprecationWarning:{module}.*")


@pytest.fixture(scope="module")
def base_weights(tmp_path_factory):
    """A LeNet-5 feature extractor's weights (32 px, seed 1), as a user's own weights file."""
    import keras

    import kapps

    path = tmp_path_factory.mktemp("weights") / "lenet5_notop.weights.h5"
    keras.utils.set_random_seed(1)
    kapps.create_model("lenet5", include_top=False, input_shape=(32, 32, 3)).save_weights(path)
    return str(path)
