"""Look-path helpers: caption strings for CIDEr-D, the SCST reward, and the look loss terms."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from config import LookConfig
from data.records import Split
from data.vocab import END, Vocabulary, tokenize
from losses import CiderD
from losses.caption_xe import caption_xe
from losses.scst import mean_of_others_baseline, self_critical
from models.modes import eval_mode


def reference_strings(captions: Sequence[str], max_len: int) -> list[str]:
    """References as the reward sees them: our tokenisation, at most ``max_len`` words, ``<end>``."""
    return [" ".join(tokenize(c)[:max_len] + [END]) for c in captions]


def split_cider_d(captions: Sequence[str], split: Split, max_len: int) -> float:
    """CIDEr-D (document frequencies from these references) of one caption per image of ``split``,
    in split order (``len(captions)`` may cover only its first images)."""
    gts = {i: reference_strings(split.captions[i], max_len) for i in range(len(captions))}
    res = {i: [" ".join(c.split() + [END])] for i, c in enumerate(captions)}
    return float(CiderD().compute_score(gts, res)[0])


def candidate_strings(tokens: torch.Tensor, vocab: Vocabulary) -> list[str]:
    """Generated ids ``(N, L)`` -> strings with ``<end>`` when the caption ended (docs/DESIGN.md section 3)."""
    out = []
    for row in tokens.tolist():
        words = vocab.decode(row).split()
        out.append(" ".join(words + [END] if vocab.end_id in row else words))
    return out


class CaptionReward:
    """CIDEr-D of sampled captions against their image's training references.

    Document frequencies come once from the whole training split, or from its labelled ``images``
    only (never from a batch), and each image's reference n-gram vectors are cached (``CiderD``
    corpus mode).
    """

    def __init__(self, split: Split, vocab: Vocabulary, max_len: int, images: Optional[Sequence[int]] = None):
        self.vocab = vocab
        images = range(split.num_images) if images is None else images
        corpus = {int(i): reference_strings(split.captions[int(i)], max_len) for i in images}
        self.cider = CiderD(corpus=corpus)

    def __call__(self, image_ids: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """``(B,)`` image ids, ``(B * n, L)`` tokens grouped per image -> ``(B, n)`` rewards."""
        n = tokens.shape[0] // image_ids.shape[0]
        keys = np.repeat(image_ids.cpu().numpy(), n).tolist()
        scores = self.cider.score(keys, candidate_strings(tokens.cpu(), self.vocab))
        return torch.as_tensor(np.asarray(scores), dtype=torch.float32).view(-1, n)


def look_terms(decoder, out: dict, batch, phase: str, cfg: LookConfig, reward: CaptionReward,
               weights: Optional[torch.Tensor] = None) -> dict:
    """The decoder's loss terms for one batch: ``look_xe``, or ``look_scst`` plus logged values;
    ``weights (B,)`` (robust training) scale each pair's terms."""
    _, captions, lengths, image_ids, _ = batch
    if phase == "xe":
        return {"look_xe": caption_xe(out["logits"], captions.to(out["logits"].device), lengths, weights)}
    rewards = reward(image_ids, out["tokens"])  # (B, n)
    if cfg.scst_baseline == "greedy":
        with eval_mode(decoder), torch.no_grad():  # the greedy baseline: dropout off, no gradient
            greedy = decoder.greedy(out["img"]["grounded"].detach())
        baseline = reward(image_ids, greedy)  # (B, 1)
    elif cfg.scst_baseline == "mean":
        baseline = mean_of_others_baseline(rewards)
    else:
        raise ValueError(f"look.scst_baseline={cfg.scst_baseline!r} is not mean or greedy")
    device = out["logprobs"].device
    terms = self_critical(out["logprobs"], out["mask"], rewards.to(device), baseline.to(device), weights)
    return {"look_scst": terms.loss, "_reward": terms.reward, "_baseline": terms.baseline}
