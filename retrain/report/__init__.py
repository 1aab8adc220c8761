"""Report: what a person reads after a run: metrics and figures.

`evaluate` computes accuracy, the confusion matrix and the misclassified pictures (with
scikit-learn's metrics); `figures` draws training curves, the confusion matrix, pages of
answered pictures and contact sheets (matplotlib, written atomically).

May import: retrain.common, retrain.data.
"""
