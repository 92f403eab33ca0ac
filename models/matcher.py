"""The two-branch image-text embedding (the "match" part of LIM)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from config import ModelConfig

from .image_encoder import ImageEncoder
from .modality import ModalityClassifier
from .similarity import paired_similarity, similarity
from .text_encoder import TextEncoder

BRANCHES = ("abstract", "grounded")


class Matcher(nn.Module):
    """Image and text encoders with two branches each; a pair's score is the weighted sum of the
    branch similarities (``abstract_weight``, ``grounded_weight``)."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, image_feature_dim: Optional[int] = None):
        super().__init__()
        self.measure = cfg.measure
        self.branch_weights = {"abstract": cfg.abstract_weight, "grounded": cfg.grounded_weight}
        self.image_encoder = ImageEncoder(cfg, image_feature_dim)
        self.text_encoder = TextEncoder(cfg, vocab_size)
        self.modality: Optional[ModalityClassifier] = None
        if cfg.invariant_weight > 0:
            self.modality = ModalityClassifier(len(BRANCHES) * cfg.embed_dim, cfg.invariant_hidden)

    def forward(
        self, images: torch.Tensor, captions: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Both encoders at once (what DDP wraps during training)."""
        return self.image_encoder(images), self.text_encoder(captions, lengths)

    def encode_images(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.image_encoder(images)

    def encode_captions(self, captions: torch.Tensor, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.text_encoder(captions, lengths)

    def paired_similarity(self, images: dict[str, torch.Tensor], captions: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(P,)`` weighted branch scores of aligned rows (image ``p`` with caption ``p``)."""
        terms = [w * paired_similarity(images[b], captions[b], self.measure) for b, w in self.branch_weights.items() if w]
        if not terms:
            raise ValueError("model.abstract_weight and model.grounded_weight are both 0")
        return sum(terms)

    def paired_cosine(self, images: dict[str, torch.Tensor], captions: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(P,)`` cosine of aligned rows, averaged over the branches by their weights, whatever the
        measure (the CLIP-S-style reference-free score reads it)."""
        weights = {b: w for b, w in self.branch_weights.items() if w}
        if not weights:
            raise ValueError("model.abstract_weight and model.grounded_weight are both 0")
        total = sum(w * torch.nn.functional.cosine_similarity(images[b], captions[b], dim=1) for b, w in weights.items())
        return total / sum(weights.values())

    def similarity(self, images: dict[str, torch.Tensor], captions: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(N_images, N_captions)`` weighted sum of the branch similarities."""
        total = None
        for branch, weight in self.branch_weights.items():
            if weight == 0:
                continue
            s = weight * similarity(images[branch], captions[branch], self.measure)
            total = s if total is None else total + s
        if total is None:
            raise ValueError("model.abstract_weight and model.grounded_weight are both 0")
        return total
