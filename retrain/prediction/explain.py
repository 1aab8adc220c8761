"""Why this answer: Grad-CAM heatmaps of where a model looked for its top answer.

Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017) weighs each channel of the last convolutional
feature map by how much the answer's score grows with it (the mean over space of the
score's gradient), sums the weighted channels and keeps the positive part: the places
whose features pushed the answer up. This follows Keras' own "Grad-CAM class activation
visualization" example, on the raw-pixels `model.keras` that `kapps retrain` exports:
its resize and preprocessing are layers inside, the registry architecture a nested
model (or flattened into it), then the head.

`find_layer(model)` names the feature map, `GradCam(model, layer)` computes heatmaps
(values 0 to 1, top row first, at the feature map's own size), `blend` lays one over
its picture, `save_overlay` writes that with the top answers on it, `heatmap_grid` gives
it as JSON-friendly rows. Only a `model.keras` has the gradients: `check_explainable`
refuses the other formats before anything loads.
"""
import os

import numpy as np

from kapps.errors import UserError

# Overlays: the heatmap's share of each pixel's colour, and the overlay PNG's longer side.
OVERLAY_ALPHA = 0.45
OVERLAY_SIDE = 512
OVERLAY_ANSWERS = 3
COLORMAP = "jet"
# Decimals of the heatmap grid in JSON: enough to find the peak, short to read.
GRID_DECIMALS = 3

_FORMAT_NAMES = {"graph": "a frozen graph.pb", "saved_model": "a SavedModel",
                 "litert": "a LiteRT .tflite file", "onnx": "an ONNX file"}


def check_explainable(model, labels=None, flag="--explain"):
    """`UserError` now, without loading anything, unless `model` is a `model.keras` (or a
    folder holding one): only it keeps the gradients Grad-CAM needs."""
    from retrain.prediction.locate import resolve

    kind, path, _, _ = resolve(model, labels)
    if kind != "keras":
        raise UserError(f"{flag}: explanations need the model.keras; {path} is "
                        f"{_FORMAT_NAMES[kind]}, which has no gradients; pass --model the "
                        "folder `kapps retrain` exported (with model.keras)")


def _layers(model):
    """The layers of `model` in calling order, InputLayers left out (a Sequential lists none)."""
    import keras

    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def _leaves_with_shapes(model):
    """(layer, rank of its (first) input, output shape) of every leaf layer, nested models
    expanded; a layer called more than once (shared) has no single shape and is left out."""
    from retrain.common.layers import leaf_layers

    found = []
    for layer in leaf_layers(model):
        try:
            first = layer.input[0] if isinstance(layer.input, (list, tuple)) else layer.input
            found.append((layer, len(first.shape), tuple(layer.output.shape)))
        except (AttributeError, ValueError, TypeError):
            continue
    return found


def _is_conv(layer):
    from keras import layers

    return isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.SeparableConv2D,
                              layers.Conv2DTranspose))


def _is_global_pooling(layer, input_rank, output_shape):
    """A layer that turns a feature map into a vector: global pooling (kept dims too, as
    MobileNetV3's head has) or a flatten of a 4-D map."""
    from keras import layers

    return isinstance(layer, (layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D)) or (
        input_rank == 4 and len(output_shape) == 2)


def find_layer(model):
    """The name of the last layer with a 4-D output before the last global pooling (or
    flatten) of `model`, searched in nested models too: the last convolutional feature
    map, where Grad-CAM looks.

    Squeeze-and-excitation blocks pool globally inside the network too; the last
    pooling is the one that makes the head's feature vector. Raises `UserError` when no
    convolution comes before it (a dense network has no feature map to explain).
    """
    leaves = _leaves_with_shapes(model)
    pools = [i for i, (layer, rank, shape) in enumerate(leaves)
             if _is_global_pooling(layer, rank, shape)]
    end = pools[-1] if pools else len(leaves)
    maps = [i for i, (_, _, shape) in enumerate(leaves[:end]) if len(shape) == 4]
    convs = [i for i, (layer, _, _) in enumerate(leaves[:end]) if _is_conv(layer)]
    if not maps or not convs or maps[-1] < convs[0]:
        raise UserError(f"model {model.name!r} has no convolutional feature map to explain "
                        "(no convolution before its last pooling); Grad-CAM needs a "
                        "convolutional network, or pass --explain_layer the name of a layer "
                        "with a 4-D output")
    return leaves[maps[-1]][0].name


