"""``demo.py retrieve --gallery``: search an indexed gallery with a text or an image.

A text searches an image gallery, an image a caption gallery. The exact scan reads the gallery's
vectors from the file a chunk at a time; a gallery indexed with ``--ann`` whose shortlist passed
its recall check is searched through it (``exact=True`` scans anyway). ``rerank=K`` re-orders the
top ``K`` images of a text query by the fused score (evaluation/fused.py): the embedding score and
the decoder's likelihood of the query given each image, standardised over the ``K`` and weighted by
the weight picked on the run's val split for that ``K``, as ``evaluate.py --rerank K`` does.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Optional

import numpy as np
import torch

from data import DataError
from data.atomic import write_json_atomic
from data.datasets import encode_texts, image_transform
from data.images import open_rgb
from data.vocab import warn_unknown_words
from runfolder.checkpoint import CheckpointError
from runfolder.folder import load_trained, require_decoder

from .ann import deserialize, shortlist_search, usable
from .store import GalleryError, check_owner, model_digest, read_gallery, vector_views
from .topk import exact_search


def retrieve_gallery(run_dir: str, gallery: str, text: Optional[str] = None, image: Optional[str] = None,
                     k: int = 10, rerank: int = 0, checkpoint: str = "best", device: str = "cpu",
                     exact: bool = False, fused_weight: Optional[float] = None) -> list[dict]:
    """The best ``k`` gallery items for one query, best first: ``{"rank", "score", "path"}`` (image
    gallery) or ``{"rank", "score", "caption"}`` (caption gallery); ``score`` is the embedding
    score, and re-ranked rows also carry ``"fused"``."""
    import h5py

    if (text is None) == (image is None):
        raise DataError("give exactly one query: --text or --image")
    if text is not None and not text.strip():
        raise DataError("the query text is empty")
    if k < 1 or rerank < 0:
        raise DataError(f"-k must be at least 1 and --rerank at least 0, got {k} and {rerank}")
    cfg, vocab, model, _ = load_trained(run_dir, checkpoint)
    dev = torch.device(device)
    model.to(dev)
    g = read_gallery(gallery, vectors=False)
    check_owner(g, gallery, model_digest(model.matcher), run_dir)
    if text is not None and g.kind != "images":
        raise GalleryError(f"{gallery} holds captions: query it with --image (a text query searches an image gallery)")
    if image is not None and g.kind != "captions":
        raise GalleryError(f"{gallery} holds images: query it with --text (an image query searches a caption gallery)")
    if rerank and image is not None:
        raise DataError("--rerank re-orders the images of a text query; an image query has nothing to re-rank")
    with torch.no_grad():
        query = _encode_query(model, cfg, vocab, text, image, run_dir, dev)
    want = max(k, rerank)
    with h5py.File(gallery, "r") as f:
        vectors = vector_views(f, gallery)
        if usable(g.ann) and not exact:
            top_s, top_i = shortlist_search(deserialize(g.ann["index"]), query, vectors, g.branch_weights, g.measure,
                                            g.kind, want, max(int(g.ann["shortlist"]), want), int(g.ann["effort"]))
        else:
            top_s, top_i = exact_search(query, vectors, g.branch_weights, g.measure, g.kind, want)
        top_s, top_i = top_s[0], top_i[0]
        fused = None
        if rerank:
            require_decoder(model, "--rerank (its caption likelihood)", run_dir)
            head = np.sort(top_i[:rerank])
            grounded = torch.from_numpy(np.asarray(vectors["grounded"][head], dtype=np.float32))
            order = np.searchsorted(head, top_i[:rerank])
            weight = fused_weight if fused_weight is not None else val_fused_weight(
                gallery, g.model_sha256, model, cfg, vocab, rerank, dev)
            fused = _fused(model, vocab, cfg, text, grounded[order], top_s[:rerank], weight, dev)
    return _rows(g, top_s, top_i, fused, k)


def _encode_query(model, cfg, vocab, text, image, run_dir, dev) -> dict[str, np.ndarray]:
    if text is not None:
        warn_unknown_words(text, vocab)
        ids, lengths = encode_texts([text], vocab, cfg.data.max_caption_len)
        out = model.matcher.encode_captions(ids.to(dev), lengths)
    else:
        if cfg.model.image_encoder == "precomp":
            raise CheckpointError(f"{run_dir} was trained on precomputed features, so it cannot read image files")
        x = image_transform(cfg.data, train=False)(open_rgb(image))[None]
        out = model.matcher.encode_images(x.to(dev))
    return {b: v.float().cpu().numpy() for b, v in out.items()}


def _fused(model, vocab, cfg, text, grounded, emb_scores, weight, dev) -> np.ndarray:
    """Fused scores of the query with each of the ``K`` candidate images (their grounded vectors)."""
    from evaluation.fused import fused_scores

    ids, lengths = encode_texts([text], vocab, cfg.data.max_caption_len)
    n = len(grounded)
    with torch.no_grad():
        ll = model.decoder.log_likelihood(grounded.to(dev), ids.repeat(n, 1).to(dev), lengths.repeat(n))
    return fused_scores(emb_scores[None].astype(np.float64), ll.float().cpu().numpy()[None], weight)[0]


def _rows(g, top_s, top_i, fused, k) -> list[dict]:
    field = "path" if g.kind == "images" else "caption"
    order = list(range(len(top_i)))
    if fused is not None:  # the re-ranked head (stable: equal fused scores keep their embedding order), then the rest
        head = sorted(range(len(fused)), key=lambda r: -fused[r])
        order = head + order[len(fused):]
    out = []
    for rank, r in enumerate(order[:k], 1):
        row = {"rank": rank, "score": round(float(top_s[r]), 6), field: g.items[int(top_i[r])]}
        if fused is not None and r < len(fused):
            row["fused"] = round(float(fused[r]), 4)
        out.append(row)
    return out


def val_fused_weight(gallery: str, digest: str, model, cfg, vocab, k: int, dev) -> float:
    """The fused weight for re-ranking ``k`` candidates, picked on the run's val split (rsum), and
    remembered beside the gallery (``GALLERY.fused.json``, per model, ``k`` and caption prior)."""
    from evaluation.fused import val_weight

    side = gallery + ".fused.json"
    memo = {}
    if os.path.exists(side):
        try:
            memo = json.load(open(side, encoding="utf-8"))
        except (OSError, ValueError):
            memo = {}
    key = f"{digest}:{k}" + (":prior" if cfg.look.fused_caption_prior else "")  # weights picked before it differ
    if key in memo:
        return float(memo[key]["weight"])
    print("picking the fused weight on the run's val split (once per gallery and K)", file=sys.stderr)
    try:
        weight, val_rsum = val_weight(model, cfg, vocab, k, dev)
    except (DataError, OSError) as err:
        raise DataError(f"--rerank picks its weight on the run's val split, which is not readable here ({err}); "
                        "give the weight with --fused-weight W (0..1, the embedding's share)") from None
    memo[key] = {"weight": weight, "val_rsum": round(val_rsum, 2)}
    try:
        write_json_atomic(side, memo)
    except OSError:
        pass  # the weight is still used; it is only not remembered
    return weight
