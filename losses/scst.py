"""Self-critical sequence training (Rennie et al., arXiv 1612.00563; docs/DESIGN.md section 3).

REINFORCE with a baseline: for sampled captions ``w^s`` with reward ``r(w^s)`` (CIDEr-D) and
baseline ``b``, minimise ``-(r(w^s) - b) * log p(w^s)``. Two baselines:

- **greedy** (Rennie): ``b`` is the reward of the image's greedy caption. The caller computes it:
  decode with :meth:`CaptionDecoder.greedy` in ``eval()`` mode (dropout off) under ``no_grad``,
  score it with the same CIDEr-D as the samples, and pass it as a ``(B, 1)`` baseline.
- **mean of others** ("new self-critical"): ``b`` of a sample is the mean reward of the other
  ``n - 1`` samples of the same image, :func:`mean_of_others_baseline`; needs ``n >= 2`` and no
  extra decode, and works better in practice.

Rewards are laid out ``(B, n)``: row ``b`` holds image ``b``'s samples, in the order of
``CaptionDecoder.sample`` (its rows ``b*n .. b*n+n-1``), so ``rewards.reshape(-1)`` lines up with them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def scst_loss(logprobs: torch.Tensor, mask: torch.Tensor, advantage: torch.Tensor) -> torch.Tensor:
    """``-sum(logprobs * mask * advantage[:, None]) / mask.sum()`` (a scalar).

    Normalised by the number of generated tokens (``<end>`` included), the same token-level mean
    as the XE loss, so a learning rate about a tenth of XE's is a meaningful setting.
    The advantage is a constant of the policy gradient: it is detached here.

    Args:
        logprobs: ``(N, L)`` log-probabilities of the sampled tokens, with grad.
        mask: ``(N, L)`` 1 up to and including each caption's first ``<end>``, 0 after.
        advantage: ``(N,)`` reward minus baseline per sampled caption.
    """
    if logprobs.shape != mask.shape or advantage.shape != logprobs.shape[:1]:
        raise ValueError(f"need logprobs and mask (N, L) and advantage (N,); got {tuple(logprobs.shape)}, "
                         f"{tuple(mask.shape)} and {tuple(advantage.shape)}")
    mask = mask.to(logprobs.dtype)
    return -(logprobs * mask * advantage.detach()[:, None].to(logprobs.dtype)).sum() / mask.sum()


def mean_of_others_baseline(rewards: torch.Tensor) -> torch.Tensor:
    """Each sample's baseline: the mean reward of the other ``n - 1`` samples of its image.

    Args:
        rewards: ``(B, n)`` rewards, ``n >= 2`` samples per image.

    Returns:
        ``(B, n)`` baselines.
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"the mean-of-others baseline needs rewards (B, n) with n >= 2 samples per image, "
                         f"got shape {tuple(rewards.shape)}")
    n = rewards.shape[1]
    return (rewards.sum(1, keepdim=True) - rewards) / (n - 1)


@dataclass
class SCSTTerms:
    """The SCST loss and what to log with it (``reward`` and ``baseline`` are detached means)."""

    loss: torch.Tensor
    reward: torch.Tensor
    baseline: torch.Tensor


def self_critical(logprobs: torch.Tensor, mask: torch.Tensor, rewards: torch.Tensor,
                  baseline: torch.Tensor, weights: torch.Tensor | None = None) -> SCSTTerms:
    """SCST from per-image rewards: advantage = rewards - baseline, then :func:`scst_loss`.

    Args:
        logprobs, mask: ``(B*n, L)`` from ``CaptionDecoder.sample(features, n)``.
        rewards: ``(B, n)`` reward of each sample.
        baseline: ``(B, n)`` (e.g. :func:`mean_of_others_baseline`) or ``(B, 1)`` (the greedy
            caption's reward, shared by the image's samples).
        weights: ``(B,)`` optional per-image weights of the advantage (robust training).
    """
    if rewards.dim() != 2 or rewards.numel() != logprobs.shape[0] or baseline.shape not in (
            rewards.shape, rewards.shape[:1] + (1,)):
        raise ValueError(f"need rewards (B, n) with B*n = {logprobs.shape[0]} and baseline (B, n) or (B, 1); "
                         f"got {tuple(rewards.shape)} and {tuple(baseline.shape)}")
    advantage = rewards - baseline  # (B, n)
    if weights is not None:
        advantage = advantage * weights.to(advantage.device, advantage.dtype)[:, None]
    advantage = advantage.reshape(-1)  # (B*n,)
    return SCSTTerms(scst_loss(logprobs, mask, advantage), rewards.mean().detach(), baseline.mean().detach())
