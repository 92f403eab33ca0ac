"""Recall@K, median and mean rank for image-text retrieval (docs/DESIGN.md section 5).

``sims`` is ``(n_images, k * n_images)``: caption j belongs to image ``j // k``. Ranks are 0-based
and count every *wrong* item that scores at least as high as the right one, so ties are broken
against the query and duplicate captions (or images) never inflate recall:

- image i as query (i2t): ``#{wrong captions c : s[i, c] >= max over i's captions of s[i, .]}``,
  i.e. the best rank among its k captions;
- caption j as query (t2i): ``#{images m != j // k : s[m, j] >= s[j // k, j]}``.

The classic per-query argsort loop breaks ties by index order instead; on tie-free scores both give
the same numbers (``benchmarks/bench_recall.py`` checks it). Here every count comes from one
parallel numba pass over the matrix (no sorting); without numba, from a few vectorised numpy passes
over row chunks (about 10x slower, still far faster than sorting).
"""
from __future__ import annotations

import os
from typing import Any, Union

import numpy as np
import torch

try:
    import numba
except ImportError:  # numba is optional: the numpy passes compute the same counts
    numba = None
else:
    # Under GNU OpenMP (numba's first choice where present) a forked child that runs a parallel
    # kernel is terminated; prefer a fork-safe layer (tbb, else workqueue) unless the user chose one.
    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER = "forksafe"

ArrayLike = Union[np.ndarray, torch.Tensor]
RECALL_KS = (1, 5, 10)
CHUNK_ELEMENTS = 2**24  # rows per pass are chosen so each temporary has about this many entries


def ranks_i2t(sims: ArrayLike, captions_per_image: int = 5) -> np.ndarray:
    """0-based rank ``(n_images,)`` of each image's best caption, ties counted against it."""
    s = _as_scores(sims, captions_per_image)
    return _counts(s, captions_per_image)[0]


def ranks_t2i(sims: ArrayLike, captions_per_image: int = 5) -> np.ndarray:
    """0-based rank ``(n_captions,)`` of each caption's image, ties counted against it."""
    s = _as_scores(sims, captions_per_image)
    return _counts(s, captions_per_image)[2]


def recall_metrics(sims: ArrayLike, captions_per_image: int = 5) -> dict[str, Any]:
    """Retrieval metrics of an ``(n_images, k n_images)`` score matrix (numpy or torch).

    Returns ``{"i2t": {"r1", "r5", "r10", "medr", "meanr"}, "t2i": {...}, "rsum",
    "ties": {"i2t", "t2i"}, "n_images", "n_captions"}``: recalls in percent, ``medr`` =
    floor(median rank) + 1, ``meanr`` = mean rank + 1 (1-based), ``rsum`` the sum of the six
    recalls, ``ties`` the number of queries where some wrong item scores exactly the right score.
    """
    s = _as_scores(sims, captions_per_image)
    i2t_ranks, i2t_tied, t2i_ranks, t2i_tied = _counts(s, captions_per_image)
    i2t, t2i = _summary(i2t_ranks), _summary(t2i_ranks)
    return {
        "i2t": i2t,
        "t2i": t2i,
        "rsum": sum([i2t[f"r{k}"] for k in RECALL_KS] + [t2i[f"r{k}"] for k in RECALL_KS]),
        "ties": {"i2t": int(i2t_tied.sum()), "t2i": int(t2i_tied.sum())},
        "n_images": s.shape[0],
        "n_captions": s.shape[1],
    }


FOLD_IMAGES = 1000  # COCO 1K: the 5K test set as consecutive folds of 1,000 images


def fold_blocks(n_images: int, n_folds: int, captions_per_image: int = 5) -> list[tuple[slice, slice]]:
    """``(image rows, caption columns)`` of each of ``n_folds`` consecutive folds: fold f pairs
    images ``f m : (f+1) m`` with their own captions only (the f-th diagonal block)."""
    if n_folds < 1 or n_images % n_folds:
        raise ValueError(f"{n_images} images do not split into {n_folds} equal folds")
    m = n_images // n_folds
    mk = m * captions_per_image
    return [(slice(f * m, (f + 1) * m), slice(f * mk, (f + 1) * mk)) for f in range(n_folds)]


