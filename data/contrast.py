"""Contrast captions: one word of a known class swapped for another of the same class
(Suris et al., "Learning Words by Drawing Images", CVPR 2019), e.g. "a red circle above a square"
-> "a blue circle above a square" (colour) or "... below a square" (relation).

The classes default to the Shapes vocabulary; a multi-word member ("left of") is matched as a
phrase. "a"/"an" before a swapped word is corrected. A caption with no word of a class has no
swap of that class (the caller counts it; it is not an error).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from .datasets import pad_captions
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


class TokenSwapper:
    """:func:`swaps` on padded id tensors, for making contrast captions inside a training step.

    Members whose words are not all in the vocabulary are left out of their group.
    """

    def __init__(self, vocab, classes: dict = SHAPES_CLASSES):
        self.vocab = vocab
        self.groups = []  # (class, [id tuple per member], [first letter per member])
        for name, groups in classes.items():
            for group in groups:
                members = [m for m in group if all(w in vocab.index for w in m.split())]
                if len(members) >= 2:
                    self.groups.append((name, [tuple(vocab.index[w] for w in m.split()) for m in members],
                                        [m[0] for m in members]))
        self.articles = {vocab.index.get("a"), vocab.index.get("an")} - {None}

    def swap_one(self, ids: list[int], rng: np.random.Generator) -> Optional[list[int]]:
        """One random class-member swap of a caption's ids (``<start>`` ... ``<end>``), or None."""
        options = []
        for g, (_, members, _) in enumerate(self.groups):
            for m, phrase in enumerate(members):
                n = len(phrase)
                options += [(g, m, at) for at in range(len(ids) - n + 1) if tuple(ids[at:at + n]) == phrase]
        if not options:
            return None
        g, m, at = options[int(rng.integers(len(options)))]
        _, members, initials = self.groups[g]
        other = int(rng.choice([k for k in range(len(members)) if k != m]))
        new = ids[:at] + list(members[other]) + ids[at + len(members[m]):]
        if at > 0 and new[at - 1] in self.articles:
            vowel = initials[other] in "aeiou"
            new[at - 1] = self.vocab.index.get("an" if vowel else "a", new[at - 1])
        return new

    def __call__(self, captions: torch.Tensor, lengths: torch.Tensor,
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Contrast captions ``(B, T')``, their lengths and a ``(B,)`` mask of rows that had a swap
        (rows without one repeat their caption and are masked out)."""
        rows, ok = [], []
        for ids, n in zip(captions.tolist(), lengths.tolist()):
            new = self.swap_one(ids[:n], rng)
            ok.append(new is not None)
            rows.append(torch.tensor(new if new is not None else ids[:n]))
        padded, new_lengths = pad_captions(rows)
        return padded, new_lengths, torch.tensor(ok)
