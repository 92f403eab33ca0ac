"""Metrics of a pair score at telling correct (image, caption) pairs from wrong ones."""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve for ``labels`` 1 = positive, higher score = more positive (ties count 1/2).

    Raises:
        ValueError: only one class is present.
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    pos, neg = labels.sum(), (~labels).sum()
    if pos == 0 or neg == 0:
        raise ValueError("AUROC needs both positive and negative pairs")
    ranks = rankdata(scores)  # average ranks: Mann-Whitney U with ties as 1/2
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The threshold ``t`` (positive iff score >= t) with the best balanced accuracy, and that accuracy."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    cuts = np.unique(scores)
    tpr = np.array([(scores[labels] >= t).mean() for t in cuts])
    tnr = np.array([(scores[~labels] < t).mean() for t in cuts])
    best = int(np.argmax((tpr + tnr) / 2))
    return float(cuts[best]), float((tpr[best] + tnr[best]) / 2)
