"""Contrast captions: one word of a known class swapped for another of the same class
(Suris et al., "Learning Words by Drawing Images", CVPR 2019), e.g. "a red circle above a square"
-> "a blue circle above a square" (colour) or "... below a square" (relation).

The classes default to the Shapes vocabulary; a multi-word member ("left of") is matched as a
phrase. "a"/"an" before a swapped word is corrected. A caption with no word of a class has no
swap of that class (the caller counts it; it is not an error).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .shapes import COLOURS, RELATIONS, SHAPES, SIZES

PLURAL = {"cross": "crosses"}
SHAPES_CLASSES: dict[str, tuple[tuple[str, ...], ...]] = {
    "colour": (COLOURS,),
    "shape": (SHAPES, tuple(PLURAL.get(s, s + "s") for s in SHAPES)),  # singulars swap with singulars
    "size": (SIZES,),
    "relation": (RELATIONS,),
}


def _find(tokens: list[str], phrase: tuple[str, ...]) -> list[int]:
    n = len(phrase)
    return [i for i in range(len(tokens) - n + 1) if tuple(tokens[i:i + n]) == phrase]


def _fix_article(tokens: list[str], at: int) -> list[str]:
    if at > 0 and tokens[at - 1] in ("a", "an"):
        tokens = list(tokens)
        tokens[at - 1] = "an" if tokens[at][:1] in "aeiou" else "a"
    return tokens


def swaps(caption: str, classes: dict = SHAPES_CLASSES, word_class: Optional[str] = None) -> list[tuple[str, str]]:
    """Every one-word (or one-phrase) swap of ``caption``: ``[(class, new caption), ...]``, without
    duplicates and never the caption itself; only ``word_class`` when given."""
    tokens = caption.lower().split()
    out, seen = [], {" ".join(tokens)}
    for name, groups in classes.items():
        if word_class is not None and name != word_class:
            continue
        for group in groups:
            phrases = [tuple(m.split()) for m in group]
            for phrase in phrases:
                for at in _find(tokens, phrase):
                    for other in phrases:
                        if other == phrase:
                            continue
                        new = _fix_article(tokens[:at] + list(other) + tokens[at + len(phrase):], at)
                        text = " ".join(new)
                        if text not in seen:
                            seen.add(text)
                            out.append((name, text))
    return out


def one_swap(caption: str, rng: np.random.Generator, classes: dict = SHAPES_CLASSES,
             word_class: Optional[str] = None) -> Optional[tuple[str, str]]:
    """One random swap of ``caption`` (None if it has no swappable word)."""
    options = swaps(caption, classes, word_class)
    return options[int(rng.integers(len(options)))] if options else None


def class_of_difference(original: str, swapped: str, classes: dict = SHAPES_CLASSES) -> Sequence[str]:
    """The classes whose members differ between two captions (a check for tests and audits)."""
    a, b = set(original.lower().split()), set(swapped.lower().split())
    diff = (a ^ b) - {"a", "an"}
    return sorted({name for name, groups in classes.items() for g in groups for m in g
                   if set(m.split()) & diff})
