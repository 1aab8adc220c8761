"""`retrain(...)`: the whole job, from a folder of pictures to an evaluated export.

scan and split -> base and cached bottlenecks -> train -> evaluate on the test
split -> export model, labels, metrics, plots and the dataset report. The seconds of
each step go into `metrics.json` as `timings` (scan, base, bottlenecks, model, fit,
evaluate, export; start-up is what the command took before `started_at`).
"""
import dataclasses
import os
import time
from dataclasses import dataclass

from kapps.errors import UserError
from kapps.process import start_devices
from retrain.common import atomic
from retrain.data import decode_ahead
from retrain.train import multi_worker
from retrain.config import RetrainConfig, resolve, weights_note
from retrain.demo import apply_demo
from retrain.report.evaluate import evaluate, misclassified
from retrain.common import files
from retrain.prediction import kept_base
from retrain.export.folder import export_all
from retrain.train.fit import predict_split, seed_everything, strategy_scope, train
from retrain.train.model import build_model, classifier
from retrain.train.prepare import prepare_data


class AccuracyBelowThreshold(UserError):
    """The test accuracy is below `assert_accuracy_at_least` (the model was exported)."""


@dataclass
class RetrainResult:
    output_dir: str    # None on a multi-worker run's other workers: the chief exports
    metrics: dict
    model: object      # the exported classifier (raw pixels in)
    history: dict
    prepared: object


def retrain(config=None, **kwargs):
    """Train a classifier on `config.image_dir` and export it; returns a `RetrainResult`.

    With a cluster in TF_CONFIG (`--distribute`, `retrain.train.cluster`), every worker calls
    this: they share the feature pass and train in sync, and only the chief exports.

    Pass a `RetrainConfig`, or its fields as keyword arguments:
    `retrain(image_dir="pets", architecture="mobilenet_v2", epochs=5)`.
    Epochs are numbered from 1 in `metrics.json` (`best_epoch`), as on the console and
    in `history.png`. With `assert_accuracy_at_least`, raises `AccuracyBelowThreshold`
    after exporting when the test accuracy is below it.
    """
    config = dataclasses.replace(config or RetrainConfig(), **kwargs)
    if config.demo:
        config = apply_demo(config)
    requested, config = config, resolve(config)
    note = weights_note(requested, config)
    if note and config.verbose:
        print(note)
    cluster = multi_worker.start(config)  # before TensorFlow's first op, if there is a cluster
    with multi_worker.stop_cleanly():  # a worker that dies: one line naming it
        return _retrain(config, cluster)


def _retrain(config, cluster):
    start_devices()
    started = time.time()
    seed_everything(config)  # before the base and head are built: their initial weights too
    # With --distribute, variables must live in the strategy (a frozen base's feature pass
    # across workers runs outside it: each worker does its share).
    with strategy_scope(config, feature_pass=config.fine_tune_layers() is None):
        prepared = prepare_data(config)
        decode_ahead.stop()  # the features are made: pictures decoded ahead are freed
        # The size the base really resizes to (a transferred export brings its own), so
        # metrics.json's config says what prediction must use.
        config = dataclasses.replace(config, image_size=prepared.base.image_size)
        timings = prepared.timings
        with timings.step("model"), strategy_scope(config):
            model = build_model(prepared, config)
    with timings.step("fit"):
        history = train(model, prepared, config)
    trained_s = time.time() - started
    if cluster is not None and not cluster.is_chief:  # only the chief writes the model folder
        if config.verbose:
            print(f"{cluster.describe()} trained in sync; {cluster.describe(0)} exports to "
                  f"{config.output_dir} (on its machine).")
        return RetrainResult(None, {}, classifier(prepared, model), history.history, prepared)
    with timings.step("evaluate"):
        scores = predict_split(model, prepared, "test")
        prepared.leave_out_broken()  # pictures that broke while training: not in split.json
        labels = prepared.labels["test"]
        metrics = evaluate(scores, labels, prepared.classes)
    counts = {s: len(prepared.records(s)) for s in ("train", "validation", "test")}
    metrics.update({
        "split_sizes": counts, "classes": prepared.classes,
        "bottlenecks_computed": prepared.computed,
        "best_epoch": None if history.best_epoch is None else history.best_epoch + 1,
        "epochs_run": len(history.history.get("loss", [])), "interrupted": history.interrupted,
        # Epochs a --backup_dir resume took from the backup (best_epoch counts after them).
        "resumed_after_epoch": getattr(history, "resumed_after", 0),
        "head_fit": history.head_fit,
        "train_seconds": round(trained_s, 2), "started_at": round(started, 3),
        "epoch_ended_at": [round(t, 3) for t in history.epoch_ended_at],
        "config": config.to_dict(),
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
        "timings": timings,
    })
    with timings.step("export"):
        full = classifier(prepared, model)
        export_all(config, prepared, full, history, metrics)
        if prepared.head_only:  # prediction then answers without TensorFlow
            kept_base.keep(os.path.join(config.output_dir, files.MODEL_FILE),
                           prepared.cache_folder, model)
    # metrics.json was written inside the export; written again with the export's time.
    atomic.write_json(os.path.join(config.output_dir, files.METRICS_FILE), metrics)
    if config.verbose:
        wrong = misclassified(prepared, scores, labels) if len(labels) else []
        if config.print_misclassified_test_images:
            print("=== MISCLASSIFIED TEST IMAGES ===")
            for path, true, predicted in wrong:
                print(f"{path:>60}  {true} (predicted {predicted})")
        print("\n".join(summary_lines(config, metrics, len(labels) - len(wrong), len(labels))))
    check_accuracy(config, metrics)
    return RetrainResult(config.output_dir, metrics, full, history.history, prepared)


