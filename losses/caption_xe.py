"""Teacher-forced caption cross-entropy (docs/DESIGN.md section 3: XE, padding masked, ``<end>`` included).

A caption row is ``<start> w1 .. wn <end> <pad> ..`` with ``length = n + 2``. The decoder reads
``captions[:, :-1]`` and predicts ``captions[:, 1:]``, so each row has ``length - 1`` targets:
every word and the ``<end>``, never ``<start>`` or padding.
"""
from __future__ import annotations

import torch

from models.caption_decoder import target_log_probs


def caption_xe(logits: torch.Tensor, captions: torch.Tensor, lengths: torch.Tensor,
               weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy over all target tokens of the batch (a scalar).

    A token-level mean: every target token of the batch weighs the same, whatever its caption's
    length. Shapes as in :func:`target_log_probs`; ``weights (B,)`` scales each caption's tokens
    (the mean keeps the unweighted token count, so down-weighting a pair lowers the loss).
    """
    logp, mask = target_log_probs(logits, captions, lengths)
    if weights is not None:
        logp = logp * weights.to(logp.dtype)[:, None]
    return -logp.sum() / mask.sum()
