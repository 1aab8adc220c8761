"""Params and MACs per layer, checked against the formulas on a hand-built model,
against Keras' own parameter count on real ones, and the `kapps models|summary` CLI."""
import keras
import pytest
from keras import layers

import kapps
from kapps import report
from kapps.cli import main
from kapps.stats import MODEL_STATS, stats_line


@pytest.fixture(scope="module")
def tiny():
    """One layer of each kind the report counts, on an 8x8x3 input."""
    x = inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", name="conv")(x)                      # 8x8x4
    x = layers.Conv2D(6, 3, strides=2, use_bias=False, name="conv_nobias")(x)   # 3x3x6
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(x)  # 3x3x12
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.SeparableConv2D(10, 3, padding="same", name="sep")(x)            # 3x3x10
    x = layers.Conv2D(4, 1, groups=2, name="grouped")(x)                        # 3x3x4
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(7, name="dense")(x)
    x = layers.BatchNormalization(scale=False, name="bn_noscale")(x)
    return keras.Model(inputs, x)


# layer -> (params, MACs), written as the formulas: C_out x (C_in x K x K [+ 1]) and
# H_out x W_out x C_out x C_in / groups x K x K.
EXPECTED = {
    "conv": (4 * (3 * 3 * 3 + 1), 8 * 8 * 4 * 3 * 3 * 3),
    "conv_nobias": (6 * 4 * 3 * 3, 3 * 3 * 6 * 4 * 3 * 3),
    "dw": (12 * (3 * 3 + 1), 3 * 3 * 12 * 3 * 3),
    "bn": (12 * 4, 0),
    "sep": (12 * 3 * 3 + 12 * 10 + 10, 3 * 3 * (12 * 3 * 3 + 12 * 10)),
    "grouped": (4 * (10 // 2 + 1), 3 * 3 * 4 * 10 // 2),
    "gap": (0, 0),
    "dense": (4 * 7 + 7, 4 * 7),
    "bn_noscale": (7 * 3, 0),
}


def test_counts_follow_the_formulas(tiny):
    rows = {row.name: row for row in report.layer_table(tiny)}
    assert {name: (rows[name].params, rows[name].macs) for name in EXPECTED} == EXPECTED
    assert rows["sep"].kind == "SeparableConv2D" and rows["sep"].output_shape == (3, 3, 10)
    params, macs = report.totals(rows.values())
    assert params == tiny.count_params()
    assert macs == sum(m for _, m in EXPECTED.values())
    assert report.feature_size(tiny) == 4


def test_unknown_spatial_size_gives_unknown_macs():
    model = kapps.LeNet5(include_top=False, input_shape=(None, None, 3))
    rows = report.layer_table(model)
    assert {row.name: row.macs for row in rows}["conv1"] is None
    assert report.totals(rows)[1] is None


@pytest.mark.parametrize("name,kwargs", [
    ("lenet5", {}),
    ("mobilenet", dict(alpha=0.25, input_shape=(128, 128, 3))),
    ("mobilenet_v2", dict(include_top=False, alpha=0.35, input_shape=(64, 64, 3))),
    ("inception_v3", dict(include_top=False, input_shape=(75, 75, 3))),  # batch norm without scale
    ("resnet50", dict(include_top=False, input_shape=(32, 32, 3))),
    # The new layer kinds: local response normalization, Concatenate, the auxiliary
    # heads, squeeze-and-excite's Multiply, hard-swish and Rescaling.
    ("alexnet", dict(local_response_normalization=True)),
    ("googlenet", dict(aux_logits=True, local_response_normalization=True)),
    ("densenet121", dict(include_top=False, input_shape=(32, 32, 3))),
    ("mobilenet_v3_small", dict(input_shape=(32, 32, 3))),
    ("mobilenet_v3_large", dict(include_top=False, input_shape=(32, 32, 3))),
])
def test_total_params_equal_keras_count(name, kwargs):
    model = kapps.create_model(name, weights=None, **kwargs)
    assert report.totals(report.layer_table(model))[0] == model.count_params()


def test_mobilenet_matches_the_paper():
    # Howard et al. (2017), table 8: 1.0 MobileNet-224, 569 million mult-adds, 4.2M params.
    stats = report.model_stats("mobilenet")
    assert (stats.input_size, stats.include_top) == (224, True)
    assert round(stats.macs / 1e6) == 569
    assert round(stats.params / 1e5) == 43  # 4.25M: keras counts batch-norm statistics too


# Howard et al. (2019), tables 3 and 4: 219M and 56M multiply-adds at 224 px. The
# element-wise products of squeeze-and-excite and hard-swish are not counted here.
@pytest.mark.parametrize("name,paper_macs", [("mobilenet_v3_large", 219e6),
                                              ("mobilenet_v3_small", 56e6)])
def test_mobilenet_v3_macs_match_the_paper(name, paper_macs):
    stats = report.model_stats(name)
    assert stats.include_top and abs(stats.macs / paper_macs - 1) < 0.02


# MobileNetV3's squeeze-and-excite blocks pool globally before the top does.
@pytest.mark.parametrize("name", ["lenet5", "mobilenet", "mobilenet_v2", "mobilenet_v3_small",
                                  "googlenet", "alexnet"])
def test_feature_size_is_the_pooled_output_length(name):
    info = kapps.get_model_info(name)
    pooled = kapps.create_model(name, include_top=False, weights=None, pooling="avg",
                                input_shape=(info.min_size,) * 2 + (3,))
    assert report.model_stats(name).feature_size == pooled.output.shape[-1]


def test_stats_at_a_size_the_top_does_not_fit():
    stats = report.model_stats("mobilenet_v2", input_size=64)
    assert (stats.input_size, stats.include_top, stats.feature_size) == (64, False, 1280)
    with pytest.raises(ValueError, match="at least 32x32"):
        report.model_stats("mobilenet_v2", input_size=16)


def test_the_models_table_matches_every_registered_architecture():
    """`kapps models` prints `kapps.stats.MODEL_STATS` without building anything: every
    registered architecture needs its measured line there, and it must still be right."""
    measured = {name: report.model_stats(name) for name in kapps.list_models()}
    wrong = [stats_line(s) for name, s in measured.items() if MODEL_STATS.get(name) != s]
    assert not wrong, ("kapps/stats.py MODEL_STATS lacks these architectures or has other "
                       "numbers for them; the lines to paste:\n" + "\n".join(wrong))
    assert sorted(MODEL_STATS) == sorted(measured), "MODEL_STATS names unregistered models"


def test_the_tables_read_before_tensorflow_match_the_registry():
    """`kapps retrain` checks --image_size and picks ImageNet or from-scratch weights from
    `kapps.stats` before TensorFlow loads: the registry's own values, copied."""
    from kapps.registry import get_model_info
    from kapps.stats import IMAGENET_FILES, MIN_SIZES

    names = kapps.list_models()
    assert MIN_SIZES == {name: get_model_info(name).min_size for name in names}
    assert IMAGENET_FILES == {name: get_model_info(name).imagenet_files["notop"][0]
                              for name in names if get_model_info(name).imagenet_files}


def test_cli_models_lists_every_architecture(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for name in kapps.list_models():
        assert name in lines
    assert f"{kapps.LeNet5(weights=None).count_params():,}" in lines["lenet5"]


def test_cli_summary(capsys):
    assert main(["summary", "LeNet5", "--input_size", "32"]) == 0
    out = capsys.readouterr().out
    assert "conv1" in out and "predictions" in out
    assert f"total params: {kapps.LeNet5(weights=None).count_params():,}" in out


def test_cli_unknown_model_lists_valid_names(capsys):
    assert main(["summary", "resnet9000"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "resnet9000" in err
    assert all(name in err for name in kapps.list_models())
    assert len(err.strip().splitlines()) == 1