def summary_lines(config, metrics, right, n_test):
    """The end of a run, for a person: the epoch kept, the test score, where each file went."""
    runs, best = metrics["epochs_run"], metrics["best_epoch"]
    if metrics["head_fit"]["method"] == "lbfgs":
        val = metrics["history"].get("val_accuracy")
        kept = (f"Kept the L-BFGS head (C={metrics['head_fit']['C']:g})"
                + (f", validation accuracy {100 * val[0]:.2f}%." if val else "."))
    elif best is None:
        kept = f"Kept the last epoch ({runs}): no validation pictures to choose by."
    else:
        val = metrics["history"]["val_accuracy"][best - 1]
        kept = (f"Kept epoch {best} of {runs}, the best on validation "
                f"(accuracy {100 * val:.2f}%).")
        patience = config.early_stopping
        if (patience and not metrics["interrupted"] and runs - best >= patience
                and not config.how_many_training_steps and runs < config.epochs):
            kept = (f"Stopped early at epoch {runs} of {config.epochs}: no better validation "
                    f"accuracy for {patience} epochs (--early_stopping {patience}); "
                    f"restored epoch {best}, the best (accuracy {100 * val:.2f}%).")
    acc = metrics["test_accuracy"]
    if acc is None:
        tested = ("No test accuracy: the test split is empty (raise --testing_percentage, "
                  f"now {config.testing_percentage:g}%, or add pictures).")
    else:
        tested = f"Test accuracy {100 * acc:.2f}% ({right} of {n_test} pictures right)"
        top3 = metrics.get("test_top3_accuracy")
        tested += f", top-3 {100 * top3:.2f}%." if top3 is not None else "."
    out = config.output_dir
    figures_made = [name for name in (files.HISTORY_PLOT, files.CONFUSION_PLOT)
                    if os.path.isfile(os.path.join(out, name))]
    lines = [kept, tested,
             f"Exported to {out}/: {files.MODEL_FILE} (the classifier), {files.LABELS_FILE}, "
             f"{files.METRICS_FILE}, {files.DATASET_REPORT_FILE}, {files.SPLIT_FILE}; "
             f"figures: {', '.join(figures_made)}."]
    extra = [path for path in (config.output_graph, config.output_labels, config.summaries_dir)
             if path]
    if extra:
        lines.append(f"Also written: {', '.join(extra)}.")
    return lines


def check_accuracy(config, metrics):
    """`AccuracyBelowThreshold` when the test accuracy is under `assert_accuracy_at_least`."""
    floor, acc = config.assert_accuracy_at_least, metrics["test_accuracy"]
    if floor is None or (acc is not None and acc >= floor):
        return
    got = "there are no test pictures" if acc is None else f"test accuracy is {acc:.4f}"
    raise AccuracyBelowThreshold(
        f"{got}, below --assert_accuracy_at_least {floor:g} (the model was still exported "
        f"to {config.output_dir}).")
