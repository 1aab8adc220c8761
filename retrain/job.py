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

from retrain import atomic
from retrain.config import RetrainConfig, resolve
from retrain.demo import apply_demo
from retrain.evaluate import evaluate, misclassified
from retrain.export.files import METRICS_FILE
from retrain.export.folder import export_all
from retrain.fit import predict_split, strategy_scope, train
from retrain.model import build_model, classifier
from retrain.prepare import prepare_data


@dataclass
class RetrainResult:
    output_dir: str
    metrics: dict
    model: object      # the exported classifier (raw pixels in)
    history: dict
    prepared: object


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
        timings = prepared.timings
        with timings.step("model"):
            model = build_model(prepared, config)
    with timings.step("fit"):
        history = train(model, prepared, config)
    trained_s = time.time() - started
    labels = prepared.labels["test"]
    with timings.step("evaluate"):
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
        "timings": timings,
    })
    with timings.step("export"):
        full = classifier(prepared, model)
        export_all(config, prepared, full, history, metrics)
    # metrics.json was written inside the export; written again with the export's time.
    atomic.write_json(os.path.join(config.output_dir, METRICS_FILE), metrics)
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
