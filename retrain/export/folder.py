"""A whole export folder: model, labels, metrics, split, dataset report and plots.

Every file is written atomically, and an earlier export in the same folder is moved to
`previous/` first, so retraining never silently destroys a model the user had.
"""
import os
import shutil

from retrain import atomic, figures
from retrain.dataset import write_report
from retrain.export import files
from retrain.export.keras_model import save_model


def keep_previous_export(output_dir):
    """Move an earlier export out of the way (into `previous/`); returns that folder or None."""
    if not os.path.isfile(os.path.join(output_dir, files.MODEL_FILE)):
        return None
    previous = os.path.join(output_dir, files.PREVIOUS_DIR)
    shutil.rmtree(previous, ignore_errors=True)
    os.makedirs(previous)
    for name in files.EXPORT_FILES:
        src = os.path.join(output_dir, name)
        if os.path.exists(src):
            os.replace(src, os.path.join(previous, name))
    return previous


def write_labels(classes, path):
    """`labels.txt`: one class name a line, in the model's output order."""
    atomic.write_text(path, "".join(f"{name}\n" for name in classes))


def export_all(config, prepared, model, history, metrics):
    """Write the output folder (and --output_graph / --output_labels when given)."""
    out = config.output_dir
    os.makedirs(out, exist_ok=True)
    previous = keep_previous_export(out)
    if previous and config.verbose:
        print(f"An earlier export in {out} was moved to {previous}")
    save_model(model, os.path.join(out, files.MODEL_FILE))
    write_labels(prepared.classes, os.path.join(out, files.LABELS_FILE))
    atomic.write_json(os.path.join(out, files.METRICS_FILE), metrics)
    atomic.write_json(os.path.join(out, files.SPLIT_FILE), prepared.dataset.split_manifest())
    write_report(prepared.dataset, os.path.join(out, files.DATASET_REPORT_FILE))
    figures.plot_history(history.history, os.path.join(out, files.HISTORY_PLOT),
                       getattr(history, "best_epoch", None))
    if metrics["confusion_matrix"]:
        figures.plot_confusion_matrix(metrics["confusion_matrix"], prepared.classes,
                                    os.path.join(out, files.CONFUSION_PLOT))
    if config.output_graph:
        from retrain.export.graph import write_frozen_graph

        write_frozen_graph(model, config.output_graph)
    if config.output_labels:
        write_labels(prepared.classes, config.output_labels)
