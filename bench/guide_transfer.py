"""The baseline of bench_retrain.py: the Keras transfer-learning guide's way, as a user writes it.

`image_dataset_from_directory`, a frozen `keras.applications.MobileNetV2` base called
with `training=False`, a new dense head, `model.fit` for N epochs, then `model.save`:
the base runs over every picture in every epoch.
(https://keras.io/guides/transfer_learning/)

    python bench/guide_transfer.py IMAGE_DIR WEIGHTS_FILE OUT.keras [--image_size 96] [--epochs 10]
"""
import argparse

import keras
import tensorflow as tf


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("image_dir")
    parser.add_argument("weights")
    parser.add_argument("output")
    parser.add_argument("--image_size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    size = (args.image_size, args.image_size)
    train_ds, val_ds = keras.utils.image_dataset_from_directory(
        args.image_dir, validation_split=0.2, subset="both", seed=1337, image_size=size,
        batch_size=32, label_mode="categorical")
    classes = len(train_ds.class_names)
    train_ds = train_ds.prefetch(tf.data.AUTOTUNE)
    val_ds = val_ds.prefetch(tf.data.AUTOTUNE)

    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=size + (3,))
    base.load_weights(args.weights)
    base.trainable = False
    inputs = keras.Input(shape=size + (3,))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(train_ds, epochs=args.epochs, validation_data=val_ds, verbose=2)
    model.save(args.output)


if __name__ == "__main__":
    main()