def feature_map_layers(model):
    """Names of the layers with a 4-D output, in order: what `--explain_layer` may name."""
    return [layer.name for layer, _, shape in _leaves_with_shapes(model) if len(shape) == 4]


def _holds(model, name):
    from retrain.common.layers import leaf_layers

    return name in {layer.name for layer in leaf_layers(model)}


def _is_plain_chain(model):
    import keras

    from retrain.common.layers import is_chain

    return isinstance(model, keras.Sequential) or is_chain(model)


def _call_tapped(model, name, x, upto=None):
    """Call `model`'s layers on the symbolic tensor `x`; return (the output of its layer
    `name`, searched in nested models too, the output of `model` or of the layer before
    `upto`).

    A nested model's inner layers are not reachable from the outer graph, so the outer
    layers are called again in order and the nested model holding `name` is called as a
    model with two outputs, as `retrain.train.model._cut` cuts a model.
    """
    import keras

    layers = _layers(model)
    if upto is not None:
        layers = layers[:layers.index(upto)]
    direct = {layer.name: layer for layer in layers}
    if name in direct and (upto is None or not _is_plain_chain(model)):
        last = upto.input if upto is not None else model.outputs[0]
        return keras.Model(model.inputs, [direct[name].output, last])(x)
    if not _is_plain_chain(model):
        raise UserError(f"--explain_layer {name}: the layer is inside a nested model that "
                        f"{model.name!r} does not call as a plain chain of layers; pass a "
                        "layer of the outer model")
    tapped = None
    for layer in layers:
        if tapped is None and layer.name == name:
            x = tapped = layer(x)
        elif tapped is None and isinstance(layer, keras.Model) and _holds(layer, name):
            # Called as a model of its own, so its layers keep their own names: a model
            # retrained from a kapps export holds a `head_dropout` inside and one outside.
            inner = keras.Input(layer.inputs[0].shape[1:])
            tapped, x = keras.Model(inner, list(_call_tapped(layer, name, inner)),
                                    name=layer.name)(x)
        else:
            x = layer(x)
    return tapped, x


def _softmax_dense(model):
    """`model`'s last layer if it is a Dense with softmax (its score before the softmax is
    then the class score, as in the paper: the softmax saturates near 1), else None."""
    import keras

    last = _layers(model)[-1]
    if isinstance(last, keras.layers.Dense) and last.activation is keras.activations.softmax:
        return last
    return None


class GradCam:
    """Grad-CAM heatmaps of a raw-pixels Keras classifier for its top answer.

    Args:
        model: a Keras model taking RGB pixels (its preprocessing inside), ending in
            class scores, like a `model.keras` that `kapps retrain` exports.
        layer: the name of the layer whose output is explained (a 4-D feature map,
            searched in nested models too). Defaults to `find_layer(model)`.

    Call it on float32 pixels (N, H, W, 3) of one size: it returns (heatmaps (N, h, w)
    float32 in 0..1 at the feature map's size, top row first; scores (N, classes)).
    """

    def __init__(self, model, layer=None):
        import keras
        import tensorflow as tf

        self.layer = layer or find_layer(model)
        shapes = {leaf.name: shape for leaf, _, shape in _leaves_with_shapes(model)}
        if self.layer not in shapes:
            names = feature_map_layers(model)
            shown = ", ".join(names[-12:]) + (f" (and {len(names) - 12} before)"
                                              if len(names) > 12 else "")
            raise UserError(f"--explain_layer {self.layer}: model {model.name!r} has no layer "
                            f"of that name; its layers with a 4-D output: {shown}")
        if len(shapes[self.layer]) != 4:
            raise UserError(f"--explain_layer {self.layer}: its output has shape "
                            f"{shapes[self.layer]}, not a feature map (batch, height, width, "
                            "channels); pass a layer with a 4-D output")
        self._dense = _softmax_dense(model)
        inputs = keras.Input(model.inputs[0].shape[1:], name="pixels")
        feature_map, last = _call_tapped(model, self.layer, inputs, upto=self._dense)
        self._tapped = keras.Model(inputs, [feature_map, last], name="gradcam")
        self._tf = tf
        self._run = tf.function(self._heatmaps, reduce_retracing=True, autograph=False)

    def _heatmaps(self, pixels):
        tf = self._tf
        with tf.GradientTape() as tape:
            # Watching the pixels records every operation after them, the head's included:
            # a frozen base holds no trainable variable that would get them recorded.
            tape.watch(pixels)
            feature_map, last = self._tapped(pixels, training=False)
            if self._dense is not None:
                logits = tf.matmul(last, self._dense.kernel) + self._dense.bias
                scores = tf.nn.softmax(logits)
            else:
                logits = scores = last
            top = tf.argmax(scores, axis=-1)
            chosen = tf.gather(logits, top, batch_dims=1)
        # One picture's score depends on its own feature map only: the gradient of the sum
        # is each picture's own.
        grads = tf.cast(tape.gradient(chosen, feature_map), tf.float32)
        feature_map = tf.cast(feature_map, tf.float32)
        weights = tf.reduce_mean(grads, axis=(1, 2))
        cam = tf.nn.relu(tf.einsum("nhwk,nk->nhw", feature_map, weights))
        peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        return tf.math.divide_no_nan(cam, peak), tf.cast(scores, tf.float32)

    def __call__(self, pixels):
        heatmaps, scores = self._run(self._tf.convert_to_tensor(pixels, self._tf.float32))
        return heatmaps.numpy(), scores.numpy()


