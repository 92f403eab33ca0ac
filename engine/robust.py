"""Training on pairs some of which are wrong, with no labels: per-pair loss records, a two-component
mixture over them, and clean probabilities that down-weight suspect pairs (noisy correspondence,
after Huang et al., NeurIPS 2021, who fit the mixture to per-pair losses each epoch)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


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


class PairLossRecord:
    """The latest ranking loss of every training pair (flat caption index), as training sees them.

    Each epoch's batch losses are recorded (no extra pass over the data); at the start of an epoch
    :meth:`refit` fits the mixture to the losses of the pairs seen so far, min-max normalised, and
    :meth:`weights` turns a batch's current losses into clean probabilities under it.
    """

    def __init__(self, num_pairs: int):
        self.losses = np.full(num_pairs, np.nan)
        self.mixture: Mixture | None = None
        self.scale = (0.0, 1.0)

    def record(self, indices: torch.Tensor, losses: torch.Tensor) -> None:
        self.losses[indices.cpu().numpy()] = losses.detach().float().cpu().numpy()

    def _normalise(self, x: np.ndarray) -> np.ndarray:
        return min_max(x, *self.scale)

    def refit(self) -> bool:
        """Fit the mixture to the recorded losses; False (and no mixture) if there are too few."""
        seen = self.losses[np.isfinite(self.losses)]
        if len(seen) < 10 or len(np.unique(seen)) < 2:
            self.mixture = None
            return False
        self.scale = (float(seen.min()), float(seen.max()))
        self.mixture = fit_two_gaussians(self._normalise(seen))
        return True

    def clean_probability(self, losses: np.ndarray) -> np.ndarray:
        if self.mixture is None:
            return np.ones(len(losses))
        return self.mixture.clean_probability(self._normalise(losses))

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        """Clean probabilities ``(B,)`` of a batch's pairs from their current losses (ones before any fit)."""
        p = self.clean_probability(losses.detach().float().cpu().numpy())
        return torch.as_tensor(p, dtype=losses.dtype, device=losses.device)

    def state_dict(self) -> dict:
        return {"losses": torch.from_numpy(self.losses.copy())}

    def load_state_dict(self, state: dict) -> None:
        losses = state["losses"].numpy()
        if losses.shape != self.losses.shape:
            raise ValueError(f"pair loss record holds {losses.shape[0]} pairs, this training split has "
                             f"{self.losses.shape[0]}")
        self.losses = losses.astype(np.float64)
        self.refit()
