"""Does the generator draw each word? A swap test of imagined images, per word class.

Each image imagined from caption ``c`` is scored, under a separately trained evaluator, against
``c`` and against one seeded one-word swap ``c'`` of each class (colour, shape, size, relation;
:func:`data.contrast.swaps`); it is right when ``s(image, c) > s(image, c')``. The real image of
the same caption, scored the same way, gives the ceiling the evaluator allows; 50% is chance. A
generator that draws colours but not shapes scores near the real images on colour swaps and near
50% on shape swaps: the shape-swapped images it imagines are then no shape negatives at all.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable

import numpy as np
import torch

from data.contrast import SHAPES_CLASSES, swaps


def swap_picks(texts: list[str], seed: int = 0, classes: dict = SHAPES_CLASSES) -> list[tuple[int, str, str]]:
    """``(row, class, swapped caption)``: for each caption and each class it has a word of, one swap
    drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    picks = []
    for row, text in enumerate(texts):
        by_class: dict[str, list[str]] = defaultdict(list)
        for name, new in swaps(text, classes):
            by_class[name].append(new)
        for name in classes:
            options = by_class.get(name)
            if options:
                picks.append((row, name, options[int(rng.integers(len(options)))]))
    return picks


@torch.no_grad()
def swap_test(matcher, images: dict[str, dict], text_emb: dict, picks: list[tuple[int, str, str]],
              encode: Callable[[list[str]], dict], classes: dict = SHAPES_CLASSES) -> dict:
    """``{class: {"pairs": n, name: % right for each name in images}}`` (classes without picks are
    left out). ``images``: per name (``"imagined"``, ``"real"``) the evaluator's embeddings of one
    image per caption; ``text_emb``: the captions'; ``encode``: texts -> embeddings."""
    if not picks:
        return {}
    swapped_texts = sorted({t for _, _, t in picks})
    column = {t: n for n, t in enumerate(swapped_texts)}
    swapped = encode(swapped_texts)
    out = {}
    for name in classes:
        mine = [(row, column[t]) for row, c, t in picks if c == name]
        if not mine:
            continue
        rows = torch.tensor([r for r, _ in mine])
        cols = torch.tensor([c for _, c in mine])
        own = {k: v[rows] for k, v in text_emb.items()}
        other = {k: v[cols] for k, v in swapped.items()}
        entry: dict = {"pairs": len(mine)}
        for kind, emb in images.items():
            picked = {k: v[rows] for k, v in emb.items()}
            right = matcher.paired_similarity(picked, own) > matcher.paired_similarity(picked, other)
            entry[kind] = round(100 * float(right.float().mean()), 1)
        out[name] = entry
    return out
