"""Benchmark: how far to let the JPEG decoder scale a phone photo down, for a model's input.

    python bench/bench_decode.py [--model MODEL_FOLDER] [--photos 12]

For each rule, on the first `--photos` pictures of `bench/make_photos.py`'s folder
(4000x3000 JPEGs) at the model's input side (224 without `--model`): the milliseconds
to decode and resize one picture (Pillow, one thread, median), how far the model's
input (bilinear resize to the side, as the model's `Resizing` layer does) is from an
area-averaged reference of the full picture (mean absolute difference in 0-255
levels), and how far a model's outputs move from its outputs on the full decode: the
largest absolute difference, and the mean one divided by the outputs' spread between
photos (the standard deviation across photos, averaged over outputs), so the change a
decode makes is seen beside the change a different photo makes. The model is `--model`
(an exported folder: softmax scores, and how often the top-1 answer changes) or else
the pooled features of a randomly initialised SmallCNN (seed 0): without ImageNet
files, MobileNetV2's random features are ~1e-12 and would not move at all. Rules:
  - full: decode every pixel (what kapps did before);
  - 2x: the largest reduction that leaves both sides at least twice the input side;
  - 1x: the largest reduction that leaves both sides at least the input side (kapps' rule).
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

RULES = (("full", None), ("2x", 2), ("1x", 1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="an exported model folder")
    parser.add_argument("--photos", type=int, default=12)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()

    import tensorflow as tf
    from PIL import Image

    from make_photos import write_photos
    from retrain.data import images

    paths = images.list_image_files(write_photos())[:args.photos]
    size = args.size
    if args.model:
        from retrain.prediction.predictor import Predictor

        predictor = Predictor(args.model, runtime="tensorflow")
        size = predictor._backend.min_side
        model_name = f"model `{args.model}`"

        def scores_of(inputs):
            return np.stack(predictor.scores(list(inputs)))
    else:
        import keras

        import kapps

        keras.utils.set_random_seed(0)
        model = kapps.create_model("small_cnn", include_top=False, weights=None,
                                   input_shape=(size, size, 3), pooling="avg")
        model_name = "features of a random SmallCNN"

        def scores_of(inputs):
            return model.predict(inputs / 127.5 - 1, verbose=0)

    def model_input(path, factor):
        pixels = images.load_image(path, min_side=factor and factor * size)
        return tf.image.resize(pixels.astype(np.float32), [size, size]).numpy()

    references = []
    for path in paths:
        with Image.open(path) as img:
            references.append(np.asarray(img.convert("RGB").resize((size, size), Image.BOX),
                                         np.float32))
    results = {}
    for name, factor in RULES:
        times, inputs = [], []
        for path in paths:
            start = time.perf_counter()
            inputs.append(model_input(path, factor))
            times.append(time.perf_counter() - start)
        results[name] = {"ms": 1000 * statistics.median(times),
                         "shape": images.load_image(paths[0], factor and factor * size).shape,
                         "vs_area": float(np.mean([np.abs(a - r).mean()
                                                   for a, r in zip(inputs, references)])),
                         "inputs": np.stack(inputs)}
    full = scores_of(results["full"]["inputs"])
    for rule, _ in RULES:
        scores = scores_of(results[rule]["inputs"])
        results[rule]["max_diff"] = float(np.abs(scores - full).max())
        results[rule]["relative"] = float(np.abs(scores - full).mean() / full.std(0).mean())
        results[rule]["top1_changed"] = int((scores.argmax(1) != full.argmax(1)).sum()) \
            if args.model else "-"
    print(f"{len(paths)} photos of 4000x3000, model input {size} px, {model_name}\n")
    print("| rule | decoded size | decode + resize (ms) | input vs area average (levels) "
          "| output diff vs full: max | mean / spread between photos | top-1 changed |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, _ in RULES:
        r = results[name]
        height, width = r["shape"][:2]
        print(f"| {name} | {width}x{height} | {r['ms']:.0f} | {r['vs_area']:.2f} | "
              f"{r['max_diff']:.2g} | {r['relative']:.3f} | {r['top1_changed']} |")


if __name__ == "__main__":
    main()
