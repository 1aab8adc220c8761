"""Benchmark: real pictures, real accuracy. The digits, from scratch and by transfer.

    python bench/bench_digits.py [--parts scratch transfer rotations] [--seeds 0 1 2]
    python bench/bench_digits.py --parts transfer --backbone small_cnn32 --tag cnn32_
    python bench/bench_digits.py --parts scratch transfer --backbone googlenet32 \
        --scratch_backbone googlenet32 --seeds 0 --tag googlenet_
    python bench/bench_digits.py --parts rotations --every_seed --standard \
        --scratch_flags "--architecture lenet5 --weights none ..." --label LeNet-5 --tag lenet_

Pictures: scikit-learn's 1,797 scanned 8x8 digits, written as PNGs by
`retrain.demo.write_digits_folder`. Every training run is a whole `python -m retrain`
command in a subprocess (Python start, TensorFlow import, export included), so its
wall time is what a user waits; its peak memory is the child's `ru_maxrss` (`os.wait4`).

- scratch: `--weights none --fine_tune all` on all ten digits with the demo's recipe
  (SmallCNN at 16 px; `--scratch_flags` for another), one run per seed, scored
  on the pipeline's hash test split; scikit-learn's `SVC(gamma=0.001)` is trained on the
  same train split (and on train+validation) and scored on the same test pictures.
- rotations: the test split of 10% is small, so the same comparison is repeated on other
  hash splits, made by renaming every file (`digit_00012_r1.png`): the hash split is a
  function of the file name, so each renaming draws a new test set. `--every_seed` runs
  every seed on every split, `--standard` adds the original split, `--tag` keeps the
  outputs of several recipes apart.
- transfer (Keras' `mnist_transfer_cnn` pattern): a backbone trained on digits 0-4 is
  exported; `--weights <its model.keras> --fine_tune none` trains a head on cached
  bottlenecks of digits 5-9, against the same network trained from scratch on 5-9, and
  against `--fine_tune top:N`. `--backbone lenet5` (default) or `small_cnn32` (SmallCNN
  at 32 px, its base cut at `--base_layer block2_pool`) or `small_cnn48`, or one of the
  model tour: `alexnet64`, `googlenet32`, `densenet121_32`, `mobilenet_v3_small32`,
  `mobilenet_v3_large32` (the demo's recipe at that size; AlexNet needs 63 px at least).
  `--scratch_backbone NAME` runs the scratch and rotations parts with that recipe. The
  folders of 0-4 and 5-9 keep the file names, so a picture has the same split in every
  folder.

Outputs (logs, exports, `results.json`, `tables.md`) go under `--out` (git-ignored).
Run by hand; not a test. Timings depend on what else the machine runs.
"""
import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# From scratch on all ten digits (scratch and rotations parts): the demo's settings.
DIGITS_FLAGS = ["--architecture", "small_cnn", "--weights", "none", "--fine_tune", "all",
                "--image_size", "16", "--epochs", "20", "--train_batch_size", "64",
                "--learning_rate", "3e-3", "--dropout", "0.1", "--label_smoothing", "0.05",
                "--random_crop", "5", "--random_scale", "5"]
# The transfer part's backbone (0-4) and its from-scratch reference (5-9): LeNet-5, the
# demo's recipe before SmallCNN, so that top:1 unfreezes one convolution (conv2).
SCRATCH_FLAGS = ["--architecture", "lenet5", "--weights", "none", "--fine_tune", "all",
                 "--image_size", "32", "--epochs", "30", "--learning_rate", "3e-3",
                 "--dropout", "0.1", "--label_smoothing", "0.05", "--random_crop", "10",
                 "--random_scale", "10"]


def at_size(flags, size):
    """`flags` with another --image_size."""
    return with_flag(flags, "--image_size", size)


def with_flag(flags, flag, value):
    """`flags` with another value of `flag` (one that `flags` already has)."""
    i = flags.index(flag)
    return flags[:i + 1] + [str(value)] + flags[i + 2:]


