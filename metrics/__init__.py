"""Evaluation metrics."""
from .retrieval import ranks_i2t, ranks_t2i, recall_metrics, recall_metrics_folds

__all__ = ["ranks_i2t", "ranks_t2i", "recall_metrics", "recall_metrics_folds"]
