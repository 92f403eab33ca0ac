"""Training on pairs some of which are wrong, with no labels: per-pair loss records, a two-component
mixture over them, and clean probabilities that down-weight suspect pairs (noisy correspondence,
after Huang et al., NeurIPS 2021, who fit the mixture to per-pair losses each epoch)."""
from __future__ import annotations

import numpy as np
import torch

from metrics.loss_mixture import Mixture, fit_two_gaussians, min_max


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
