"""Teacher-forced caption cross-entropy (DESIGN section 3: XE, padding masked, ``<end>`` included).

A caption row is ``<start> w1 .. wn <end> <pad> ..`` with ``length = n + 2``. The decoder reads
``captions[:, :-1]`` and predicts ``captions[:, 1:]``, so each row has ``length - 1`` targets:
every word and the ``<end>``, never ``<start>`` or padding.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def target_log_probs(logits: torch.Tensor, captions: torch.Tensor,
                     lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of the target tokens and their mask.

    Args:
        logits: ``(B, T-1, V)`` teacher-forced logits (``CaptionDecoder.forward``).
        captions: ``(B, T)`` ids starting with ``<start>``.
        lengths: ``(B,)`` tokens per row, ``<start>`` and ``<end>`` included.

    Returns:
        ``(B, T-1)`` log p(target) (0 at padding) and the ``(B, T-1)`` float mask of real targets.
    """
    targets = captions[:, 1:]  # (B, T-1)
    if logits.shape[:2] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match captions {tuple(captions.shape)}")
    steps = torch.arange(targets.shape[1], device=targets.device)
    mask = (steps[None] < (lengths.to(targets.device) - 1)[:, None]).to(logits.dtype)  # (B, T-1)
    logp = -F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # (B, T-1)
    return logp * mask, mask


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
