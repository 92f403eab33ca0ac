"""Nearest-neighbour captioning baseline (Devlin et al. 2015, arXiv 1505.04467), in the run's embedding.

For each query image: its ``k`` nearest training images by image-image similarity, then, among
those images' captions, the one the run's matcher scores highest with the query. A decoder that
does not beat this has learnt less than retrieval over the training captions already gives.

Image-image similarity is the cosine of the l2-normalised image embeddings
(``models.similarity`` with ``measure="cosine"``), summed over the branches with the matcher's
branch weights. Under the cosine measure that is the run's own similarity; the order measure is
defined between an image and a caption (partial order, caption above image) and has no
image-image form, so cosine stands in for it. The caption choice uses the matcher's own
cross-modal score (``Matcher.paired_similarity``), whatever the measure.
"""
from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from config import DataConfig
from data.labelled import labelled_ids
from data.records import ImageSource, Split
from data.vocab import Vocabulary
from metrics.captioning import caption_metrics
from models import similarity

from .captioning import diversity
from .retrieval import encode_split

K = 5  # nearest training images whose captions are candidates
TRAIN_IMAGES = 5000  # training images searched: the first ones (labelled ones only, in semi-supervised runs)


def image_similarity(query: Mapping[str, torch.Tensor], pool: Mapping[str, torch.Tensor],
                     weights: Mapping[str, float]) -> torch.Tensor:
    """``(Q, N)`` image-image scores: branch cosines of the l2-normalised embeddings, weighted."""
    terms = [w * similarity(F.normalize(query[b], dim=1), F.normalize(pool[b], dim=1), "cosine")
             for b, w in weights.items() if w]
    if not terms:
        raise ValueError("every branch weight is 0: there is no image similarity")
    return sum(terms)


def nearest_neighbour_captions(query: Mapping[str, torch.Tensor], pool: Mapping[str, torch.Tensor],
                               pool_caption_emb: Mapping[str, torch.Tensor], pool_captions: Sequence[Sequence[str]],
                               pair_score: Callable[[dict, dict], torch.Tensor], weights: Mapping[str, float],
                               k: int = K, chunk: int = 256) -> list[str]:
    """One training caption per query image.

    Args:
        query: per branch, ``(Q, D)`` embeddings of the images to caption.
        pool: per branch, ``(N, D)`` embeddings of the training images.
        pool_caption_emb: per branch, ``(C, D)`` embeddings of the training captions, in the
            order of ``pool_captions`` flattened (image 0's captions, then image 1's, ...).
        pool_captions: the raw captions of each training image.
        pair_score: ``(images, captions) -> (P,)`` cross-modal scores of aligned rows
            (``Matcher.paired_similarity``).
        weights: branch -> weight of the image-image similarity (``Matcher.branch_weights``).
        k: nearest training images per query whose captions are candidates.
        chunk: queries scored at once (bounds the ``(chunk, N)`` similarity block and the
            ``(chunk * k * captions per image, D)`` gathered candidate rows).

    Returns:
        ``Q`` captions: for each query, the caption of one of its ``k`` nearest training images
        (cosine, :func:`image_similarity`) that ``pair_score`` rates highest with the query; a tie
        goes to the nearer image.
    """
    sizes = np.array([len(c) for c in pool_captions])
    if len(sizes) != len(next(iter(pool.values()))) or sizes.sum() != len(next(iter(pool_caption_emb.values()))):
        raise ValueError("pool, pool_caption_emb and pool_captions disagree on the number of images or captions")
    starts = np.concatenate([[0], np.cumsum(sizes)])
    flat = [c for caps in pool_captions for c in caps]
    n_query = len(next(iter(query.values())))
    out: list[str] = []
    for lo in range(0, n_query, chunk):
        part = {b: v[lo:lo + chunk] for b, v in query.items()}
        near = image_similarity(part, pool, weights).topk(min(k, len(sizes)), dim=1).indices  # (c, k), nearest first
        cand = [np.concatenate([np.arange(starts[i], starts[i + 1]) for i in row]) for row in near.tolist()]
        owner = torch.from_numpy(np.repeat(np.arange(len(cand)), [len(c) for c in cand]))  # (P,) query row
        idx = torch.from_numpy(np.concatenate(cand))  # (P,) caption index
        scores = pair_score({b: v[owner] for b, v in part.items()},
                            {b: v[idx] for b, v in pool_caption_emb.items()})  # (P,)
        for row, segment in enumerate(torch.split(scores, [len(c) for c in cand])):
            out.append(flat[int(cand[row][int(segment.argmax())])])  # argmax: the first of equal maxima
    return out


class _Rows(ImageSource):
    """Images ``ids`` of another source, numbered from 0."""

    def __init__(self, source: ImageSource, ids: Sequence[int]):
        self.source, self.ids, self.kind = source, [int(i) for i in ids], source.kind

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, index: int):
        return self.source.load(self.ids[index])

    def describe(self, index: int) -> str:
        return self.source.describe(self.ids[index])

    @property
    def feature_dim(self) -> int:
        return self.source.feature_dim


def training_pool(train: Split, max_images: int = TRAIN_IMAGES) -> Split:
    """The first ``max_images`` training images whose captions the run may use (the labelled ones
    in a semi-supervised run), as a split of their own."""
    ids = labelled_ids(train)[:max_images]  # sorted
    if len(ids) == train.num_images:
        return train  # every image, in order (and in-memory arrays keep their fast path)
    return Split(train.name, _Rows(train.images, ids), [train.captions[int(i)] for i in ids], train.source)


def nearest_neighbour_section(matcher, train: Split, split: Split, vocab: Vocabulary, data_cfg: DataConfig,
                              device: torch.device, batch_size: int = 256, img: Optional[dict] = None,
                              meteor: bool = True, k: int = K, max_images: int = TRAIN_IMAGES,
                              progress: bool = False) -> dict:
    """``captioning.nearest_neighbour``: the baseline's captions of ``split`` scored as the decoder's
    are (``caption_metrics``), with their ``diversity``. ``img``: ``split``'s image embeddings when
    the caller already has them; the training pool is encoded here."""
    pool = training_pool(train, max_images)
    pool_img, pool_cap = encode_split(matcher, pool, vocab, data_cfg, device, batch_size, progress)
    if img is None:
        img = encode_split(matcher, split, vocab, data_cfg, device, batch_size, progress, False)[0]
    captions = nearest_neighbour_captions(img, pool_img, pool_cap, pool.captions, matcher.paired_similarity,
                                          matcher.branch_weights, k)
    metrics = caption_metrics({i: caps for i, caps in enumerate(split.captions)}, dict(enumerate(captions)), meteor)
    metrics["diversity"] = diversity(captions)
    searched = "labelled training images" if "labelled" in train.extra else "training images"
    metrics.update(k=k, train_images=pool.num_images,
                   note=f"caption of one of the {k} training images nearest in the run's image embedding "
                        f"(cosine), the one the matcher scores highest with the image; searched the first "
                        f"{pool.num_images} {searched}")
    return metrics