def protocol_folds(protocol: str, n_images: int) -> int:
    """How many folds a resolved protocol scores separately: ``1k`` one per 1,000 images, else 1."""
    return n_images // FOLD_IMAGES if protocol == "1k" else 1


def recall_metrics_folds(sims: ArrayLike, captions_per_image: int = 5, n_folds: int = 5) -> dict[str, Any]:
    """Mean of :func:`recall_metrics` over ``n_folds`` consecutive image folds (COCO 1K: 5 x 1000).

    Fold f scores images ``f m : (f+1) m`` against their own captions only (the f-th diagonal
    block). Every number is the mean over folds (``ties`` too, so it may be fractional;
    ``n_images``/``n_captions`` are a fold's sizes); ``"folds"`` keeps the per-fold dicts.
    """
    s = _as_scores(sims, captions_per_image)
    blocks = fold_blocks(s.shape[0], n_folds, captions_per_image)
    folds = [recall_metrics(s[rows, cols], captions_per_image) for rows, cols in blocks]
    mean = _mean_tree(folds)
    mean["n_images"], mean["n_captions"] = folds[0]["n_images"], folds[0]["n_captions"]
    mean["folds"] = folds
    return mean


def _as_scores(sims: ArrayLike, captions_per_image: int) -> np.ndarray:
    """A C-contiguous float numpy view/copy of ``sims`` that keeps every tie, shape-checked."""
    if isinstance(sims, torch.Tensor):
        sims = sims.detach().cpu()
        if sims.dtype in (torch.float16, torch.bfloat16):
            sims = sims.float()  # exact, and numpy has no bfloat16
        sims = sims.numpy()
    s = np.asarray(sims)
    if s.dtype == np.float16:
        s = s.astype(np.float32)
    elif s.dtype.kind in "biu":
        s = s.astype(np.float64)  # exact for integers below 2**53
    elif s.dtype not in (np.float32, np.float64):
        raise ValueError(f"sims must be a real-valued matrix, got dtype {s.dtype}")
    if s.ndim != 2:
        raise ValueError(f"sims must be 2-D (n_images, n_captions), got shape {s.shape}")
    if captions_per_image < 1:
        raise ValueError(f"captions_per_image must be >= 1, got {captions_per_image}")
    n_images, n_captions = s.shape
    if n_images == 0 or n_captions != captions_per_image * n_images:
        raise ValueError(f"sims has shape {s.shape}: expected (n_images, {captions_per_image} * n_images) "
                         f"with n_images >= 1, since caption j belongs to image j // {captions_per_image}")
    return np.ascontiguousarray(s)


