"""The chunked exact scan against a naive full sort (gallery/topk.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gallery.topk import exact_search, topk_chunks
from models.similarity import similarity


def naive(query, vectors, weights, measure, kind, k):
    """Every score through models.similarity, then a Python sort: higher first, lower index among ties."""
    total = 0
    for b, w in weights.items():
        q, g = torch.from_numpy(query[b]).double(), torch.from_numpy(vectors[b]).double()
        s = similarity(g, q, measure, backend="torch").T if kind == "images" else similarity(q, g, measure,
                                                                                            backend="torch")
        total = total + w * s
    s = total.float().numpy()
    idx = [sorted(range(s.shape[1]), key=lambda j: (-s[q, j], j))[:k] for q in range(s.shape[0])]
    return np.take_along_axis(s, np.array(idx), 1), np.array(idx)


def gallery(n, d, measure, seed, dup=True):
    rng = np.random.default_rng(seed)
    vec = {b: np.abs(rng.normal(size=(n, d))).astype(np.float32) for b in ("abstract", "grounded")}
    if measure == "cosine":
        vec = {b: v / np.linalg.norm(v, axis=1, keepdims=True) for b, v in vec.items()}
    if dup:  # exact ties: repeated rows, far apart, across chunk borders
        for b in vec:
            vec[b][n - 7] = vec[b][3]
            vec[b][n // 2] = vec[b][3]
            vec[b][5] = vec[b][1]
    return vec


@pytest.mark.parametrize("measure", ["order", "cosine"])
@pytest.mark.parametrize("kind", ["images", "captions"])
@pytest.mark.parametrize("chunk_bytes", [3 * 4 * 16, 10**9])
def test_chunked_topk_equals_full_sort_with_ties(measure, kind, chunk_bytes):
    n, d = 53, 8
    vec = gallery(n, d, measure, 0)
    query = {b: v[[3, 1, 20]] * np.float32(0.9) for b, v in gallery(n, d, measure, 1, dup=False).items()}
    query = {b: np.concatenate([q, vec[b][[3]]]) for b, q in query.items()}  # one query equal to a tied row
    weights = {"abstract": 0.5, "grounded": 0.5}
    for k in (1, 4, 12, n, n + 5):
        s, i = exact_search(query, vec, weights, measure, kind, k, chunk_bytes=chunk_bytes)
        ref_s, ref_i = naive(query, vec, weights, measure, kind, k)
        np.testing.assert_array_equal(i, ref_i)
        np.testing.assert_allclose(s, ref_s, rtol=1e-5, atol=1e-6)


def test_one_branch_weight_zero_ignores_that_branch():
    vec = gallery(30, 6, "order", 2, dup=False)
    query = {b: v[:2] for b, v in gallery(30, 6, "order", 3, dup=False).items()}
    junk = {"abstract": vec["abstract"], "grounded": np.full_like(vec["grounded"], np.nan)}
    s, i = exact_search(query, junk, {"abstract": 1.0, "grounded": 0.0}, "order", "images", 5)
    ref_s, ref_i = naive(query, vec, {"abstract": 1.0}, "order", "images", 5)
    np.testing.assert_array_equal(i, ref_i)
    np.testing.assert_allclose(s, ref_s, rtol=1e-5, atol=1e-6)


def test_ties_keep_the_lowest_index_whatever_the_chunking():
    scores = np.array([[1.0, 2.0, 2.0, 0.5, 2.0, 2.0, 3.0]], dtype=np.float32)
    for width in (1, 2, 3, 7):
        chunks = [(lo, scores[:, lo:lo + width]) for lo in range(0, scores.shape[1], width)]
        s, i = topk_chunks(chunks, 1, 3)
        assert i.tolist() == [[6, 1, 2]] and s.tolist() == [[3.0, 2.0, 2.0]]
    with pytest.raises(ValueError):
        topk_chunks([(0, scores)], 1, 0)
