"""Plots a person would rather look at than read: training curves and the confusion matrix.

Drawn with matplotlib's Agg backend (no screen needed) and saved atomically.
"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from retrain.atomic import atomic_path  # noqa: E402


def save_figure(fig, path, dpi=110):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    plt.close(fig)


def plot_history(history, path, best_epoch=None):
    """Loss and accuracy per epoch, training and validation, with the kept epoch marked."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            values = history.get(key)
            if values:
                ax.plot(range(1, len(values) + 1), values, style, marker="o", markersize=3,
                        label="validation" if key.startswith("val_") else "training")
        if best_epoch is not None:
            ax.axvline(best_epoch + 1, color="grey", linestyle=":", label="kept epoch")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Training curves")
    save_figure(fig, path)


def plot_confusion_matrix(matrix, classes, path, title="Confusion matrix (test split)"):
    """Counts per (true, predicted) class, with the numbers written in the cells."""
    from retrain.figures import font_for

    matrix = np.asarray(matrix)
    n = len(classes)
    side = min(2 + 0.5 * n, 20)
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(matrix, cmap="Blues")
    font = font_for(classes)  # class names such as 猫 need a CJK font to show as glyphs
    ax.set_xticks(range(n), classes, rotation=90 if n > 10 else 45, ha="right",
                  fontproperties=font)
    ax.set_yticks(range(n), classes, fontproperties=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        high = matrix.max() / 2 if matrix.size else 0
        for (i, j), count in np.ndenumerate(matrix):
            if count:
                ax.text(j, i, str(count), ha="center", va="center",
                        color="white" if count > high else "black", fontsize=8)
    ax.set_title(title)
    save_figure(fig, path)
