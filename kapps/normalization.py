"""Local response normalization (LRN), the layer of AlexNet and GoogLeNet that Keras lacks.

Krizhevsky et al. (2012), section 3.3: each activation is divided by
`(bias + alpha * sum of the squares of the `depth_radius` neighbouring channels on each
side) ** beta`, as `tf.nn.local_response_normalization` computes it (alpha is not
divided by the window size, unlike PyTorch's `LocalResponseNorm`). Written with
`keras.ops` so it runs on any backend and saves and loads in safe mode.
"""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kapps")
class LocalResponseNormalization(keras.layers.Layer):
    """Normalize each channel by the energy of its neighbours (channels last).

    Args:
        depth_radius: channels on each side in the sum (the paper's n = 5 is radius 2).
            Defaults to `2`.
        bias: the paper's k. Defaults to `2.0`.
        alpha: the paper's alpha. Defaults to `1e-4`.
        beta: the paper's beta. Defaults to `0.75`.
    """

    def __init__(self, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        self.depth_radius = depth_radius
        self.bias = bias
        self.alpha = alpha
        self.beta = beta

    def call(self, inputs):
        squares = ops.square(inputs)
        channels = inputs.shape[-1]
        r = self.depth_radius
        padded = ops.pad(squares, [[0, 0]] * (len(inputs.shape) - 1) + [[r, r]])
        window = sum(padded[..., i:i + channels] for i in range(2 * r + 1))
        return inputs / ops.power(self.bias + self.alpha * window, self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "depth_radius": self.depth_radius, "bias": self.bias,
                "alpha": self.alpha, "beta": self.beta}