def tour(architecture, size, learning_rate=None):
    """The demo's recipe from scratch with another architecture at `size` px."""
    flags = at_size(with_flag(DIGITS_FLAGS, "--architecture", architecture), size)
    return with_flag(flags, "--learning_rate", learning_rate) if learning_rate else flags


# Or SmallCNN (the demo's recipe) at 32 px, its own input size, or 48 px: 33 and 74 times
# LeNet-5's multiply-adds per picture. Training from scratch then costs what a real
# backbone does, while transfer pays one pass of the base for the bottlenecks.
# backbone -> (flags from scratch, name in tables, --base_layer, N of top:N). SmallCNN's
# pooled last block is made for 0-4 (80% on 5-9); its second block, flattened like
# LeNet-5's conv2 and the convolutions of Keras' mnist_transfer_cnn, transfers. top:2 is
# block2_conv2 and its BatchNorm, which stays frozen, so one convolution again.
BACKBONES = {
    "lenet5": (SCRATCH_FLAGS, "LeNet-5", None, 1),
    "small_cnn32": (at_size(DIGITS_FLAGS, 32), "SmallCNN at 32 px", "block2_pool", 2),
    "small_cnn48": (at_size(DIGITS_FLAGS, 48), "SmallCNN at 48 px", "block2_pool", 2),
    # The model tour, each at the smallest size that suits it: 32 px (five halvings to a
    # 1x1 map), AlexNet at 64 px (63 is its least). The base is the pooled last block;
    # top:2 is the last two layers with weights (AlexNet: conv4 and conv5; the others: a
    # convolution and its BatchNorm, kept frozen). AlexNet has no batch norm, so it
    # trains from scratch at 1e-3 rather than the demo's 3e-3.
    "alexnet64": (tour("alexnet", 64, 1e-3), "AlexNet at 64 px", None, 2),
    "googlenet32": (tour("googlenet", 32), "GoogLeNet at 32 px", None, 2),
    "densenet121_32": (tour("densenet121", 32), "DenseNet-121 at 32 px", None, 2),
    "mobilenet_v3_small32": (tour("mobilenet_v3_small", 32), "MobileNetV3 Small at 32 px",
                             None, 2),
    "mobilenet_v3_large32": (tour("mobilenet_v3_large", 32), "MobileNetV3 Large at 32 px",
                             None, 2),
}
# A head on cached bottlenecks converges in a few epochs; big batches cut Keras' per-step cost.
HEAD_FLAGS = ["--fine_tune", "none", "--epochs", "10", "--train_batch_size", "64",
              "--hidden_units", "128", "--dropout", "0.3", "--learning_rate", "3e-3",
              "--label_smoothing", "0.05"]
TOP_FLAGS = ["--epochs", "10", "--hidden_units", "128", "--dropout", "0.3",
             "--learning_rate", "1e-3", "--label_smoothing", "0.05", "--random_crop", "10",
             "--random_scale", "10"]


def write_folders(out, rotations):
    """The digits folder, its 0-4 and 5-9 halves, and renamed copies for other splits."""
    from retrain.demo import write_digits_folder

    full = write_digits_folder(os.path.join(out, "digits"))
    folders = {"digits": full}
    for name, classes in (("digits_0to4", "01234"), ("digits_5to9", "56789")):
        dest = os.path.join(out, name)
        for c in classes:
            if not os.path.isdir(os.path.join(dest, c)):
                shutil.copytree(os.path.join(full, c), os.path.join(dest, c))
        folders[name] = dest
    for k in range(1, rotations + 1):
        dest = os.path.join(out, f"digits_r{k}")
        for c in sorted(os.listdir(full)):
            os.makedirs(os.path.join(dest, c), exist_ok=True)
            for name in sorted(os.listdir(os.path.join(full, c))):
                target = os.path.join(dest, c, name.replace(".png", f"_r{k}.png"))
                if not os.path.exists(target):
                    shutil.copyfile(os.path.join(full, c, name), target)
        folders[f"digits_r{k}"] = dest
    return folders


