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


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision of ``scores`` at ranking ``labels`` 1 first: the mean, over positives, of
    the precision among pairs scoring at least as high (tied scores count as one cut-off).

    Raises:
        ValueError: there is no positive.
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    if not labels.any():
        raise ValueError("average precision needs at least one positive")
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    last = np.r_[s[1:] != s[:-1], True]  # the last index of each run of tied scores
    hits = np.cumsum(y)[last]
    seen = (np.flatnonzero(last) + 1).astype(np.float64)
    new_hits = np.diff(np.r_[0, hits])
    return float((new_hits * hits / seen).sum() / labels.sum())
