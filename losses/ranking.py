"""Bidirectional hinge ranking loss over a batch (VSE++, Faghri et al.; docs/DESIGN.md section 3).

For positives ``(i_k, c_k)`` with score ``s_kk`` and margin ``alpha``::

    image as query:   sum over negative captions c of  max(0, alpha + s(i_k, c) - s_kk)
    caption as query: sum over negative images   i of  max(0, alpha + s(i, c_k) - s_kk)

summed over queries, or with ``max_violation`` only the hardest negative of each query (VSE++).
Hardest-negative training from a cold start can collapse (every query stuck at ``alpha``, a loss of
``2 B alpha``): warm up with the sum form, then ramp the hardest form in gradually, see
:meth:`RankingLoss.hard_weight_at` and :func:`aggregate_negatives`.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from models.similarity import MEASURES, similarity

# Order scores of non-negative unit vectors live in [-1, 0] and crowd near 0, while cosine scores
# spread over [-1, 1]: hence a smaller margin for order (Vendrov et al. used 0.05, VSE++ 0.2).
DEFAULT_MARGINS = {"cosine": 0.2, "order": 0.05}


def kept_negatives(n: int, hard_weight: float) -> float:
    """How many of ``n`` candidates :func:`aggregate_negatives` keeps at ``hard_weight``: ``n ** (1 - w)``."""
    return float(n) ** (1.0 - hard_weight)


def aggregate_negatives(cost: torch.Tensor, hard_weight: float, dim: int) -> torch.Tensor:
    """Each query's hinge costs over its ``n`` candidates along ``dim``, reduced to one term.

    ``hard_weight`` 0 is the sum over all candidates (VSE0), 1 the hardest one (VSE++); between,
    the sum of the ``k = n ** (1 - hard_weight)`` largest costs, with a fractional ``k`` counting its
    last cost by its fraction (``k = 2.5``: the top two plus half the third).

    Why a top-k sum with a geometric ``k``, not ``(1 - w) * sum + w * max``: the sum of a query's
    hinges is up to ``n`` times its largest, so the linear blend is ruled by the sum until ``w`` is
    close to 1 and then swaps the gradient to the hardest negative over the last few percent of the
    ramp, an abrupt switch in disguise. The top-k sum is continuous in ``w`` (piecewise linear in
    ``k``), moves the loss monotonically from the sum's scale to the hardest's, and its geometric
    ``k`` drops the same share of the easiest negatives for each step of ``w`` (``n = 128``: 128, 11,
    1 at 0, 0.5, 1), so the pool hardens at an even pace. At 0 and 1 it is the two forms exactly.
    Costs that are not negatives must be 0 (masked), so they never outrank a violating negative.
    """
    if not 0.0 <= hard_weight <= 1.0:
        raise ValueError(f"hard_weight must be in [0, 1], got {hard_weight}")
    if hard_weight == 0.0:
        return cost.sum(dim=dim)
    if hard_weight == 1.0:
        return cost.max(dim=dim).values
    n = cost.shape[dim]
    k = kept_negatives(n, hard_weight)  # in (1, n)
    whole = min(int(k), n)
    share = [1.0] * whole + ([k - whole] if whole < n else [])
    top = cost.topk(len(share), dim=dim).values  # (.., len(share), ..) largest first
    shape = [1] * cost.dim()
    shape[dim] = len(share)
    return (top * torch.tensor(share, dtype=cost.dtype, device=cost.device).view(shape)).sum(dim=dim)


class RankingLoss(nn.Module):
    """Hinge ranking loss in both directions, with false-negative masking and gathered negatives.

    Args:
        measure: ``"order"`` or ``"cosine"`` (see :func:`models.similarity.similarity`).
        margin: hinge margin ``alpha``; ``None`` picks 0.05 for ``order`` and 0.2 for ``cosine``.
        max_violation: end at the hardest negative per query (VSE++) after warm-up and ramp.
        warmup: steps (iterations or epochs: whatever unit the caller counts) of the sum form
            before the hardest form starts; see :meth:`hard_weight_at`.
        ramp: steps, in the same unit, over which the hardest form ramps in after ``warmup``
            (0: it switches on at once, the original VSE++ schedule).
        mean_negatives: divide each query's term by the number of negatives it keeps (the mean of
            the top k instead of their sum), so the loss keeps its scale from the sum form (up to
            ``n`` times the hardest cost) to the hardest form. The weights of the other losses
            beside it (decoder, GAN) then mean the same all through the ramp; with the sum, they
            count ~``n`` times more once the hardest form is reached.
        max_hard: where the ramp ends (0 < ``max_hard`` <= 1): 1 is the hardest negative, less a
            semi-hard sum over each query's ``n ** (1 - max_hard)`` largest hinges (see
            :func:`aggregate_negatives`), which near-duplicate negatives cannot rule alone.
    """

    def __init__(self, measure: str = "order", margin: Optional[float] = None, max_violation: bool = False,
                 warmup: int = 0, ramp: float = 0, mean_negatives: bool = False, max_hard: float = 1.0):
        super().__init__()
        if measure not in MEASURES:
            raise ValueError(f"measure {measure!r} is not one of {', '.join(MEASURES)}")
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {warmup}")
        if ramp < 0:
            raise ValueError(f"ramp must be >= 0, got {ramp}")
        if not 0.0 < max_hard <= 1.0:
            raise ValueError(f"max_hard must be in (0, 1], got {max_hard}")
        self.measure = measure
        self.margin = DEFAULT_MARGINS[measure] if margin is None else float(margin)
        self.max_violation = max_violation
        self.warmup = warmup
        self.ramp = ramp
        self.mean_negatives = mean_negatives
        self.max_hard = float(max_hard)

    def extra_repr(self) -> str:
        return (f"measure={self.measure!r}, margin={self.margin}, max_violation={self.max_violation}, "
                f"warmup={self.warmup}, ramp={self.ramp}, mean_negatives={self.mean_negatives}, "
                f"max_hard={self.max_hard}")

    def hard_weight_at(self, step: float) -> float:
        """The hardest-negative weight at ``step`` (0-based, in warm-up units; fractional steps,
        e.g. ``epoch + batch / batches``, ramp smoothly): 0 during warm-up, then rising linearly
        to ``max_hard`` over ``ramp`` steps (at once without a ramp); always 0 without ``max_violation``.

        Pass the result as ``forward(..., hard_weight=...)``.
        """
        if not self.max_violation or step < self.warmup:
            return 0.0
        if self.ramp == 0:
            return self.max_hard
        return self.max_hard * min(1.0, (step - self.warmup) / self.ramp)

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
        hard_weight: Optional[float] = None,
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
            max_violation: overrides the module's setting for this call: ``True`` is
                ``hard_weight=1``, ``False`` is ``hard_weight=0``.
            hard_weight: how each query's costs over its negatives reduce, from 0 (their sum) to 1
                (the hardest), see :func:`aggregate_negatives`; e.g. from :meth:`hard_weight_at`.
                Overrides ``max_violation``. Default: the module's ``max_violation``.
        """
        if hard_weight is None:
            hard_weight = float(self.max_violation if max_violation is None else max_violation)
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
        per_query_c = aggregate_negatives(cost_c, hard_weight, dim=1)  # (B,)
        per_query_im = aggregate_negatives(cost_im, hard_weight, dim=0)  # (B,)
        if self.mean_negatives:
            per_query_c = per_query_c / kept_negatives(n, hard_weight)
            per_query_im = per_query_im / kept_negatives(n, hard_weight)
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
