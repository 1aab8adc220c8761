"""Benchmark: a 10-trial random head search, `kapps tune` vs the keras-tuner tutorial way.

    python bench/bench_search.py [--trials 10] [--epochs 3] [--image_size 96] [--before DIR]

The same search space (dropout, learning rate on a log scale, Adam or SGD), trial
count and epochs on the scikit-learn digits folder, over the same frozen MobileNetV2
(one weights file for both; ImageNet files cannot be downloaded here and timing does
not depend on the weight values). Both are whole commands, side by side in one run.
`kapps tune` trains every head on bottleneck features cached once; the tutorial
way runs the frozen base over every picture in every epoch of every trial.
`--before DIR` adds `kapps tune` run from the kapps code checked out at DIR.
"""
import argparse
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from measure import code_env, python, run, stamp  # noqa: E402

OUT = os.path.join(HERE, "out", "bench_search")
SPACE = {"dropout": {"min": 0.0, "max": 0.5, "step": 0.1},
         "learning_rate": {"min": 1e-4, "max": 1e-1, "sampling": "log"},
         "optimizer": ["adam", "sgd"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image_size", type=int, default=96)
    parser.add_argument("--before", default=None,
                        help="a checkout of earlier kapps code to run beside this one")
    args = parser.parse_args()

    import kapps
    from retrain.demo import write_digits_folder

    digits = write_digits_folder(os.path.join(HERE, "out", "digits"))
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    weights = os.path.join(OUT, f"mobilenet_v2_{args.image_size}_notop.weights.h5")
    kapps.create_model("mobilenet_v2", include_top=False, weights=None,
                       input_shape=(args.image_size, args.image_size, 3)).save_weights(weights)
    space = os.path.join(OUT, "space.json")
    with open(space, "w") as f:
        json.dump(SPACE, f)

    def ours(name):
        return python("-m", "tuning", "--image_dir", digits, "--tuner", "random",
                      "--max_trials", args.trials, "--epochs", args.epochs, "--space", space,
                      "--architecture", "mobilenet_v2", "--weights", weights,
                      "--image_size", args.image_size, "--directory", os.path.join(OUT, name),
                      "--bottleneck_dir", os.path.join(OUT, f"bottlenecks_{name}"), "--seed", 1)
    tutorial = python(os.path.join(HERE, "tutorial_tuning.py"), digits, weights,
                      os.path.join(OUT, "tutorial"), "--image_size", args.image_size,
                      "--trials", args.trials, "--epochs", args.epochs)
    rows = [("keras-tuner tutorial: frozen base inside build(hp), image_dataset_from_directory",
             run(tutorial)),
            ("kapps tune (bottlenecks computed in the run)", run(ours("kapps")))]
    if args.before:
        rows.append(("kapps tune, `--before` code (bottlenecks computed in the run)",
                     run(ours("kapps_before"), **code_env(args.before))))
    base = rows[0][1]
    print(f"\n{stamp()}: {args.trials}-trial random search, {args.epochs} epochs per trial, "
          f"digits folder (1,797 pictures), MobileNetV2 at {args.image_size} px, "
          f"{os.cpu_count()} CPU cores\n")
    print("| command | wall time | vs tutorial | peak memory |")
    print("|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['seconds']:.1f} s | {base['seconds'] / r['seconds']:.1f}x faster "
              f"| {r['peak_mb']:.0f} MB |")


if __name__ == "__main__":
    main()