def run_command(command, log_path, env):
    """Run `command` with its output in `log_path`; (wall s, CPU s, peak RSS in MiB, Unix
    time of the launch, to compare with the times in the run's metrics.json)."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "w") as log:
        launched = time.time()
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                 cwd=ROOT)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        with open(log_path) as log:
            tail = log.read()[-3000:]
        sys.exit(f"{shlex.join(command)} failed ({child.returncode}); log {log_path}:\n{tail}")
    rss_mib = usage.ru_maxrss / 1024.0  # Linux reports KiB
    return wall, usage.ru_utime + usage.ru_stime, rss_mib, launched


def retrain_run(name, folder, flags, seed, out, env):
    """One `python -m retrain` run, exported to `out/runs/<name>` with its own (cold)
    bottleneck cache; returns its scores, timings and the command as typed."""
    run_dir = os.path.join(out, "runs", name)
    if os.path.isdir(run_dir):
        shutil.rmtree(run_dir)
    command = [sys.executable, "-m", "retrain", "--image_dir", _rel(folder),
               "--output_dir", _rel(run_dir),
               "--bottleneck_dir", _rel(os.path.join(run_dir, "bottlenecks")),
               "--seed", str(seed), "--verbose", "2"] + list(flags)
    wall, cpu, rss, launched = run_command(command, os.path.join(out, "logs", name + ".log"),
                                           env)
    with open(os.path.join(run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    n_test = metrics["split_sizes"]["test"]
    accuracy = metrics["test_accuracy"]
    val = metrics["history"].get("val_accuracy")
    # The first epoch that reached the best validation accuracy: where training "got to
    # its best accuracy" (the kept epoch can be later, on a tie broken by lower loss).
    first_best = val.index(max(val)) if val else len(metrics["epoch_ended_at"]) - 1
    reached = metrics["epoch_ended_at"][first_best]
    return {
        "name": name, "seed": seed, "accuracy": accuracy,
        "errors": int(round((1 - accuracy) * n_test)), "n_test": n_test,
        "best_epoch": metrics["best_epoch"], "first_best_epoch": first_best,
        "epochs_run": metrics["epochs_run"], "wall_s": wall, "cpu_s": cpu,
        "peak_rss_mib": rss, "train_s": metrics["train_seconds"],
        # Measured, not estimated: from launching the command (Python start included), and
        # from the start of `retrain()` (data, bottlenecks, fit; no start-up).
        "to_best_s": reached - launched,
        "train_to_best_s": reached - metrics["started_at"],
        "run_dir": run_dir,
        "command": "python -m retrain " + shlex.join(command[3:]),
    }


def svc_errors(folder, fit_splits):
    """Test errors of `SVC(gamma=0.001)` on the 8x8 pixels (0..16, as `load_digits`),
    trained on `fit_splits` of the pipeline's own split of `folder`."""
    import numpy as np
    from PIL import Image
    from sklearn.svm import SVC

    from retrain.data.dataset import scan_image_folder

    dataset = scan_image_folder(folder, 10, 10)

    def xy(splits):
        records = [r for s in splits for r in dataset.split(s)]
        x = np.stack([np.asarray(Image.open(r.path).convert("L"), np.float64).ravel()
                      for r in records]) * (16.0 / 255.0)
        return x, np.array([r.class_index for r in records])

    x_fit, y_fit = xy(fit_splits)
    x_test, y_test = xy(["test"])
    predicted = SVC(gamma=0.001).fit(x_fit, y_fit).predict(x_test)
    return int(np.sum(predicted != y_test)), len(y_test)


def _rel(path):
    return os.path.relpath(path, ROOT)


def summary(runs, key="accuracy"):
    """'mean ± sd (min..max)' over seeds, in percent for accuracies."""
    values = [r[key] * (100 if key == "accuracy" else 1) for r in runs]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    unit = "%" if key == "accuracy" else ""
    return (f"{statistics.mean(values):.2f}{unit} ± {spread:.2f} "
            f"({min(values):.2f}..{max(values):.2f})")


