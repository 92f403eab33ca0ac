"""Bidirectional hinge ranking loss over a batch (VSE++, Faghri et al.; DESIGN section 3).

For positives ``(i_k, c_k)`` with score ``s_kk`` and margin ``alpha``::

    image as query:   sum over negative captions c of  max(0, alpha + s(i_k, c) - s_kk)
    caption as query: sum over negative images   i of  max(0, alpha + s(i, c_k) - s_kk)

summed over queries, or with ``max_violation`` only the hardest negative of each query (VSE++).
Hardest-negative training from a cold start can collapse (every query stuck at ``alpha``, a loss of
``2 B alpha``): warm up with the sum form, see :meth:`RankingLoss.max_violation_at`.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from models.similarity import MEASURES, similarity

# Order scores of non-negative unit vectors live in [-1, 0] and crowd near 0, while cosine scores
# spread over [-1, 1]: hence a smaller margin for order (Vendrov et al. used 0.05, VSE++ 0.2).
DEFAULT_MARGINS = {"cosine": 0.2, "order": 0.05}


class RankingLoss(nn.Module):
    """Hinge ranking loss in both directions, with false-negative masking and gathered negatives.

    Args:
        measure: ``"order"`` or ``"cosine"`` (see :func:`models.similarity.similarity`).
        margin: hinge margin ``alpha``; ``None`` picks 0.05 for ``order`` and 0.2 for ``cosine``.
        max_violation: keep only the hardest negative per query (VSE++) once warm-up is over.
        warmup: steps (iterations or epochs: whatever unit the caller counts) of the sum form
            before ``max_violation`` takes effect; see :meth:`max_violation_at`.
    """

    def __init__(self, measure: str = "order", margin: Optional[float] = None, max_violation: bool = False,
                 warmup: int = 0):
        super().__init__()
        if measure not in MEASURES:
            raise ValueError(f"measure {measure!r} is not one of {', '.join(MEASURES)}")
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {warmup}")
        self.measure = measure
        self.margin = DEFAULT_MARGINS[measure] if margin is None else float(margin)
        self.max_violation = max_violation
        self.warmup = warmup

    def extra_repr(self) -> str:
        return (f"measure={self.measure!r}, margin={self.margin}, max_violation={self.max_violation}, "
                f"warmup={self.warmup}")

    def max_violation_at(self, step: int) -> bool:
        """Whether the hardest-negative form is on at ``step`` (0-based, counted in warm-up units).

        Pass the result as ``forward(..., max_violation=...)``.
        """
        return self.max_violation and step >= self.warmup

    def forward(
        self,
        im: torch.Tensor,
        cap: torch.Tensor,
        image_ids: Optional[torch.Tensor] = None,
        weights: Optional[torch.Tensor] = None,
        all_im: Optional[torch.Tensor] = None,
        all_cap: Optional[torch.Tensor] = None,
        all_ids: Optional[torch.Tensor] = None,
        offset: int = 0,
        max_violation: Optional[bool] = None,
        per_pair: bool = False,
    ) -> torch.Tensor:
        """The summed loss of the local queries (a scalar), or with ``per_pair`` each local pair's
        two query terms ``(B,)`` (weighted), whose sum is the scalar.

        Args:
            im: ``(B, D)`` image embeddings; row k is the positive of ``cap`` row k.
            cap: ``(B, D)`` caption embeddings.
            image_ids: ``(B,)`` ids of the images; pairs with equal ids are never negatives of each
                other (two captions of one image in a batch are false negatives).
            weights: ``(B,)`` per-pair weights; each query's terms (image k as query, caption k as
                query) are scaled by ``weights[k]``. Default: all ones.
            all_im, all_cap: ``(N, D)`` candidates gathered from every process (DDP), rows
                ``offset:offset+B`` being this process's batch. Local queries are ranked against
                all N candidates; those rows are replaced by ``im``/``cap``, so the positives are
                exact and the local candidates carry gradient even after a plain ``all_gather``.
                Other processes' candidates then act as constants; gather them with autograd
                (``torch.distributed.nn.functional.all_gather``) for the exact gradient: summed
                over processes it equals the gradient of the loss of the whole gathered batch.
                Pass both or neither; without them the batch is its own candidate set.
            all_ids: ``(N,)`` image ids of the candidates; needed with ``image_ids`` when gathering
                (``image_ids`` defaults to ``all_ids[offset:offset+B]``).
            offset: row of this process's batch inside the gathered candidates.
            max_violation: overrides the module's setting for this call (e.g. from
                :meth:`max_violation_at`).
        """
        hardest = self.max_violation if max_violation is None else max_violation
        cands_im, cands_cap, local_ids, cand_ids = self._candidates(im, cap, image_ids, all_im, all_cap,
                                                                    all_ids, offset)
        b, n = im.shape[0], cands_im.shape[0]
        if weights is not None and weights.shape != (b,):
            raise ValueError(f"weights must have shape ({b},), got {tuple(weights.shape)}")
        rows = torch.arange(b, device=im.device)
        cols = rows + offset  # column of each query's positive among the candidates
        if all_im is None:
            s_i2t = s_t2i = similarity(im, cap, self.measure)  # (B, B): one matrix serves both ways
        else:
            s_i2t = similarity(im, cands_cap, self.measure)  # (B, N): image queries vs all captions
            s_t2i = similarity(cands_im, cap, self.measure)  # (N, B): all images vs caption queries
        pos = s_i2t[rows, cols]  # (B,)

        # Negatives exclude the positive itself and, with ids, every pair of the same image.
        not_neg = torch.zeros(b, n, dtype=torch.bool, device=im.device)  # (B, N)
        not_neg[rows, cols] = True
        if local_ids is not None:
            not_neg |= local_ids[:, None] == cand_ids[None, :]

        cost_c = (self.margin + s_i2t - pos[:, None]).clamp(min=0).masked_fill(not_neg, 0)  # (B, N)
        cost_im = (self.margin + s_t2i - pos[None, :]).clamp(min=0).masked_fill(not_neg.T, 0)  # (N, B)
        if hardest:
            per_query_c, per_query_im = cost_c.max(dim=1).values, cost_im.max(dim=0).values  # (B,), (B,)
        else:
            per_query_c, per_query_im = cost_c.sum(dim=1), cost_im.sum(dim=0)  # (B,), (B,)
        pair_loss = per_query_c + per_query_im  # (B,)
        if weights is not None:
            pair_loss = pair_loss * weights
        return pair_loss if per_pair else pair_loss.sum()

    @staticmethod
    def _candidates(
        im: torch.Tensor,
        cap: torch.Tensor,
        image_ids: Optional[torch.Tensor],
        all_im: Optional[torch.Tensor],
        all_cap: Optional[torch.Tensor],
        all_ids: Optional[torch.Tensor],
        offset: int,
    ) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
        """(candidate images, candidate captions, local ids, candidate ids), all checked."""
        if im.dim() != 2 or im.shape != cap.shape:
            raise ValueError(f"im and cap must both be (B, D); got {tuple(im.shape)} and {tuple(cap.shape)}")
        b = im.shape[0]
        if image_ids is not None and image_ids.shape != (b,):
            raise ValueError(f"image_ids must have shape ({b},), got {tuple(image_ids.shape)}")
        if all_im is None and all_cap is None:
            if all_ids is not None or offset != 0:
                raise ValueError("all_ids and offset only make sense with all_im and all_cap")
            return im, cap, image_ids, image_ids
        if all_im is None or all_cap is None:
            raise ValueError("pass both all_im and all_cap, or neither")
        if all_im.dim() != 2 or all_im.shape != all_cap.shape or all_im.shape[1] != im.shape[1]:
            raise ValueError(f"all_im and all_cap must both be (N, {im.shape[1]}); got "
                             f"{tuple(all_im.shape)} and {tuple(all_cap.shape)}")
        n = all_im.shape[0]
        if not 0 <= offset <= n - b:
            raise ValueError(f"offset {offset} does not place a batch of {b} inside {n} candidates")
        if all_ids is not None:
            if all_ids.shape != (n,):
                raise ValueError(f"all_ids must have shape ({n},), got {tuple(all_ids.shape)}")
            if image_ids is None:
                image_ids = all_ids[offset:offset + b]
        elif image_ids is not None:
            raise ValueError("image_ids with gathered candidates needs all_ids, to mask same-image pairs")
        cands_im = torch.cat([all_im[:offset], im, all_im[offset + b:]])  # (N, D)
        cands_cap = torch.cat([all_cap[:offset], cap, all_cap[offset + b:]])  # (N, D)
        return cands_im, cands_cap, image_ids, all_ids
