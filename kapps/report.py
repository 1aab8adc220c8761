"""Parameters and multiply-adds (MACs) per layer, counted from each layer's own shapes.

Counting from the layer configuration (kernel size, channels, groups, bias) rather
than from `count_params()` makes the MACs and the parameters come from one
formula per layer kind, so the two can be checked against each other and against
Keras' own parameter count:

- convolution: params = C_out x (C_in / groups x K + 1),
  MACs = spatial_out x C_out x C_in / groups x K
  (K is the kernel's number of taps, e.g. kh x kw; no +1 without a bias);
- transposed convolution: the same taps, scattered from every input position;
- depthwise: the same per input channel (C_out = C_in x depth_multiplier, groups = C_in);
- separable: depthwise then a 1x1 pointwise convolution;
- dense: params = C_in x C_out + C_out, MACs = C_in x C_out per input vector;
- batch normalization: 2 to 4 values per channel (moving mean and variance, gamma, beta);
- anything else: its weights' sizes, and 0 MACs: pooling, activations (ReLU,
  hard-swish), rescaling and element-wise layers (Add, Multiply, Concatenate, local
  response normalization) have no weights and cost a few operations per value, not
  multiply-adds per connection.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

from kapps.process import import_tensorflow

import_tensorflow()  # before Keras loads it, so its C++ start-up chatter stays hidden

import keras  # noqa: E402
from keras import layers  # noqa: E402

from kapps.registry import get_model_info  # noqa: E402
from kapps.stats import ModelStats  # noqa: E402  (the table `kapps models` prints)

_GLOBAL_POOLING = (layers.GlobalAveragePooling1D, layers.GlobalAveragePooling2D,
                   layers.GlobalAveragePooling3D, layers.GlobalMaxPooling1D,
                   layers.GlobalMaxPooling2D, layers.GlobalMaxPooling3D, layers.Flatten)
_DEPTHWISE = (layers.DepthwiseConv1D, layers.DepthwiseConv2D)
_SEPARABLE = (layers.SeparableConv1D, layers.SeparableConv2D)
_TRANSPOSE = (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
_CONV = (layers.Conv1D, layers.Conv2D, layers.Conv3D)


@dataclass(frozen=True)
class LayerRow:
    """One line of a per-layer report.

    Attributes:
        name: layer name (`outer/inner` for layers of a nested model).
        kind: layer class name, e.g. `Conv2D`.
        output_shape: output shape without the batch axis.
        params: number of parameters (trainable and not).
        macs: multiply-adds for one input; `None` when a spatial size is unknown.
    """

    name: str
    kind: str
    output_shape: Tuple
    params: int
    macs: Optional[int]


def _channels_axis(layer):
    return 1 if getattr(layer, "data_format", "channels_last") == "channels_first" else -1


def _spatial(shape, layer):
    """Product of the spatial sizes of `shape` (None if one is unknown)."""
    dims = shape[2:] if _channels_axis(layer) == 1 else shape[1:-1]
    return None if any(d is None for d in dims) else math.prod(dims)


def _times(spatial, per_position):
    return None if spatial is None else spatial * per_position


def layer_counts(layer) -> Tuple[int, Optional[int]]:
    """(params, MACs) of one layer, from its configuration and input/output shapes."""
    if isinstance(layer, (*_DEPTHWISE, *_SEPARABLE, *_TRANSPOSE, *_CONV)):
        c_in = layer.input.shape[_channels_axis(layer)]
        taps = math.prod(layer.kernel_size)
        out_spatial = _spatial(layer.output.shape, layer)
        bias = int(layer.use_bias)
        if isinstance(layer, _DEPTHWISE):
            c_mid = c_in * layer.depth_multiplier
            return c_mid * (taps + bias), _times(out_spatial, c_mid * taps)
        if isinstance(layer, _SEPARABLE):
            c_mid = c_in * layer.depth_multiplier
            c_out = layer.filters
            params = c_mid * taps + c_mid * c_out + bias * c_out
            return params, _times(out_spatial, c_mid * taps + c_mid * c_out)
        if isinstance(layer, _TRANSPOSE):
            # Every input position scatters into K taps of every output channel.
            params = layer.filters * (c_in * taps + bias)
            return params, _times(_spatial(layer.input.shape, layer), c_in * layer.filters * taps)
        per_filter = c_in // layer.groups * taps
        return layer.filters * (per_filter + bias), _times(out_spatial, layer.filters * per_filter)
    if isinstance(layer, layers.Dense):
        shape = layer.input.shape
        c_in = shape[-1]
        vectors = shape[1:-1]
        n_vectors = None if any(d is None for d in vectors) else math.prod(vectors)
        return layer.units * (c_in + int(layer.use_bias)), _times(n_vectors, c_in * layer.units)
    if isinstance(layer, layers.BatchNormalization):
        channels = layer.input.shape[layer.axis]
        return channels * (2 + int(layer.center) + int(layer.scale)), 0
    return sum(math.prod(w.shape) for w in layer.weights), 0


def layer_table(model) -> List[LayerRow]:
    """One `LayerRow` per layer of `model`, nested models flattened as `outer/inner`."""
    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            rows += [LayerRow(f"{layer.name}/{row.name}", row.kind, row.output_shape,
                              row.params, row.macs) for row in layer_table(layer)]
            continue
        params, macs = layer_counts(layer)
        rows.append(LayerRow(layer.name, type(layer).__name__,
                             tuple(layer.output.shape[1:]), params, macs))
    return rows


def totals(rows) -> Tuple[int, Optional[int]]:
    """(params, MACs) summed over `rows`; MACs is None if any layer's is unknown."""
    macs = [row.macs for row in rows]
    return sum(row.params for row in rows), None if None in macs else sum(macs)


def feature_size(model) -> Optional[int]:
    """Channels of the feature map entering the classifier top's pooling: the layer named
    `avg_pool`, else the first global pooling (or flatten) layer.

    That is the length of the `include_top=False, pooling="avg"` output, read off a
    model with its top so the report need not build the network twice. The name comes
    first because squeeze-and-excite blocks (MobileNetV3) pool globally inside the body.
    """
    pools = [layer for layer in model.layers if isinstance(layer, _GLOBAL_POOLING)]
    pools = [layer for layer in pools if layer.name == "avg_pool"] or pools
    return pools[0].input.shape[_channels_axis(pools[0])] if pools else None


def build_for_report(name, input_size=None):
    """(model, input size, include_top): `name` with random weights at `input_size`.

    The input size defaults to the architecture's own. The model has the classifier
    top where the architecture accepts that size, else it is the average-pooled
    feature extractor (what a retrained model uses).
    """
    from kapps.process import start_devices

    info = get_model_info(name)
    start_devices()  # quietly, before building does it with TensorFlow's CUDA probe lines
    size = info.default_size if input_size is None else int(input_size)
    shape = (size, size, info.channels)
    try:
        return info.builder(include_top=True, weights=None, input_shape=shape), size, True
    except ValueError:
        # The top only fits some sizes; a size that is too small fails here again.
        model = info.builder(include_top=False, weights=None, input_shape=shape, pooling="avg")
        return model, size, False


def model_stats(name, input_size=None) -> ModelStats:
    """Parameters, MACs and pooled feature size of `name` at `input_size`."""
    model, size, include_top = build_for_report(name, input_size)
    params, macs = totals(layer_table(model))
    return ModelStats(get_model_info(name).name, size, include_top, params, macs,
                      feature_size(model))
