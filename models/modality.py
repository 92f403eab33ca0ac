"""A modality-invariant embedding (ACMR, Wang et al. 2017; Liu et al., ACM TOMM 2019): a small
classifier tells image vectors from caption vectors behind a gradient-reversal layer, so the
encoders learn to make the two modalities indistinguishable while the ranking loss keeps pairs close."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.scale * grad, None


def reverse_gradient(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward; the gradient flowing back is multiplied by ``-scale``."""
    return _Reverse.apply(x, scale)


def ramp(progress: float, gamma: float = 10.0) -> float:
    """The usual adversarial weight schedule (Ganin and Lempitsky): ``2 / (1 + exp(-gamma p)) - 1``, 0 -> 1."""
    return 2.0 / (1.0 + math.exp(-gamma * min(max(progress, 0.0), 1.0))) - 1.0


class ModalityClassifier(nn.Module):
    """``(N, in_dim)`` embedding vectors -> ``(N,)`` logits of "this vector is an image"."""

    def __init__(self, in_dim: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def branch_vectors(emb: dict, branches) -> torch.Tensor:
    """The vectors the classifier sees: the branches concatenated, ``(N, sum of dims)``."""
    return torch.cat([emb[b] for b in branches], dim=1)


def modality_logits_loss(logits: torch.Tensor, n_images: int) -> tuple[torch.Tensor, torch.Tensor]:
    """BCE and balanced accuracy of logits ``(2B,)``: the first ``n_images`` are images (label 1)."""
    labels = torch.cat([torch.ones(n_images), torch.zeros(len(logits) - n_images)]).to(logits)
    loss = F.binary_cross_entropy_with_logits(logits, labels)
    return loss, balanced_accuracy(logits.detach(), labels)


def balanced_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean of the accuracy on images and the accuracy on captions (50% = cannot tell them apart)."""
    pred = logits > 0
    pos = labels > 0.5
    return 0.5 * ((pred[pos]).float().mean() + (~pred[~pos]).float().mean())


@torch.no_grad()
def modality_accuracy(classifier: ModalityClassifier, img: dict, cap: dict, branches=None) -> float:
    """Balanced accuracy of the trained classifier on a split's embeddings (``encode_split``'s dicts)."""
    branches = branches or list(img)
    classifier.eval()
    logits = torch.cat([classifier(branch_vectors(img, branches)), classifier(branch_vectors(cap, branches))])
    labels = torch.cat([torch.ones(len(img[branches[0]])), torch.zeros(len(cap[branches[0]]))]).to(logits)
    return float(balanced_accuracy(logits, labels))


def probe_accuracy(img: dict, cap: dict, branches=None, hidden: int = 64, steps: int = 100, seed: int = 0) -> float:
    """How separable the two modalities are for a fresh classifier: trained on the vectors of half
    the images and their captions, tested on the other half (balanced accuracy; 50% = the
    modalities are indistinguishable). Works on any run, with or without the adversary."""
    branches = branches or list(img)
    x_img, x_cap = branch_vectors(img, branches).float(), branch_vectors(cap, branches).float()
    n = len(x_img)
    if n < 2:
        raise ValueError("the modality probe needs at least two images")
    k = len(x_cap) // n  # captions per image, in image order
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    halves = perm[: n // 2], perm[n // 2:]

    def part(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        caps = (images[:, None] * k + torch.arange(k)).reshape(-1)
        x = torch.cat([x_img[images], x_cap[caps]])
        return x, torch.cat([torch.ones(len(images)), torch.zeros(len(caps))])

    (x_train, y_train), (x_test, y_test) = part(halves[0]), part(halves[1])
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6  # the probe sees standardised vectors
    torch.manual_seed(seed)
    probe = ModalityClassifier(x_train.shape[1], hidden)
    optimizer = torch.optim.Adam(probe.parameters(), lr=1e-2)
    pos_weight = (y_train == 0).sum() / (y_train == 1).sum()  # balance images against captions
    with torch.enable_grad():
        for _ in range(steps):
            loss = F.binary_cross_entropy_with_logits(probe((x_train - mean) / std), y_train, pos_weight=pos_weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return float(balanced_accuracy(probe((x_test - mean) / std), y_test))
