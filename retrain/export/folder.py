"""A whole export folder: model, labels, metrics, split, dataset report and plots.

Every file is written atomically, and an earlier export in the same folder is moved to
`previous/<time>/` first, so retraining never destroys a model the user had: every
earlier model is kept, each in its own folder, never mixed with the new one's files.
"""
import os
import time

from retrain.common import atomic
from retrain.report import figures
from retrain.data.dataset import write_report
from retrain.common import files
from retrain.formats.keras_model import save_model


def _made_at(folder):
    """When the export in `folder` was written (its model file's time), as a folder name
    that sorts by time: `2024-05-01T12-30-05`."""
    stamp = os.path.getmtime(os.path.join(folder, files.MODEL_FILE))
    return time.strftime("%Y-%m-%dT%H-%M-%S", time.localtime(stamp))


def _new_folder(parent, name):
    """Create `parent/name` (or `name-2`, `name-3`, ... when taken); never an existing one."""
    os.makedirs(parent, exist_ok=True)
    for n in range(1, 10_000):
        path = os.path.join(parent, name if n == 1 else f"{name}-{n}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"{parent} holds too many folders named {name}")


def _move_export(src_dir, dest_dir):
    """Rename every export file of `src_dir` into the fresh folder `dest_dir` (each move
    an atomic rename within one file system)."""
    for name in files.EXPORT_FILES:
        src = os.path.join(src_dir, name)
        if os.path.lexists(src):
            os.replace(src, os.path.join(dest_dir, name))


def keep_previous_export(output_dir):
    """Move an earlier export out of the way, into a new `previous/<time it was made>/`
    folder beside the earlier ones; returns that folder, or None when there was none.

    An export kept by kapps before these timed folders (its files straight in
    `previous/`) is moved into a timed folder of its own first, so it is never mixed
    with another model's files.
    """
    previous = os.path.join(output_dir, files.PREVIOUS_DIR)
    if os.path.isfile(os.path.join(previous, files.MODEL_FILE)):
        _move_export(previous, _new_folder(previous, _made_at(previous)))
    if not os.path.isfile(os.path.join(output_dir, files.MODEL_FILE)):
        return None
    kept = _new_folder(previous, _made_at(output_dir))
    _move_export(output_dir, kept)
    return kept


def moved_line(output_dir, kept):
    """The one line that says where `keep_previous_export` put the earlier model, and
    what the kept ones hold: kapps deletes none of them, so the user sees them grow."""
    previous = os.path.dirname(kept)
    count, size = 0, 0
    for name in os.listdir(previous):
        folder = os.path.join(previous, name)
        if os.path.isfile(os.path.join(folder, files.MODEL_FILE)):
            count += 1
            size += sum(os.path.getsize(os.path.join(root, f))
                        for root, _, names in os.walk(folder) for f in names
                        if not os.path.islink(os.path.join(root, f)))
    return (f"The earlier model in {output_dir} was moved to {kept}/ ({previous} keeps "
            f"every earlier one: {count} model{'s' if count != 1 else ''}, "
            f"{size / 1e6:.1f} MB; delete those you no longer need; --output_dir writes "
            "elsewhere).")


def write_labels(classes, path):
    """`labels.txt`: one class name a line, in the model's output order."""
    atomic.write_text(path, "".join(f"{name}\n" for name in classes))


def export_all(config, prepared, model, history, metrics):
    """Write the output folder (and --output_graph / --output_labels, --saved_model_dir,
    --tflite_output_file, --onnx_output_file when given)."""
    out = config.output_dir
    os.makedirs(out, exist_ok=True)
    previous = keep_previous_export(out)
    if previous and config.verbose:
        print(moved_line(out, previous))
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
        from retrain.formats.graph import write_frozen_graph

        write_frozen_graph(model, config.output_graph)
    if config.output_labels:
        write_labels(prepared.classes, config.output_labels)
    for format, path in (("saved_model", config.saved_model_dir),
                         ("litert", config.tflite_output_file), ("onnx", config.onnx_output_file)):
        if path:
            from retrain.export.convert import export_model

            export_model(out, format, output=path)
            if config.verbose:
                print(f"Exported {format} to {path} (measured in {files.EXPORT_REPORT_FILE} "
                      "beside it)")