def mean(runs, key):
    return statistics.mean(r[key] for r in runs)


def row(label, runs):
    errors = "/".join(str(r["errors"]) for r in runs)
    return (f"| {label} | {summary(runs)} | {errors} of {runs[0]['n_test']} | "
            f"{mean(runs, 'wall_s'):.0f} s ({min(r['wall_s'] for r in runs):.0f}.."
            f"{max(r['wall_s'] for r in runs):.0f}) | {mean(runs, 'train_s'):.0f} s | "
            f"{mean(runs, 'cpu_s'):.0f} s | {max(r['peak_rss_mib'] for r in runs):.0f} MiB |")


TABLE_HEAD = ("| run | test accuracy, mean ± sd (min..max) | test errors per seed | "
              "wall time, mean (min..max) | of it in `retrain()` | CPU time | peak RSS |\n"
              "|---|---|---|---|---|---|---|")


def part_scratch(folders, seeds, out, env, lines, results, flags=None, label="SmallCNN",
                 tag=""):
    flags = DIGITS_FLAGS if flags is None else flags
    runs = {"train": [], "train+val": []}
    for seed in seeds:
        runs["train"].append(retrain_run(f"{tag}scratch_s{seed}", folders["digits"], flags,
                                         seed, out, env))
        runs["train+val"].append(retrain_run(
            f"{tag}scratch_trainval_s{seed}", folders["digits"],
            flags + ["--train_on_validation"], seed, out, env))
    svc = {fit: svc_errors(folders["digits"], fit.split("+"))
           for fit in ("train", "train+validation")}
    lines += ["### From scratch, all ten digits", "", TABLE_HEAD,
              row(f"{label}, train split (keep-best on validation)", runs["train"]),
              row(f"{label}, train+validation (`--train_on_validation`)", runs["train+val"])]
    for fit, (errors, n) in svc.items():
        lines.append(f"| `SVC(gamma=0.001)`, fit on {fit} | {100 * (1 - errors / n):.2f}% | "
                     f"{errors} of {n} | - | - | - | - |")
    lines += ["", "Commands (seed 0):", "", "```"]
    lines += [runs[k][0]["command"] for k in runs] + ["```", ""]
    results["scratch"] = {"runs": runs, "svc": svc}


def part_rotations(folders, seeds, out, env, lines, results, flags=None, every_seed=False,
                   standard=False, label="SmallCNN", tag=""):
    """Each renamed folder is one more split (with `standard`, the original one too). By
    default seed i goes with rotation i; with `every_seed`, every split runs every seed."""
    flags = DIGITS_FLAGS if flags is None else flags
    splits = ([0] if standard else []) + list(
        range(1, len([f for f in folders if f.startswith("digits_r")]) + 1))
    rows = []
    for k in splits:
        folder = folders["digits"] if k == 0 else folders[f"digits_r{k}"]
        split_seeds = seeds if every_seed else [seeds[(k - 1) % len(seeds)]]
        runs = [retrain_run(f"{tag}rotation{k}_s{seed}", folder, flags, seed, out, env)
                for seed in split_seeds]
        fits = ["train", "validation"] if "--train_on_validation" in flags else ["train"]
        errors, n = svc_errors(folder, fits)
        rows.append({"rotation": k, "cnn": runs, "svc_errors": errors, "n_test": n})
        print(f"split {k}: errors per seed {[r['errors'] for r in runs]}, SVC {errors} "
              f"of {n}; wall {[round(r['wall_s']) for r in runs]} s", flush=True)
    if not rows:
        return
    fit = "train+validation" if "--train_on_validation" in flags else "train"
    seed_list = ", ".join(str(r["seed"]) for r in rows[-1]["cnn"])
    lines += ["### From scratch on other hash splits (files renamed)", "",
              f"| split | test pictures | {label} errors (seeds {seed_list}) | "
              f"mean | SVC errors (fit on {fit}) |", "|---|---|---|---|---|"]
    for r in rows:
        name = "standard" if r["rotation"] == 0 else f"`_r{r['rotation']}`"
        per_seed = "/".join(str(c["errors"]) for c in r["cnn"])
        lines.append(f"| {name} | {r['n_test']} | {per_seed} | "
                     f"{mean(r['cnn'], 'errors'):.2f} | {r['svc_errors']} |")
    for subset, title in (([r for r in rows if r["rotation"] > 0], "`_r1`..`_r3`"),
                          (rows, "all")):
        if not subset or (title == "all" and not standard):
            continue
        total_n = sum(r["n_test"] for r in subset)
        cnn = sum(mean(r["cnn"], "errors") for r in subset)
        svc = sum(r["svc_errors"] for r in subset)
        lines.append(f"| {title} | {total_n} | - | {cnn:.2f} ({100 * (1 - cnn / total_n):.2f}%) "
                     f"| {svc} ({100 * (1 - svc / total_n):.2f}%) |")
    walls = [c["wall_s"] for r in rows for c in r["cnn"]]
    lines += ["", f"Wall time per run: mean {statistics.mean(walls):.0f} s "
              f"({min(walls):.0f}..{max(walls):.0f}).", "", "Command (first run):", "", "```",
              rows[0]["cnn"][0]["command"], "```", ""]
    results["rotations"] = rows