def heatmap_grid(heatmap, decimals=GRID_DECIMALS):
    """The heatmap as a list of rows, top row first, values 0 to 1 rounded: for JSON."""
    return np.round(np.asarray(heatmap, np.float64), decimals).tolist()


def upsample(heatmap, height, width):
    """The heatmap stretched bilinearly to (height, width), as float32 0..1."""
    from PIL import Image

    img = Image.fromarray(np.asarray(heatmap, np.float32), mode="F")
    return np.clip(np.asarray(img.resize((width, height), Image.BILINEAR)), 0, 1)


def blend(picture, heatmap, alpha=OVERLAY_ALPHA, max_side=None):
    """The picture (uint8 H x W x 3) with the heatmap laid over it in `COLORMAP` colours
    (red: where the answer came from), shrunk to `max_side` px on its longer side if given."""
    from matplotlib import colormaps
    from PIL import Image

    picture = np.asarray(picture, np.uint8)
    if max_side and max(picture.shape[:2]) > max_side:
        img = Image.fromarray(picture)
        img.thumbnail((max_side, max_side))
        picture = np.asarray(img)
    height, width = picture.shape[:2]
    colours = colormaps[COLORMAP](upsample(heatmap, height, width))[..., :3] * 255
    return np.clip((1 - alpha) * picture + alpha * colours, 0, 255).astype(np.uint8)


def save_overlay(picture, heatmap, predictions, path, side=OVERLAY_SIDE):
    """Write the picture with its heatmap and its top answers (`predictor.Prediction`s,
    best first; names in any script, CJK included) written on it, as a PNG at `path` of
    the picture's aspect, `side` px on its longer side."""
    from matplotlib.figure import Figure

    from retrain.report.figures import save_png
    from retrain.common.fonts import font_for

    picture = np.asarray(picture, np.uint8)
    height, width = picture.shape[:2]
    scale = side / max(height, width)
    dpi = 100
    # At least a few pixels a side: a 3000x2 picture would make an empty figure.
    fig = Figure(figsize=(max(width * scale, 8) / dpi, max(height * scale, 8) / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(blend(picture, heatmap, max_side=side), interpolation="bilinear")
    ax.set_axis_off()
    lines = [f"{p.display} ({p.score:.2f})" for p in predictions[:OVERLAY_ANSWERS]]
    size = max(6.0, min(14.0, min(width, height) * scale / 28))
    font = font_for(lines)
    kwargs = {"fontsize": size}
    if font is not None:
        font = font.copy()
        font.set_size(size)
        kwargs = {"fontproperties": font}
    # The answers go in the half away from the heat's peak, so they never hide it.
    top = np.unravel_index(np.argmax(heatmap), np.shape(heatmap))[0] >= np.shape(heatmap)[0] / 2
    ax.text(0.02, 0.98 if top else 0.02, "\n".join(lines), transform=ax.transAxes,
            va="top" if top else "bottom", ha="left",
            bbox={"boxstyle": "round,pad=0.3", "facecolor": "white", "alpha": 0.75,
                  "edgecolor": "none"}, **kwargs)
    save_png(fig, os.fspath(path), dpi=dpi)
    return path


def overlay_names(paths, suffix="_gradcam.png"):
    """A file name per picture path (None: a picture given as an array): its own name
    with `suffix`, numbered where two pictures share a name."""
    from retrain.report.figures import picture_file_names

    return picture_file_names(paths, suffix)
