"""The model tour: AlexNet and GoogLeNet against their published sizes, local response
normalization against TensorFlow's, MobileNetV3's in-network rescaling applied once in
an export, and the new architectures through retrain and tune end to end.

The registry-wide checks (tiny inputs, keras.applications twins, official files,
parameter and MAC reports) are in test_models.py, test_weights.py and test_report.py.
"""
import imagegen
import keras
import numpy as np
import pytest
import tensorflow as tf

import kapps
import tuning
from kapps.normalization import LocalResponseNormalization
from retrain import RetrainConfig, retrain
from retrain.config import resolve
from retrain.train.fit import train
from retrain.data.images import load_image
from retrain.train.model import build_model, leaf_layers
from retrain.train.prepare import prepare_data

# Published parameter counts at 224 px with the 1000-class top; ours must be within 1%
# (they are equal).
PUBLISHED_PARAMS = {
    # torchvision.models.alexnet (its weights table: 61,100,840), the single-tower network
    # of Krizhevsky (2014). The 2012 paper's filter counts (96-256-384-384-256) would
    # give 62,378,344.
    "alexnet": 61_100_840,
    # The BVLC Caffe model bvlc_googlenet (deploy.prototxt, no auxiliary heads), the
    # paper's table 1 with biases: 6,998,552 (as counted in CaffeJS's README and HPE's
    # dlcookbook-dlbs model table). torchvision's 6,624,904 differs by 5.6%: its "5x5"
    # branches are 3x3 and it swaps biases for batch norm.
    "googlenet": 6_998_552,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_parameter_count_matches_the_published_one(name):
    model = kapps.create_model(name, weights=None)
    assert model.input_shape == (None, 224, 224, 3) and model.output_shape == (None, 1000)
    assert abs(model.count_params() / PUBLISHED_PARAMS[name] - 1) < 0.01
    assert model.count_params() == PUBLISHED_PARAMS[name]


def test_googlenet_auxiliary_classifiers_train_and_are_absent_by_default():
    assert len(kapps.GoogLeNet(classes=10).outputs) == 1
    model = kapps.GoogLeNet(classes=10, aux_logits=True)
    assert model.output_names == [
        "predictions", "loss1_classifier", "loss2_classifier"]
    # Each head: 1x1 conv (C_in -> 128), fc 2048 -> 1024, classifier 1024 -> 10.
    heads = sum(c_in * 128 + 128 + 2048 * 1024 + 1024 + 1024 * 10 + 10 for c_in in (512, 528))
    assert model.count_params() == kapps.GoogLeNet(classes=10).count_params() + heads

    # The paper's training loss: the auxiliary heads weigh 0.3 each.
    model.compile("sgd", ["sparse_categorical_crossentropy"] * 3, loss_weights=[1.0, 0.3, 0.3])
    x = np.random.default_rng(0).uniform(-1, 1, (2, 224, 224, 3)).astype("float32")
    y = np.array([1, 7])
    losses = model.train_on_batch(x, [y, y, y])
    assert np.isfinite(losses).all()
    for out in model.predict(x, verbose=0):
        assert out.shape == (2, 10)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_local_response_normalization_is_tensorflows():
    x = np.random.default_rng(0).uniform(0, 60, (2, 5, 5, 7)).astype("float32")
    ours = keras.ops.convert_to_numpy(LocalResponseNormalization()(x))
    expected = tf.nn.local_response_normalization(x, depth_radius=2, bias=2.0, alpha=1e-4,
                                                  beta=0.75).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-5)
    assert np.abs(ours - x / 2.0 ** 0.75).max() > 0.1  # the neighbours matter


