"""`retrain(...)`: the whole job, from a folder of pictures to an evaluated export.

scan and split -> base and cached bottlenecks -> train -> evaluate on the test
split -> export model, labels, metrics, plots and the dataset report.
"""
import dataclasses
import os
import time
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix

from retrain import atomic, export, plots
from retrain.config import RetrainConfig, default_bottleneck_dir, resolve
from retrain.dataset import write_report
from retrain.model import build_model, classifier
from retrain.pipeline import prepare_data
from retrain.training import predict_split, strategy_scope, train

# --demo: scikit-learn's 8x8 digits, trained from scratch; used where the user set nothing else.
# SmallCNN at 16 px (the pictures are 8x8) beat SVC(gamma=0.001) on several hash splits in
# about a minute on 2 cores; docs/BENCHMARKS.md has the numbers.
DEMO_SETTINGS = dict(architecture="small_cnn", weights="none", fine_tune="all", image_size=16,
                     epochs=20, train_batch_size=64, learning_rate=3e-3, dropout=0.1,
                     label_smoothing=0.05, random_crop=5, random_scale=5)


@dataclass
class RetrainResult:
    output_dir: str
    metrics: dict
    model: object      # the exported classifier (raw pixels in)
    history: dict
    prepared: object


def demo_image_dir():
    """Where `--demo` writes the digits folder: beside the bottleneck cache, reused."""
    return os.path.join(os.path.dirname(default_bottleneck_dir()), "demo", "digits")


def apply_demo(config):
    """The config with the demo's folder and settings, keeping whatever the user changed."""
    from retrain.demo import write_digits_folder

    defaults = RetrainConfig()
    changes = {k: v for k, v in DEMO_SETTINGS.items()
               if getattr(config, k) == getattr(defaults, k)}
    if config.image_dir is None:
        changes["image_dir"] = write_digits_folder(demo_image_dir())
    if config.output_dir is None:
        changes["output_dir"] = os.path.join("saved_models", "digits")
    return dataclasses.replace(config, **changes)


def top_k_accuracy(scores, labels, k):
    if not len(labels):
        return None
    top = np.argsort(-scores, axis=1)[:, :k]
    return float(np.mean([label in row for label, row in zip(labels, top)]))


def evaluate(scores, labels, classes):
    """Test metrics: accuracy, top-3, per-class precision/recall/F1, confusion matrix."""
    predicted = scores.argmax(axis=1) if len(scores) else np.zeros(0, int)
    everyone = list(range(len(classes)))
    report = classification_report(labels, predicted, labels=everyone, target_names=classes,
                                   output_dict=True, zero_division=0) if len(labels) else {}
    return {
        "test_accuracy": float(np.mean(predicted == labels)) if len(labels) else None,
        "test_top3_accuracy": top_k_accuracy(scores, labels, 3),
        "per_class": {c: report[c] for c in classes} if report else {},
        "confusion_matrix": confusion_matrix(labels, predicted, labels=everyone).tolist()
        if len(labels) else [],
    }


def misclassified(prepared, scores, labels):
    """(relative path, true label, predicted label) for every wrong test answer."""
    classes = prepared.classes
    return [(r.rel_path, classes[t], classes[p]) for r, t, p in
            zip(prepared.records("test"), labels, scores.argmax(axis=1)) if t != p]


def export_all(config, prepared, model, history, metrics):
    """Write the output folder (and --output_graph / --output_labels when given)."""
    out = config.output_dir
    os.makedirs(out, exist_ok=True)
    previous = export.keep_previous_export(out)
    if previous and config.verbose:
        print(f"An earlier export in {out} was moved to {previous}")
    export.save_model(model, os.path.join(out, export.MODEL_FILE))
    export.write_labels(prepared.classes, os.path.join(out, export.LABELS_FILE))
    atomic.write_json(os.path.join(out, export.METRICS_FILE), metrics)
    atomic.write_json(os.path.join(out, export.SPLIT_FILE), prepared.dataset.split_manifest())
    write_report(prepared.dataset, os.path.join(out, "dataset_report.json"))
    plots.plot_history(history.history, os.path.join(out, "history.png"),
                       getattr(history, "best_epoch", None))
    if metrics["confusion_matrix"]:
        plots.plot_confusion_matrix(metrics["confusion_matrix"], prepared.classes,
                                    os.path.join(out, "confusion_matrix.png"))
    if config.output_graph:
        export.write_frozen_graph(model, config.output_graph)
    if config.output_labels:
        export.write_labels(prepared.classes, config.output_labels)


def retrain(config=None, **kwargs):
    """Train a classifier on `config.image_dir` and export it; returns a `RetrainResult`.

    Pass a `RetrainConfig`, or its fields as keyword arguments:
    `retrain(image_dir="pets", architecture="mobilenet_v2", epochs=5)`.
    """
    config = dataclasses.replace(config or RetrainConfig(), **kwargs)
    if config.demo:
        config = apply_demo(config)
    config = resolve(config)
    started = time.time()
    with strategy_scope(config):  # with --distribute, variables must live in the strategy
        prepared = prepare_data(config)
        model = build_model(prepared, config)
    history = train(model, prepared, config)
    trained_s = time.time() - started
    labels = prepared.labels["test"]
    scores = predict_split(model, prepared, "test")
    metrics = evaluate(scores, labels, prepared.classes)
    counts = {s: len(prepared.records(s)) for s in ("train", "validation", "test")}
    metrics.update({
        "split_sizes": counts, "classes": prepared.classes,
        "bottlenecks_computed": prepared.computed, "best_epoch": history.best_epoch,
        "epochs_run": len(history.history.get("loss", [])), "interrupted": history.interrupted,
        "train_seconds": round(trained_s, 2), "started_at": round(started, 3),
        "epoch_ended_at": [round(t, 3) for t in history.epoch_ended_at],
        "config": config.to_dict(),
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
    })
    full = classifier(prepared, model)
    export_all(config, prepared, full, history, metrics)
    if config.verbose:
        wrong = misclassified(prepared, scores, labels) if len(labels) else []
        if config.print_misclassified_test_images:
            print("=== MISCLASSIFIED TEST IMAGES ===")
            for path, true, predicted in wrong:
                print(f"{path:>60}  {true} (predicted {predicted})")
        acc = metrics["test_accuracy"]
        score = "no test pictures" if acc is None else \
            f"test accuracy {100 * acc:.2f}% ({len(labels) - len(wrong)}/{len(labels)})"
        print(f"Final {score}; top-3 {_pct(metrics['test_top3_accuracy'])}. "
              f"Exported to {config.output_dir}")
    return RetrainResult(config.output_dir, metrics, full, history.history, prepared)


def _pct(value):
    return "n/a" if value is None else f"{100 * value:.2f}%"
