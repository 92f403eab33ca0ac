"""Losses of the text-to-image GAN (docs/DESIGN.md section 2): matching-aware D, G with the CA's KL term.

Matching-aware discriminator (GAN-INT-CLS, arXiv 1605.05396): D sees three kinds of pairs,
(real image, its caption) -> 1, (real image, a caption of a *different* image) -> 0, (generated
image, its caption) -> 0, and minimises ``real + 0.5 * (wrong + fake)``. The "wrong" caption must
come from another image: captions of the same image are false negatives, so
:func:`mismatched_indices` picks rows by image id, never by a plain batch shift.

The generator minimises BCE(D(fake), 1) plus ``kl_weight`` times the conditioning augmentation's
KL to N(0, I) (StackGAN, arXiv 1612.03242); with GAN-INT (``imagine.interpolate``) it also
learns from conditions between two captions (``models.t2i_gan.interpolate_conditions``). Every loss returns a dict of named scalar terms with
the sum to optimise under ``"total"``.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def kl_loss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), averaged over batch and dimensions; a scalar >= 0.

    ``mean(-0.5 * (1 + logvar - mu^2 - exp(logvar)))`` over ``(B, C)`` inputs.
    """
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).mean()


def discriminator_loss(d_real: torch.Tensor, d_wrong: torch.Tensor, d_fake: torch.Tensor,
                       kind: str = "bce") -> dict[str, torch.Tensor]:
    """Matching-aware D loss from logits ``(B,)`` each: ``{"real", "wrong", "fake", "total"}``.

    ``kind="bce"``: BCE-with-logits with targets real -> 1, wrong -> 0, fake -> 0; ``"hinge"``:
    ``relu(1 - real)``, ``relu(1 + wrong)``, ``relu(1 + fake)`` (SN-GAN, DF-GAN), each a batch mean;
    ``total = real + 0.5 * (wrong + fake)``. Pass ``d_fake`` computed on detached generator output.
    """
    if kind == "hinge":
        real, wrong, fake = F.relu(1 - d_real).mean(), F.relu(1 + d_wrong).mean(), F.relu(1 + d_fake).mean()
        return {"real": real, "wrong": wrong, "fake": fake, "total": real + 0.5 * (wrong + fake)}
    real = F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
    wrong = F.binary_cross_entropy_with_logits(d_wrong, torch.zeros_like(d_wrong))
    fake = F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
    return {"real": real, "wrong": wrong, "fake": fake, "total": real + 0.5 * (wrong + fake)}


def generator_loss(d_fake: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                   kl_weight: float = 2.0, kind: str = "bce") -> dict[str, torch.Tensor]:
    """G loss from D's logits on generated pairs ``(B,)`` and the CA's ``(B, C)`` ``mu``, ``logvar``.

    Returns ``{"adv", "kl", "total"}`` with ``adv = BCE(d_fake, 1)`` (the non-saturating loss; with
    ``kind="hinge"``, ``-mean(d_fake)``) and ``total = adv + kl_weight * kl``.
    """
    adv = -d_fake.mean() if kind == "hinge" else F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))
    kl = kl_loss(mu, logvar)
    return {"adv": adv, "kl": kl, "total": adv + kl_weight * kl}


def mismatched_indices(image_ids: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """For each row, the index ``(B,)`` of a row with a *different* image id, drawn uniformly.

    ``captions[mismatched_indices(ids)]`` gives each real image a caption of another image (the
    "wrong" pairs). Deterministic given ``generator`` (which must live on ``image_ids``' device).

    Raises:
        ValueError: if ``image_ids`` is not 1-D, or every row has the same image id (no wrong
            caption exists; a batch of one included).
    """
    if image_ids.dim() != 1:
        raise ValueError(f"image_ids must be (B,), got shape {tuple(image_ids.shape)}")
    allowed = image_ids[:, None] != image_ids[None, :]  # (B, B): j is a valid wrong caption for row i
    if not allowed.any(1).all():
        raise ValueError(f"mismatched_indices needs at least two distinct image ids in the batch, got "
                         f"{image_ids.numel()} row(s) all of image {image_ids[0].item() if image_ids.numel() else None}")
    scores = torch.rand(allowed.shape, generator=generator, device=image_ids.device)  # (B, B)
    return scores.masked_fill(~allowed, -1.0).argmax(1)  # uniform among the allowed rows


def generated_match_loss(scores: torch.Tensor, image_ids: torch.Tensor, scale: float = 10.0,
                         weights: torch.Tensor | None = None, swapped: torch.Tensor | None = None) -> torch.Tensor:
    """Matching loss of generated images (DAMSM-style, AttnGAN arXiv 1711.10485), a scalar.

    ``scores (n, n)``: similarity of generated image ``i`` (made from caption ``i``) to caption
    ``j``. Softmax cross-entropy over ``scale * scores`` in both directions, the diagonal being the
    target; other captions of the same image are masked out (they are not negatives). ``weights
    (n,)`` scale each generated image's two terms (robust training); the mean stays over ``n``.
    ``swapped (n, m)``: the similarity of image ``i`` to ``m`` one-word swaps of its own caption
    (NaN where there is none), extra negatives of the image-to-caption direction only.
    """
    same = image_ids[:, None] == image_ids[None, :]  # (n, n)
    eye = torch.eye(len(scores), dtype=torch.bool, device=scores.device)
    logits = (scale * scores).masked_fill(same & ~eye, float("-inf"))
    target = torch.arange(len(scores), device=scores.device)
    rows = logits
    if swapped is not None:
        extra = (scale * swapped.to(logits.dtype)).masked_fill(swapped.isnan(), float("-inf"))
        rows = torch.cat([logits, extra], dim=1)  # (n, n + m)
    per = F.cross_entropy(rows, target, reduction="none") + F.cross_entropy(logits.t(), target, reduction="none")
    if weights is not None:
        per = per * weights.to(per.dtype)
    return 0.5 * per.mean()
