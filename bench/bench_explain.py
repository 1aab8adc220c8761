"""What a Grad-CAM explanation costs: seconds per picture, explained against answered.

    python bench/bench_explain.py [--digits 200] [--photos 10]

Two models as `kapps retrain` exports them (raw pixels -> resize -> preprocessing ->
the architecture nested -> pooling -> softmax; the weights do not change the cost):
SmallCNN at 32 px on 8x8 digit scans saved as PNGs, MobileNetV2 at 224 px on phone-size
JPEGs (`bench/make_photos.py`, 4000x3000). For each, in one process on TensorFlow:
`Predictor.predict` on the folder, `Predictor.explain` on it (the first call traces,
timed apart), and the overlay PNGs `kapps predict --explain` writes.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)


def export(folder, architecture, size, classes):
    import keras
    import kapps

    info = kapps.get_model_info(architecture)
    pixels = keras.Input((None, None, 3), name="pixels")
    x = keras.layers.Resizing(size, size, name="resize")(pixels)
    x = kapps.preprocessing_layer(info.preprocessing)(x)
    backbone = kapps.create_model(architecture, include_top=False, weights=None,
                                  input_shape=(size, size, 3))
    x = keras.layers.GlobalAveragePooling2D(name="features")(backbone(x))
    outputs = keras.layers.Dense(len(classes), activation="softmax", name="predictions")(x)
    os.makedirs(folder, exist_ok=True)
    keras.Model(pixels, outputs).save(os.path.join(folder, "model.keras"))
    with open(os.path.join(folder, "labels.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(classes) + "\n")
    return folder


def digit_files(folder, count):
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(count):
        path = os.path.join(folder, f"{i:04d}.png")
        Image.fromarray((digits.images[i] * 16).clip(0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def measure(model_dir, paths):
    from retrain import Predictor
    from retrain.prediction.explain import overlay_names, save_overlay
    from retrain.data.images import load_image
    from retrain.prediction.explain import OVERLAY_SIDE

    predictor = Predictor(model_dir, runtime="tensorflow")
    predictor.predict(paths[:1])
    start = time.perf_counter()
    predictor.predict(paths)
    predict_s = time.perf_counter() - start
    start = time.perf_counter()
    predictor.explain(paths[:1])
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    explained = predictor.explain(paths)
    explain_s = time.perf_counter() - start
    out = tempfile.mkdtemp()
    start = time.perf_counter()
    for (heatmap, result), name in zip(explained, overlay_names(paths)):
        save_overlay(load_image(result.path, OVERLAY_SIDE), heatmap, result.predictions,
                     os.path.join(out, name))
    overlay_s = time.perf_counter() - start
    n = len(paths)
    return {"pictures": n, "predict_ms_per_picture": round(1000 * predict_s / n, 1),
            "explain_first_call_s": round(first_s, 2),
            "explain_ms_per_picture": round(1000 * explain_s / n, 1),
            "overlay_ms_per_picture": round(1000 * overlay_s / n, 1),
            "heatmap": list(explained[0][0].shape)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits", type=int, default=200)
    parser.add_argument("--photos", type=int, default=10)
    args = parser.parse_args()
    from make_photos import CLASSES, write_photos

    root = tempfile.mkdtemp()
    digits = digit_files(os.path.join(root, "digits"), args.digits)
    small = export(os.path.join(root, "small_cnn"), "small_cnn", 32, [str(d) for d in range(10)])
    photos_dir = write_photos(count=args.photos)
    photos = sorted(os.path.join(dirpath, name) for dirpath, _, names in os.walk(photos_dir)
                    for name in names if name.endswith(".jpg"))[:args.photos]
    mobile = export(os.path.join(root, "mobilenet_v2"), "mobilenet_v2", 224, list(CLASSES))
    print(json.dumps({"digits, small_cnn 32 px": measure(small, digits),
                      "phone photos 4000x3000, mobilenet_v2 224 px": measure(mobile, photos)},
                     indent=2))


if __name__ == "__main__":
    main()
