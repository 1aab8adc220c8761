"""SmallCNN: registered, layers named by block, any input size without the top, a weights
file round trip, clear errors, and it learns a tiny task (a broken graph would not)."""
import keras
import numpy as np
import pytest

import kapps


def bars(n, side=16, seed=0):
    """Pictures of one bright horizontal (class 0) or vertical (class 1) bar, with noise."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.2, (n, side, side, 3)).astype("float32")
    y = np.arange(n) % 2
    for i, label in enumerate(y):
        at = rng.integers(2, side - 2)
        if label:
            x[i, :, at - 1:at + 1] = 1.0
        else:
            x[i, at - 1:at + 1, :] = 1.0
    return x, y


def test_registered_and_exported():
    assert "small_cnn" in kapps.list_models()
    info = kapps.get_model_info("small_cnn")
    assert (info.builder, info.preprocessing, info.feature_pooling) == \
        (kapps.SmallCNN, "unit", "avg")


def test_classifier_layers_named_by_block():
    model = kapps.create_model("small_cnn", classes=4)
    names = [layer.name for layer in model.layers]
    for name in ("block1_conv1", "block1_conv1_bn", "block1_conv2_relu", "block1_pool",
                 "block2_conv2", "block2_pool", "block3_conv1_bn", "avg_pool", "predictions"):
        assert name in names
    out = keras.ops.convert_to_numpy(model(np.zeros((2, 32, 32, 3), "float32")))
    assert out.shape == (2, 4)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("side,pooling,shape", [(16, None, (4, 4, 128)), (24, "avg", (128,)),
                                                (40, "max", (128,))])
def test_features_without_top_at_any_size(side, pooling, shape):
    model = kapps.create_model("small_cnn", include_top=False, pooling=pooling)
    x = np.random.default_rng(0).uniform(0, 1, (2, side, side, 3)).astype("float32")
    out = keras.ops.convert_to_numpy(model(x, training=False))
    assert out.shape == (2,) + shape and np.isfinite(out).all()


def test_weights_file_round_trip(tmp_path):
    model = kapps.create_model("small_cnn", include_top=False, input_shape=(16, 16, 3),
                               pooling="avg")
    model.set_weights([w + np.float32(0.01) for w in model.get_weights()])
    path = str(tmp_path / "small_cnn_notop.weights.h5")
    model.save_weights(path)
    again = kapps.create_model("small_cnn", include_top=False, input_shape=(16, 16, 3),
                               pooling="avg", weights=path)
    x = np.random.default_rng(1).uniform(0, 1, (2, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs,message", [
    (dict(weights="imagenet"), "no ImageNet weights"),
    (dict(include_top=False, input_shape=(6, 6, 3)), "at least 8x8"),
    (dict(input_shape=(64, 64, 3)), "should be (32, 32, 3)"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        kapps.create_model("small_cnn", **kwargs)


def test_learns_bars_from_scratch():
    keras.utils.set_random_seed(0)
    x, y = bars(64)
    model = kapps.create_model("small_cnn", classes=2, input_shape=(16, 16, 3),
                               include_top=False, pooling="avg")
    outputs = keras.layers.Dense(2, activation="softmax")(model.output)
    classifier = keras.Model(model.input, outputs)
    classifier.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy",
                       metrics=["accuracy"])
    classifier.fit(x, y, epochs=8, batch_size=16, verbose=0)
    x_new, y_new = bars(32, seed=1)
    accuracy = np.mean(classifier.predict(x_new, verbose=0).argmax(axis=1) == y_new)
    assert accuracy >= 0.9