@pytest.mark.parametrize("name,side", [("alexnet", 63), ("googlenet", 32)])
def test_lrn_models_save_and_load_in_safe_mode(tmp_path, name, side):
    model = kapps.create_model(name, include_top=False, weights=None, pooling="avg",
                               input_shape=(side, side, 3), local_response_normalization=True)
    assert any(isinstance(layer, LocalResponseNormalization) for layer in model.layers)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    x = np.random.default_rng(0).uniform(0, 1, (1, side, side, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)


@pytest.fixture
def colours(tmp_path):
    return imagegen.make_class_folder(tmp_path / "colours", {"red": 12, "green": 12, "blue": 12})


def config(image_dir, tmp_path, **overrides):
    settings = dict(image_dir=str(image_dir), image_size=32, epochs=2, learning_rate=0.01,
                    train_batch_size=8, testing_percentage=20, validation_percentage=20,
                    verbose=0, output_dir=str(tmp_path / "out"),
                    bottleneck_dir=str(tmp_path / "cache"))
    settings.update(overrides)
    return RetrainConfig(**settings)


def random_weights(model):
    """He-scaled kernels and non-trivial batch norms: with Keras' default initializers the
    signal of a MobileNetV3 fades to a constant within a few blocks, and a test of its
    input scaling would compare constants."""
    rng = np.random.default_rng(2)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = (w.shape for w in layer.get_weights())
            layer.set_weights([rng.uniform(0.5, 1.5, gamma), rng.normal(0, 0.1, beta),
                               rng.normal(0, 0.1, mean), rng.uniform(0.5, 1.5, variance)])
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            kernel, *bias = layer.get_weights()
            fan_in = np.prod(kernel.shape[:2]) * (
                1 if isinstance(layer, keras.layers.DepthwiseConv2D) else kernel.shape[2])
            layer.set_weights([rng.normal(0, np.sqrt(2 / fan_in), kernel.shape)] + bias)
    return model


def test_mobilenet_v3_export_rescales_raw_pixels_once(colours, tmp_path):
    """A head on MobileNetV3 Small: the export's features are keras.applications' twin
    (which rescales inside) fed the same raw pixels; rescaling twice would differ."""
    weights = str(tmp_path / "mnv3.weights.h5")
    ours = random_weights(kapps.MobileNetV3Small(include_top=False, weights=None,
                                                    input_shape=(32, 32, 3)))
    ours.save_weights(weights)
    graph = tmp_path / "out" / "graph.pb"
    result = retrain(config(colours, tmp_path, architecture="mobilenet_v3_small",
                            weights=weights, output_graph=str(graph)))

    loaded = keras.saving.load_model(tmp_path / "out" / "model.keras", safe_mode=True)
    assert isinstance(loaded.get_layer("preprocess"), keras.layers.Identity)
    features = keras.Model(loaded.input, loaded.get_layer("features").output)
    twin = keras.applications.MobileNetV3Small(include_top=False, weights=None, pooling="avg",
                                               input_shape=(32, 32, 3))
    twin.set_weights(ours.get_weights())
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    exported = np.asarray(features(pixels, training=False))
    assert np.abs(exported[0] - exported[1]).max() > 1e-2  # the features see the picture
    np.testing.assert_allclose(exported, twin(pixels, training=False), atol=1e-5)
    twice = np.asarray(twin(kapps.preprocess_input(pixels, "tf"), training=False))
    assert np.abs(exported - twice).max() > 1e-2

    # The legacy frozen graph answers as the model does.
    png = tmp_path / "probe.png"  # lossless: both decoders give the same pixels
    imagegen.write_image(png, imagegen.CLASS_COLORS[0], size=32)
    graph_def = tf.compat.v1.GraphDef.FromString(graph.read_bytes())
    with tf.Graph().as_default() as g:
        tf.graph_util.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            scores = sess.run("final_result:0", {"DecodeJpeg/contents:0": png.read_bytes()})
    expected = result.model.predict(load_image(str(png))[None].astype("float32"), verbose=0)
    np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_alexnet_from_scratch_exports_a_model_that_loads_safely(colours, tmp_path):
    result = retrain(config(colours, tmp_path, architecture="alexnet", weights="none",
                            fine_tune="all", image_size=64, learning_rate=1e-3))
    assert result.prepared.base.feature_dim == 256
    loaded = keras.saving.load_model(tmp_path / "out" / "model.keras", safe_mode=True)
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 40, 50, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(pixels, verbose=0),
                               result.model.predict(pixels, verbose=0), atol=1e-5)


def _weights_of(base):
    return {layer.name: [w.numpy().copy() for w in layer.weights]
            for layer in leaf_layers(base.backbone) if layer.weights}


def test_alexnet_top_2_fine_tunes_exactly_conv4_and_conv5(colours, tmp_path):
    weights = str(tmp_path / "alexnet.weights.h5")
    kapps.AlexNet(include_top=False, input_shape=(64, 64, 3)).save_weights(weights)
    cfg = resolve(config(colours, tmp_path, architecture="alexnet", weights=weights,
                         image_size=64, fine_tune="top:2", epochs=1, learning_rate=1e-3))
    prepared = prepare_data(cfg, verbose=0)
    model = build_model(prepared, cfg)
    before = _weights_of(prepared.base)
    train(model, prepared, cfg)
    after = _weights_of(prepared.base)
    moved = {name for name in before
             if any(not np.array_equal(b, a) for b, a in zip(before[name], after[name]))}
    assert moved == {"conv4", "conv5"}


def test_densenet_head_on_a_named_layer(colours, tmp_path):
    weights = str(tmp_path / "densenet.weights.h5")
    kapps.DenseNet121(include_top=False, weights=None,
                      input_shape=(32, 32, 3)).save_weights(weights)
    cfg = resolve(config(colours, tmp_path, architecture="densenet121", weights=weights,
                         base_layer="pool3_pool"))
    base = prepare_data(cfg, verbose=0).base
    assert base.backbone.layers[-1].name == "pool3_pool"
    assert base.feature_dim == 256  # conv3's 512 channels, halved by the transition


def test_tune_searches_a_new_architecture_from_scratch(colours, tmp_path):
    _, rows = tuning.search(
        str(colours), "grid", {"architecture": ["alexnet"], "learning_rate": [1e-3, 3e-3]},
        directory=str(tmp_path / "runs"), weights="none", fine_tune="all", image_size=64,
        epochs=1, train_batch_size=8, bottleneck_dir=str(tmp_path / "cache"),
        trials_per_process=None, verbose=0)
    assert [(r["architecture"], r["learning_rate"]) for r in rows] == [
        ("alexnet", 1e-3), ("alexnet", 3e-3)]
    assert {r["status"] for r in rows} == {"COMPLETED"}
