"""Keep captions for a fraction of the training images only (semi-supervised captioning).

``data.labelled_fraction=F`` marks ``max(1, round(F * #images))`` training images, chosen
uniformly and deterministically in ``data.labelled_seed``, as labelled; only their captions reach
the vocabulary, the matcher, the decoder and the GAN. The rest are unlabelled images (stage 2 of
semi-supervised captioning learns from them). The split keeps every image so ids stay the
dataset's; the choice is recorded in ``split.extra["labelled"]`` (train.py writes it to
``labelled_images.json`` in the run folder).
"""
from __future__ import annotations

import numpy as np

from .records import DataError, Split


def labelled_images(num_images: int, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted ids of the labelled images: ``max(1, round(fraction * num_images))`` of them."""
    if not 0 < fraction <= 1:
        raise DataError(f"data.labelled_fraction must be in (0, 1], got {fraction}")
    if num_images < 1:
        raise DataError("data.labelled_fraction: the training split has no images")
    n = max(1, int(round(fraction * num_images)))
    rng = np.random.default_rng([seed, 104729])
    return np.sort(rng.choice(num_images, size=n, replace=False))


def mark_labelled(split: Split, fraction: float, seed: int = 0) -> Split:
    """A copy of ``split`` whose ``extra["labelled"]`` = ``{"fraction", "seed", "images": [...]}``."""
    chosen = labelled_images(split.num_images, fraction, seed)
    extra = dict(split.extra)
    extra["labelled"] = {"fraction": fraction, "seed": seed, "images": chosen.tolist()}
    return Split(split.name, split.images, split.captions, split.source, split.truncated, split.padded, extra)


def labelled_ids(split: Split) -> np.ndarray:
    """The labelled image ids of ``split`` (every image when nothing was marked)."""
    marked = split.extra.get("labelled")
    return np.arange(split.num_images) if marked is None else np.asarray(marked["images"], dtype=np.int64)


def unlabelled_ids(split: Split) -> np.ndarray:
    """The images whose captions the model must not see (empty when every image is labelled)."""
    mask = np.ones(split.num_images, dtype=bool)
    mask[labelled_ids(split)] = False
    return np.flatnonzero(mask)


def labelled_captions(split: Split) -> list[str]:
    """The captions the model may learn from (e.g. for the vocabulary), in protocol order."""
    return [c for i in labelled_ids(split) for c in split.captions[int(i)]]
