"""Approximate search: a faiss index gives a shortlist, which is re-scored exactly.

The index holds the branch-weighted vectors side by side, so that one inner product (cosine runs)
or one L2 distance (order runs, a proxy: ``sum_b w_b ||c_b - i_b||^2`` bounds the order violation
from above) covers every branch. The shortlist is used only when, on a sample of queries at index
time, its re-scored top 10 holds at least :data:`MIN_RECALL` of the exact scan's top 10 at the
cheapest search effort that reaches it (:func:`tune`); the effort and the measured recall are
stored in the gallery either way. faiss is optional: ``pip install -e ".[faiss]"``.
"""
from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from .store import GalleryError
from .topk import exact_search, scores, topk_chunks

ANN_KINDS = ("hnsw", "ivf")
MIN_RECALL = 0.99
DEFAULT_SHORTLIST = 200


def faiss_module():
    try:
        import faiss
    except ImportError:
        raise GalleryError('--ann needs faiss: pip install -e ".[faiss]" (faiss-cpu)') from None
    return faiss


def _side(vectors: Mapping[str, np.ndarray], weights: Mapping[str, float], measure: str, query: bool) -> np.ndarray:
    """The concatenated vectors faiss sees: for cosine the query side carries the weights (inner
    product), for order both sides carry sqrt(weight) (squared L2)."""
    parts = []
    for b, w in weights.items():
        if not w:
            continue
        scale = (w if query else 1.0) if measure == "cosine" else np.sqrt(w)
        parts.append(np.asarray(vectors[b], dtype=np.float32) * np.float32(scale))
    return np.ascontiguousarray(np.concatenate(parts, axis=1))


def build_index(vectors: Mapping[str, np.ndarray], weights: Mapping[str, float], measure: str, kind: str,
                seed: int = 0, chunk: int = 65536):
    """A faiss index over the gallery (``kind``: ``hnsw`` or ``ivf``). ``vectors`` may be memory
    maps: they are read ``chunk`` rows at a time, so the index's own copy is the only full one."""
    faiss = faiss_module()
    if kind not in ANN_KINDS:
        raise GalleryError(f"--ann must be one of {ANN_KINDS}, got {kind!r}")
    used = {b: v for b, v in vectors.items() if weights.get(b)}
    n, d = len(next(iter(used.values()))), sum(v.shape[1] for v in used.values())
    metric = faiss.METRIC_INNER_PRODUCT if measure == "cosine" else faiss.METRIC_L2
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, 32, metric)
        index.hnsw.efConstruction = 80
    else:
        nlist = max(1, min(4096, int(np.sqrt(n)), n // 39))  # faiss wants >= 39 training points a list
        quantizer = faiss.IndexFlatIP(d) if metric == faiss.METRIC_INNER_PRODUCT else faiss.IndexFlatL2(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, metric)
        rows = np.sort(np.random.default_rng(seed).choice(n, 40 * nlist, replace=False)) if n > 40 * nlist \
            else np.arange(n)
        index.train(_side({b: v[rows] for b, v in used.items()}, weights, measure, query=False))
    for lo in range(0, n, chunk):
        index.add(_side({b: v[lo:lo + chunk] for b, v in used.items()}, weights, measure, query=False))
    return index


def efforts(index) -> list[int]:
    """The search efforts :func:`tune` tries, cheapest first: IVF's nprobe (lists visited) or
    HNSW's efSearch (candidates kept while walking the graph)."""
    faiss = faiss_module()
    if isinstance(index, faiss.IndexIVF):
        return sorted({min(index.nlist, 2 ** p) for p in range(0, 13)})
    return [16 * 2 ** p for p in range(8)]  # 16 .. 2048


def set_search_effort(index, effort: int) -> None:
    faiss = faiss_module()
    if isinstance(index, faiss.IndexIVF):
        index.nprobe = int(effort)
    elif isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = int(effort)


def serialize(index) -> np.ndarray:
    return faiss_module().serialize_index(index)


def deserialize(data: np.ndarray):
    return faiss_module().deserialize_index(np.asarray(data, dtype=np.uint8))


def shortlist_search(index, query: Mapping[str, np.ndarray], vectors: Mapping[str, "np.ndarray"],
                     weights: Mapping[str, float], measure: str, gallery_kind: str, k: int,
                     shortlist: int, effort: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """faiss's ``shortlist`` nearest (searched with ``effort``, else the index's own setting),
    re-scored exactly; the top ``k`` of them per query."""
    if effort is not None:
        set_search_effort(index, effort)
    _, cand = index.search(_side(query, weights, measure, query=True), shortlist)  # (Q, S), -1 = none
    union = np.unique(cand[cand >= 0])  # sorted: h5py reads rows in increasing order, once per batch
    rows = {b: np.asarray(v[union], dtype=np.float32) for b, v in vectors.items() if weights.get(b)}
    out_s, out_i = [], []
    for q in range(cand.shape[0]):
        at = np.searchsorted(union, np.unique(cand[q][cand[q] >= 0]))  # this query's rows of ``union``
        s = scores({b: query[b][q:q + 1] for b in rows}, {b: r[at] for b, r in rows.items()}, weights, measure,
                   gallery_kind)  # (1, |at|)
        top_s, top_i = topk_chunks([(0, s)], 1, k)
        out_s.append(top_s[0])
        out_i.append(union[at][top_i[0]])
    width = min(len(s) for s in out_s)
    return np.stack([s[:width] for s in out_s]), np.stack([i[:width] for i in out_i])


def tune(index, sample: Mapping[str, np.ndarray], vectors: Mapping[str, np.ndarray], weights: Mapping[str, float],
         measure: str, gallery_kind: str, shortlist: int, k: int = 10) -> tuple[int, float]:
    """The cheapest search effort whose shortlist returns at least :data:`MIN_RECALL` of the exact
    top ``k`` on the ``sample`` queries (mean share), and that recall; if none does, the largest
    effort and its recall."""
    k = min(k, len(next(iter(vectors.values()))))
    _, exact = exact_search(sample, vectors, weights, measure, gallery_kind, k)
    recall = 0.0
    for effort in efforts(index):
        _, approx = shortlist_search(index, sample, vectors, weights, measure, gallery_kind, k, shortlist, effort)
        recall = float(np.mean([len(set(e.tolist()) & set(a.tolist())) / k for e, a in zip(exact, approx)]))
        if recall >= MIN_RECALL:
            break
    return effort, recall


def ann_record(index, kind: str, shortlist: int, effort: int, recall: float, sample_note: str) -> dict:
    return {"index": serialize(index), "kind": kind, "shortlist": int(shortlist), "effort": int(effort),
            "recall_at_10": round(recall, 4), "sample": sample_note, "used": bool(recall >= MIN_RECALL)}


def usable(ann: Optional[dict]) -> bool:
    return bool(ann) and bool(ann.get("used"))
