"""Evaluating a trained classifier on the test split: the numbers `metrics.json` holds.

Scores in, metrics out (sklearn's per-class report and confusion matrix); no model
or TensorFlow here, so the same functions grade any backend's scores.
"""
import numpy as np
from sklearn.metrics import classification_report, confusion_matrix


def top_k_accuracy(scores, labels, k):
    """Share of pictures whose true class is among the `k` best scores (None if none)."""
    if not len(labels):
        return None
    top = np.argsort(-scores, axis=1)[:, :k]
    return float(np.mean([label in row for label, row in zip(labels, top)]))


def evaluate(scores, labels, classes):
    """Test metrics: accuracy, top-3, per-class precision/recall/F1, confusion matrix.

    Top-3 accuracy is there only with more than 3 classes: with fewer it is always 1.
    """
    predicted = scores.argmax(axis=1) if len(scores) else np.zeros(0, int)
    everyone = list(range(len(classes)))
    report = classification_report(labels, predicted, labels=everyone, target_names=classes,
                                   output_dict=True, zero_division=0) if len(labels) else {}
    metrics = {
        "test_accuracy": float(np.mean(predicted == labels)) if len(labels) else None,
        "per_class": {c: report[c] for c in classes} if report else {},
        "confusion_matrix": confusion_matrix(labels, predicted, labels=everyone).tolist()
        if len(labels) else [],
    }
    if len(classes) > 3:
        metrics["test_top3_accuracy"] = top_k_accuracy(scores, labels, 3)
    return metrics


def misclassified(prepared, scores, labels):
    """(relative path, true label, predicted label) for every wrong test answer."""
    classes = prepared.classes
    return [(r.rel_path, classes[t], classes[p]) for r, t, p in
            zip(prepared.records("test"), labels, scores.argmax(axis=1)) if t != p]
