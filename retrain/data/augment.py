"""Training-time distortions with retrain.py's meaning, as pure TensorFlow ops.

The same function makes the cached distorted bottleneck variants (with a seed
fixed per picture and variant, so a cache entry never depends on chance) and
distorts pictures on the fly when fine-tuning (with a fresh seed per picture).
"""
import tensorflow as tf


def distort(image, size, config, seed):
    """Randomly crop, scale, flip and brighten one picture, then return it at `size`.

    Args:
        image: float32 tensor (height, width, 3) of pixels in [0, 255].
        size: output side in pixels.
        config: a `RetrainConfig` (its `random_crop`, `random_scale` and
            `random_brightness` percentages and `flip_left_right`).
        seed: int tensor of shape (2,) for the stateless random ops.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=4)
    margin = 1.0 + config.random_crop / 100.0
    scale = tf.random.stateless_uniform([], seeds[0], 1.0, 1.0 + config.random_scale / 100.0)
    side = tf.cast(tf.math.ceil(size * margin * scale), tf.int32)
    image = tf.image.resize(image, tf.stack([side, side]))
    image = tf.image.stateless_random_crop(image, [size, size, 3], seeds[1])
    if config.flip_left_right:
        image = tf.image.stateless_random_flip_left_right(image, seeds[2])
    if config.random_brightness:
        spread = config.random_brightness / 100.0
        image = image * tf.random.stateless_uniform([], seeds[3], 1.0 - spread, 1.0 + spread)
    return tf.clip_by_value(image, 0.0, 255.0)


def distortion_key(config):
    """The distortion settings that change what a cached distorted variant holds."""
    return {"flip_left_right": bool(config.flip_left_right),
            "random_crop": float(config.random_crop),
            "random_scale": float(config.random_scale),
            "random_brightness": float(config.random_brightness)}
