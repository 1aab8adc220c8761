"""The baseline of bench_search.py: a head search written the keras-tuner tutorial way.

`image_dataset_from_directory` data, a frozen `keras.applications.MobileNetV2` built
inside `build(hp)`, `tuner.search(train, validation_data=val, epochs=N)`: every trial
runs the frozen base over every picture in every epoch.
(https://keras.io/keras_tuner/getting_started/, https://keras.io/guides/transfer_learning/)

    python bench/tutorial_tuning.py IMAGE_DIR WEIGHTS_FILE PROJECT_DIR [--trials 10] [--epochs 3]
"""
import argparse

import keras
import keras_tuner
import tensorflow as tf


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("image_dir")
    parser.add_argument("weights")
    parser.add_argument("directory")
    parser.add_argument("--image_size", type=int, default=96)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    size = (args.image_size, args.image_size)
    train_ds, val_ds = keras.utils.image_dataset_from_directory(
        args.image_dir, validation_split=0.2, subset="both", seed=1337, image_size=size,
        batch_size=32, label_mode="categorical")
    classes = len(train_ds.class_names)
    train_ds, val_ds = train_ds.prefetch(tf.data.AUTOTUNE), val_ds.prefetch(tf.data.AUTOTUNE)

    def build(hp):
        base = keras.applications.MobileNetV2(include_top=False, weights=None,
                                              input_shape=size + (3,))
        base.load_weights(args.weights)
        base.trainable = False
        inputs = keras.Input(shape=size + (3,))
        x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
        x = base(x, training=False)
        x = keras.layers.GlobalAveragePooling2D()(x)
        x = keras.layers.Dropout(hp.Float("dropout", 0.0, 0.5, step=0.1))(x)
        outputs = keras.layers.Dense(classes, activation="softmax")(x)
        model = keras.Model(inputs, outputs)
        lr = hp.Float("learning_rate", 1e-4, 1e-1, sampling="log")
        optimizer = {"adam": keras.optimizers.Adam(lr),
                     "sgd": keras.optimizers.SGD(lr, momentum=0.9)}[
            hp.Choice("optimizer", ["adam", "sgd"])]
        model.compile(optimizer=optimizer, loss="categorical_crossentropy",
                      metrics=["accuracy"])
        return model

    tuner = keras_tuner.RandomSearch(build, objective="val_accuracy", max_trials=args.trials,
                                     seed=1, directory=args.directory, project_name="tutorial",
                                     overwrite=True)
    tuner.search(train_ds, validation_data=val_ds, epochs=args.epochs, verbose=2)
    print("best", tuner.oracle.get_best_trials(1)[0].score)


if __name__ == "__main__":
    main()
