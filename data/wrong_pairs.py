"""Inject known wrong (image, caption) pairs into a training split, for measuring wrong-pair detection.

``data.wrong_fraction=F`` replaces ``round(F * #captions)`` training captions, chosen uniformly,
each with a caption of another image (drawn from the original captions, so a replaced caption is
never itself a replacement). Deterministic in ``data.wrong_seed``; the replaced positions and
where their text came from are recorded in ``split.extra["wrong_pairs"]`` (train.py writes them to
``wrong_pairs.json`` in the run folder).
"""
from __future__ import annotations

import numpy as np

from .records import DataError, Split


def inject_wrong_pairs(split: Split, fraction: float, seed: int = 0) -> Split:
    """A copy of ``split`` with a ``fraction`` of its captions swapped in from other images.

    ``extra["wrong_pairs"]`` = ``{"fraction", "seed", "replaced": [[caption, source_caption], ...]}``
    with flat caption indices (caption k belongs to image k // captions_per_image), sorted.

    Raises:
        DataError: ``fraction`` is outside [0, 1), or the split has fewer than two images.
    """
    if not 0 <= fraction < 1:
        raise DataError(f"data.wrong_fraction must be in [0, 1), got {fraction}")
    if split.num_images < 2 and fraction > 0:
        raise DataError(f"{split.name}: wrong pairs need at least two images, the split has {split.num_images}")
    flat = split.flat_captions()
    owner = np.repeat(np.arange(split.num_images), [len(c) for c in split.captions])  # (M,) image of each caption
    rng = np.random.default_rng([seed, 7919])
    chosen = np.sort(rng.choice(len(flat), size=int(round(fraction * len(flat))), replace=False))
    sources = rng.integers(0, len(flat), size=len(chosen))
    for _ in range(100):  # redraw the few sources that landed on the same image
        same = owner[sources] == owner[chosen]
        if not same.any():
            break
        sources[same] = rng.integers(0, len(flat), size=int(same.sum()))
    else:
        raise DataError(f"{split.name}: could not find captions of other images to swap in")
    new_flat = list(flat)
    for c, s in zip(chosen, sources):
        new_flat[c] = flat[s]
    captions, start = [], 0
    for caps in split.captions:
        captions.append(new_flat[start:start + len(caps)])
        start += len(caps)
    extra = dict(split.extra)
    extra["wrong_pairs"] = {"fraction": fraction, "seed": seed,
                            "replaced": [[int(c), int(s)] for c, s in zip(chosen, sources)]}
    return Split(split.name, split.images, captions, split.source, split.truncated, split.padded, extra)