def _counts(s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(i2t ranks ``(N,)``, i2t tied ``(N,)``, t2i ranks ``(kN,)``, t2i tied ``(kN,)``), 0-based ranks."""
    if numba is None:
        return (*_i2t(s, k), *_t2i(s, k))
    n, n_captions = s.shape
    pos = np.ascontiguousarray(s[np.arange(n_captions) // k, np.arange(n_captions)])  # (kN,)
    n_blocks = min(n, 4 * numba.get_num_threads())
    i2t_ranks, i2t_tied, t2i_at_least, t2i_equal, nans = _counts_kernel(s, k, pos, n_blocks)
    if nans:
        raise ValueError("sims contains NaN: a rank cannot be defined")
    # Both t2i counts include the correct image itself, exactly once.
    return i2t_ranks, i2t_tied, t2i_at_least.astype(np.int64) - 1, t2i_equal > 1


def _row_chunks(s: np.ndarray):
    """``(start, stop, block)`` row blocks of about CHUNK_ELEMENTS entries each."""
    step = max(1, CHUNK_ELEMENTS // s.shape[1])
    for a in range(0, s.shape[0], step):
        block = s[a:a + step]
        if np.isnan(block).any():
            raise ValueError("sims contains NaN: a rank cannot be defined")
        yield a, a + block.shape[0], block


def _i2t(s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(0-based ranks ``(N,)``, tied ``(N,)`` bool) with each image as query."""
    n = s.shape[0]
    ranks = np.empty(n, dtype=np.int64)
    tied = np.empty(n, dtype=bool)
    for a, b, block in _row_chunks(s):  # block: (r, kN)
        rows = np.arange(a, b)
        correct = np.take_along_axis(block, rows[:, None] * k + np.arange(k), axis=1)  # (r, k)
        best = correct.max(axis=1, keepdims=True)  # (r, 1)
        # No correct caption scores above `best`, so every caption counted by `above` is wrong.
        at_least = np.count_nonzero(block >= best, axis=1) - np.count_nonzero(correct == best, axis=1)  # (r,)
        above = np.count_nonzero(block > best, axis=1)  # (r,)
        ranks[a:b] = at_least
        tied[a:b] = at_least > above
    return ranks, tied


def _t2i(s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(0-based ranks ``(kN,)``, tied ``(kN,)`` bool) with each caption as query."""
    n_captions = s.shape[1]
    owner = np.arange(n_captions) // k  # image of each caption
    pos = s[owner, np.arange(n_captions)]  # (kN,) score of each caption with its image
    at_least = np.zeros(n_captions, dtype=np.int64)
    equal = np.zeros(n_captions, dtype=np.int64)
    for _, _, block in _row_chunks(s):  # block: (r, kN), rows are candidate images
        at_least += np.count_nonzero(block >= pos, axis=0)
        equal += np.count_nonzero(block == pos, axis=0)
    # Both counts include the correct image itself, exactly once.
    return at_least - 1, equal > 1


def _summary(ranks: np.ndarray) -> dict[str, float]:
    out = {f"r{k}": 100.0 * int(np.count_nonzero(ranks < k)) / len(ranks) for k in RECALL_KS}
    out["medr"] = float(np.floor(np.median(ranks))) + 1.0
    out["meanr"] = float(np.mean(ranks)) + 1.0
    return out


def _mean_tree(dicts: list[dict[str, Any]]) -> dict[str, Any]:
    """Element-wise mean (as floats) of dicts of numbers or nested such dicts, all with equal keys."""
    return {key: _mean_tree([d[key] for d in dicts]) if isinstance(dicts[0][key], dict)
            else float(np.mean([d[key] for d in dicts])) for key in dicts[0]}


if numba is not None:
    # No fastmath: it would let LLVM assume there are no NaNs and drop the `v != v` check.

    @numba.njit(cache=True)
    def _count_rows(s, k, pos, r0, r1, i2t_ranks, i2t_tied, t2i_at_least, t2i_equal):
        """Rows ``r0:r1``: i2t counts of each row, t2i counts added into this block's accumulators."""
        m = s.shape[1]
        nans = 0
        for i in range(r0, r1):
            best = s[i, i * k]
            for j in range(i * k + 1, (i + 1) * k):
                best = max(best, s[i, j])
            at_least = 0
            equal = 0
            for j in range(m):  # vectorised: compares and integer adds only
                v = s[i, j]
                at_least += v >= best
                equal += v == best
                nans += v != v
                t2i_at_least[j] += v >= pos[j]
                t2i_equal[j] += v == pos[j]
            correct_equal = 0  # correct captions tied with the best (at least the best itself)
            for j in range(i * k, (i + 1) * k):
                correct_equal += s[i, j] == best
            i2t_ranks[i] = at_least - correct_equal
            i2t_tied[i] = equal > correct_equal
        return nans

    @numba.njit(parallel=True, cache=True)
    def _counts_kernel(s, k, pos, n_blocks):
        """One pass over ``s`` (N, kN): blocks of rows in parallel, each with its own t2i counters."""
        n, m = s.shape
        i2t_ranks = np.empty(n, np.int64)
        i2t_tied = np.empty(n, np.bool_)
        t2i_at_least = np.zeros((n_blocks, m), np.int32)  # (blocks, kN); a block has < 2**31 rows
        t2i_equal = np.zeros((n_blocks, m), np.int32)  # (blocks, kN)
        nans = np.zeros(n_blocks, np.int64)
        step = (n + n_blocks - 1) // n_blocks
        for b in numba.prange(n_blocks):
            nans[b] = _count_rows(s, k, pos, b * step, min((b + 1) * step, n), i2t_ranks, i2t_tied,
                                  t2i_at_least[b], t2i_equal[b])
        return i2t_ranks, i2t_tied, t2i_at_least.sum(axis=0), t2i_equal.sum(axis=0), nans.sum()
