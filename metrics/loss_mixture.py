"""A two-component Gaussian mixture over per-pair losses and the clean probability it gives each
pair (noisy correspondence, after Huang et al., NeurIPS 2021, who fit it to per-pair losses)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Mixture:
    """A 1-D mixture of two Gaussians; component 0 has the smaller mean (the clean, small-loss pairs)."""

    means: tuple[float, float]
    stds: tuple[float, float]
    weights: tuple[float, float]

    def clean_probability(self, x: np.ndarray) -> np.ndarray:
        """Posterior of component 0 for each value of ``x``."""
        x = np.asarray(x, dtype=np.float64)
        log = [math.log(max(w, 1e-12)) - math.log(s) - 0.5 * ((x - m) / s) ** 2
               for m, s, w in zip(self.means, self.stds, self.weights)]
        top = np.maximum(log[0], log[1])
        a, b = np.exp(log[0] - top), np.exp(log[1] - top)
        return a / (a + b)


def fit_two_gaussians(x: np.ndarray, iters: int = 100, min_std: float = 1e-3) -> Mixture:
    """Maximum-likelihood (EM) mixture of two Gaussians on the values ``x``.

    Started from the lower and upper thirds of the sorted values, so the result is deterministic.

    Raises:
        ValueError: fewer than two distinct finite values.
    """
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(np.unique(x)) < 2:
        raise ValueError("a two-component mixture needs at least two distinct values")
    s = np.sort(x)
    third = max(1, len(s) // 3)
    means = np.array([s[:third].mean(), s[-third:].mean()])
    stds = np.full(2, max(s.std() / 2, min_std))
    weights = np.array([0.5, 0.5])
    for _ in range(iters):
        log = np.log(weights)[:, None] - np.log(stds)[:, None] - 0.5 * ((x[None, :] - means[:, None]) / stds[:, None]) ** 2
        log -= log.max(axis=0, keepdims=True)
        resp = np.exp(log)
        resp /= resp.sum(axis=0, keepdims=True)  # (2, n)
        mass = resp.sum(axis=1) + 1e-12
        new_means = (resp * x).sum(axis=1) / mass
        stds = np.maximum(np.sqrt((resp * (x[None, :] - new_means[:, None]) ** 2).sum(axis=1) / mass), min_std)
        weights = mass / mass.sum()
        if np.allclose(new_means, means, atol=1e-9):
            means = new_means
            break
        means = new_means
    order = np.argsort(means)
    return Mixture(tuple(means[order].tolist()), tuple(stds[order].tolist()), tuple(weights[order].tolist()))


def min_max(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``x`` scaled so that ``lo`` -> 0 and ``hi`` -> 1 (the mixture is fitted on this scale)."""
    return (np.asarray(x, dtype=np.float64) - lo) / max(hi - lo, 1e-12)


def clean_probability(losses: np.ndarray) -> np.ndarray:
    """Posterior of the small-loss component of a two-Gaussian mixture fitted to ``losses`` themselves,
    min-max normalised (ones when all losses are equal: nothing to tell apart)."""
    x = min_max(losses, float(np.min(losses)), float(np.max(losses)))
    try:
        return fit_two_gaussians(x).clean_probability(x)
    except ValueError:
        return np.ones(len(x))