def part_transfer(folders, seeds, out, env, lines, results, backbone_name, top_n=None,
                  tag=""):
    flags, label, base_layer, default_top = BACKBONES[backbone_name]
    top_n = top_n or default_top
    cut = ["--base_layer", base_layer] if base_layer else []
    runs = {"backbone": [], "scratch": [], "head": [], "top": []}
    for seed in seeds:
        backbone = retrain_run(f"{tag}backbone0to4_s{seed}", folders["digits_0to4"], flags,
                               seed, out, env)
        runs["backbone"].append(backbone)
        model = _rel(os.path.join(backbone["run_dir"], "model.keras"))
        runs["scratch"].append(retrain_run(f"{tag}scratch5to9_s{seed}", folders["digits_5to9"],
                                           flags, seed, out, env))
        runs["head"].append(retrain_run(f"{tag}transfer5to9_s{seed}", folders["digits_5to9"],
                                        ["--weights", model] + cut + HEAD_FLAGS, seed, out,
                                        env))
        runs["top"].append(retrain_run(
            f"{tag}transfer5to9_top{top_n}_s{seed}", folders["digits_5to9"],
            ["--weights", model] + cut + ["--fine_tune", f"top:{top_n}"] + TOP_FLAGS, seed,
            out, env))
    scratch_best = mean(runs["scratch"], "to_best_s")
    scratch_fit = mean(runs["scratch"], "train_to_best_s")
    lines += [f"### Transfer: {label} trained on 0-4, new head on 5-9", "", TABLE_HEAD,
              row(f"backbone: {label} from scratch on 0-4", runs["backbone"]),
              row("from scratch on 5-9 (same network and recipe)", runs["scratch"]),
              row("transfer, `--fine_tune none` (head on cached bottlenecks)", runs["head"]),
              row(f"transfer, `--fine_tune top:{top_n}`", runs["top"]), "",
              f"From scratch on 5-9 first reached its best validation accuracy (epochs "
              f"{'/'.join(str(r['first_best_epoch'] + 1) for r in runs['scratch'])} of "
              f"{runs['scratch'][0]['epochs_run']}) {scratch_best:.1f} s after the command "
              f"started, {scratch_fit:.1f} s after `retrain()` started (measured at the epoch's "
              f"end). Transfer with a frozen backbone took "
              f"{_ratio(runs['head'], scratch_best, scratch_fit)}; `top:{top_n}` took "
              f"{_ratio(runs['top'], scratch_best, scratch_fit)}.", "",
              "Commands (seed 0):", "", "```"]
    lines += [runs[k][0]["command"] for k in runs] + ["```", ""]
    results["transfer"] = runs


