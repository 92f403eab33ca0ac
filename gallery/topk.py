"""Exact top-K over a gallery, chunk by chunk, in bounded memory.

Scores are the run's: ``sum_b w_b * s(query_b, item_b)`` over the branches, ``s`` the cosine (an
inner product: the encoders l2-normalise) or the order similarity (models/similarity.py). Order
has no inner-product form; its scan runs the numba kernel, parallel over the chunk's gallery rows,
for a whole batch of queries at once. The order of equal scores is fixed: the lower gallery index
first, in every chunk size, so a chunked scan equals a full sort.
"""
from __future__ import annotations

from typing import Iterable, Iterator, Mapping

import numpy as np
import torch

from models.similarity import numba_available, order_similarity_numba, similarity

CHUNK_BYTES = 64 * 2**20  # gallery bytes read (and converted to float32) per chunk


def chunk_rows(dim: int, chunk_bytes: int = CHUNK_BYTES) -> int:
    """Rows per chunk so that a float32 chunk of ``dim`` columns (all branches) is about ``chunk_bytes``."""
    return max(1, chunk_bytes // max(1, 4 * dim))


def scores(query: Mapping[str, np.ndarray], items: Mapping[str, np.ndarray], weights: Mapping[str, float],
           measure: str, gallery_kind: str) -> np.ndarray:
    """``(Q, n)`` scores of ``Q`` queries against ``n`` gallery items (float32 arrays per branch).

    ``gallery_kind`` says which side the gallery is: ``"images"`` (the queries are captions) or
    ``"captions"`` (the queries are images); it matters for the asymmetric order measure.
    """
    total = None
    for branch, w in weights.items():
        if not w:
            continue
        q, g = query[branch], items[branch]
        if measure == "cosine":
            s = q @ g.T  # (Q, n)
        elif gallery_kind == "images":
            s = _order(g, q).T  # S(image = item, caption = query)
        else:
            # S(i, c) = -sum max(0, c - i)^2 with i = query, c = item equals the kernel's
            # S(i', c') with i' = -c, c' = -i: gallery rows stay the kernel's parallel unit.
            s = _order(-g, -q).T
        total = w * s if total is None else total + w * s
    if total is None:
        raise ValueError("every branch weight is 0")
    return np.asarray(total, dtype=np.float32)


def _order(images: np.ndarray, captions: np.ndarray) -> np.ndarray:
    im, cap = torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(np.ascontiguousarray(captions))
    if numba_available():
        return order_similarity_numba(im, cap).numpy()
    return similarity(im, cap, "order").numpy()


def _best_of_row(s: np.ndarray, offset: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of one row of scores, plus every item tied with the k-th (so that a later
    sort can keep the lowest indices among ties); NaN never wins."""
    s = np.where(np.isnan(s), -np.inf, s)
    if len(s) > k:
        kth = np.partition(s, len(s) - k)[len(s) - k]
        idx = np.flatnonzero(s >= kth)
    else:
        idx = np.arange(len(s))
    return s[idx], idx + offset


def merge(best: tuple[np.ndarray, np.ndarray], new: tuple[np.ndarray, np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep the ``k`` best of two candidate sets: higher score first, the lower index among equal scores."""
    s = np.concatenate([best[0], new[0]])
    i = np.concatenate([best[1], new[1]])
    order = np.lexsort((i, -s))[:k]
    return s[order], i[order]


def topk_chunks(chunks: Iterable[tuple[int, np.ndarray]], n_queries: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` per query over ``(offset, scores (Q, n))`` chunks: ``scores (Q, k')``, ``indices
    (Q, k')`` with ``k' = min(k, items seen)``, best first, ties in index order."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    best = [(np.zeros(0, np.float32), np.zeros(0, np.int64)) for _ in range(n_queries)]
    for offset, s in chunks:
        for q in range(n_queries):
            best[q] = merge(best[q], _best_of_row(s[q], offset, k), k)
    width = min(len(b[0]) for b in best) if best else 0
    return np.stack([b[0][:width] for b in best]), np.stack([b[1][:width] for b in best])


def iter_chunks(vectors: Mapping[str, "np.ndarray"], rows: int, start: int = 0,
                stop: int | None = None) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """``(offset, {branch: float32 rows})`` chunks of arrays or h5py datasets (read one chunk at a time)."""
    n = len(next(iter(vectors.values()))) if stop is None else stop
    for lo in range(start, n, rows):
        hi = min(lo + rows, n)
        yield lo, {b: np.asarray(v[lo:hi], dtype=np.float32) for b, v in vectors.items()}


def exact_search(query: Mapping[str, np.ndarray], vectors: Mapping[str, "np.ndarray"], weights: Mapping[str, float],
                 measure: str, gallery_kind: str, k: int, chunk_bytes: int = CHUNK_BYTES) -> tuple[np.ndarray, np.ndarray]:
    """Exact top ``k`` of every query over the whole gallery, ``chunk_bytes`` of it at a time."""
    used = {b: v for b, v in vectors.items() if weights.get(b)}
    dim = sum(v.shape[1] for v in used.values())
    n_queries = len(next(iter(query.values())))
    q32 = {b: np.asarray(query[b], dtype=np.float32) for b in used}
    chunks = ((lo, scores(q32, part, weights, measure, gallery_kind))
              for lo, part in iter_chunks(used, chunk_rows(dim, chunk_bytes)))
    return topk_chunks(chunks, n_queries, k)
