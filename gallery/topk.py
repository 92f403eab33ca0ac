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

from models.similarity import numba_available, order_similarity_array, similarity

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
    if numba_available():
        return order_similarity_array(images, captions)
    return similarity(torch.from_numpy(np.array(images)), torch.from_numpy(np.array(captions)), "order").numpy()


def _chunk_best(s: np.ndarray, offset: int, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per row of ``s (Q, n)``, its ``k`` best plus every item tied with its k-th (so that the
    merge can keep the lowest indices among ties); NaN never wins. One partition for all rows."""
    if np.isnan(s).any():
        s = np.where(np.isnan(s), -np.inf, s)
    n = s.shape[1]
    if n <= k:
        idx = np.arange(n)
        return [(row, idx + offset) for row in s]
    part = np.argpartition(s, n - k, axis=1)[:, n - k:]  # (Q, k): the k largest, in no order
    vals = np.take_along_axis(s, part, 1)
    kth = vals.min(axis=1)  # (Q,)
    tied = np.flatnonzero((s >= kth[:, None]).sum(axis=1) > k)  # rows where ties cross the cut
    out = [(vals[q], part[q] + offset) for q in range(s.shape[0])]
    for q in tied:
        idx = np.flatnonzero(s[q] >= kth[q])
        out[q] = (s[q, idx], idx + offset)
    return out


Hits = tuple[np.ndarray, np.ndarray]  # (scores, gallery indices)


def merge(best: Hits, new: Hits, k: int) -> Hits:
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
        for q, hits in enumerate(_chunk_best(s, offset, k)):
            best[q] = merge(best[q], hits, k)
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
                 measure: str, gallery_kind: str, k: int, chunk_bytes: int = CHUNK_BYTES) -> Hits:
    """Exact top ``k`` of every query over the whole gallery, ``chunk_bytes`` of it at a time."""
    used = {b: v for b, v in vectors.items() if weights.get(b)}
    dim = sum(v.shape[1] for v in used.values())
    n_queries = len(next(iter(query.values())))
    q32 = {b: np.asarray(query[b], dtype=np.float32) for b in used}
    chunks = ((lo, scores(q32, part, weights, measure, gallery_kind))
              for lo, part in iter_chunks(used, chunk_rows(dim, chunk_bytes)))
    return topk_chunks(chunks, n_queries, k)