def _ratio(runs, wall, fit):
    w, t = mean(runs, "wall_s"), mean(runs, "train_s")
    return (f"{w:.1f} s wall (**{w / wall:.3f}** of it) and {t:.1f} s in `retrain()` "
            f"({t / fit:.3f})")


def copy_plots(results, dest, tag=""):
    """history.png and confusion_matrix.png of the seed-0 runs, renamed for the docs."""
    picks = {f"digits_{tag}scratch": results.get("scratch", {}).get("runs", {}).get("train"),
             f"digits_{tag}transfer": results.get("transfer", {}).get("head")}
    os.makedirs(dest, exist_ok=True)
    for prefix, runs in picks.items():
        if not runs:
            continue
        for plot in ("history.png", "confusion_matrix.png"):
            shutil.copyfile(os.path.join(runs[0]["run_dir"], plot),
                            os.path.join(dest, f"{prefix}_{plot}"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["scratch", "rotations", "transfer"],
                        choices=["scratch", "rotations", "transfer"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--rotations", type=int, default=3,
                        help="renamed folders (other hash splits) for the rotations part")
    parser.add_argument("--backbone", choices=sorted(BACKBONES), default="lenet5",
                        help="network of the transfer part: trained on 0-4 for its base, and "
                             "from scratch on 5-9 for reference")
    parser.add_argument("--top_n", type=int, default=None,
                        help="N of the --fine_tune top:N transfer run (layers with weights; "
                             "default 1 for LeNet-5, its conv2; 2 for SmallCNN, block2_conv2 "
                             "and its frozen BatchNorm)")
    parser.add_argument("--scratch_flags", metavar="FLAGS",
                        help="retrain flags of the scratch and rotations runs, one quoted "
                             "string (default: the demo's recipe, SmallCNN at 16 px)")
    parser.add_argument("--scratch_backbone", choices=sorted(BACKBONES),
                        help="scratch and rotations parts: use this backbone's recipe from "
                             "scratch (and its name in tables) instead of the demo's")
    parser.add_argument("--label", default="SmallCNN", help="name of the network in tables")
    parser.add_argument("--every_seed", action="store_true",
                        help="rotations: run every seed on every split (default: seed i "
                             "with rotation i)")
    parser.add_argument("--standard", action="store_true",
                        help="rotations: also score the original (unrenamed) split")
    parser.add_argument("--tag", default="",
                        help="prefix of the run folders and of results.json and tables.md, "
                             "to keep several recipes' outputs side by side")
    parser.add_argument("--out", default=os.path.join(HERE, "out", "digits_bench"))
    parser.add_argument("--copy_plots", metavar="FOLDER",
                        help="copy the seed-0 runs' plots here (e.g. docs/img)")
    args = parser.parse_args(argv)

    sys.path.insert(0, ROOT)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    out = os.path.abspath(args.out)
    folders = write_folders(out, args.rotations if "rotations" in args.parts else 0)
    lines = [f"Machine: {platform.platform()}, {os.cpu_count()} CPU cores, "
             f"Python {platform.python_version()}; seeds {args.seeds}.", ""]
    results = {"seeds": args.seeds}
    started = time.perf_counter()
    flags = shlex.split(args.scratch_flags) if args.scratch_flags else None
    if args.scratch_backbone:
        flags, args.label = BACKBONES[args.scratch_backbone][:2]
    if "scratch" in args.parts:
        part_scratch(folders, args.seeds, out, env, lines, results, flags, args.label, args.tag)
    if "rotations" in args.parts:
        part_rotations(folders, args.seeds, out, env, lines, results, flags, args.every_seed,
                       args.standard, args.label, args.tag)
    if "transfer" in args.parts:
        part_transfer(folders, args.seeds, out, env, lines, results, args.backbone,
                      args.top_n, args.tag)
    lines.append(f"Benchmark wall time: {time.perf_counter() - started:.0f} s.")
    with open(os.path.join(out, args.tag + "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(out, args.tag + "tables.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    if args.copy_plots:
        copy_plots(results, args.copy_plots, args.tag)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
