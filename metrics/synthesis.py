"""Text-to-image metrics (docs/DESIGN.md section 5): R-precision, Frechet distance, and the published FID/IS.

R-precision (AttnGAN, arXiv 1711.10485): a generated image is a query against its own caption and
``K`` captions of other images; it scores when the true caption ranks first under an evaluation
embedding trained separately from the GAN. Ties count against the query, as in retrieval.

The Frechet distance here is computed in whatever feature space the caller gives (our evaluator's
image embedding): it is *not* the published FID, which needs Inception-v3 pool features;
:func:`published_fid_is` computes those only from Inception weights the user gives as a file.
"""
from __future__ import annotations

import os
import tempfile
from typing import Optional

import numpy as np
import torch
from scipy import linalg


def candidate_sets(n: int, k: int = 99, seed: int = 0) -> np.ndarray:
    """``(n, 1 + k)`` item indices: column 0 is the query's own item ``i``, then ``k`` others, distinct.

    Raises:
        ValueError: fewer than ``k + 1`` items.
    """
    if n < k + 1:
        raise ValueError(f"R-precision against {k} mismatched captions needs at least {k + 1} images, got {n}")
    rng = np.random.default_rng(seed)
    others = np.stack([rng.choice(n - 1, size=k, replace=False) for _ in range(n)])  # (n, k) in [0, n-1)
    others += others >= np.arange(n)[:, None]  # skip the query's own index
    return np.concatenate([np.arange(n)[:, None], others], axis=1)


def r_precision(scores: np.ndarray) -> float:
    """Fraction of rows whose column 0 (the true caption) beats every other column strictly, in %."""
    scores = np.asarray(scores)
    return float(100.0 * np.mean((scores[:, 1:] < scores[:, :1]).all(axis=1)))


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and covariance ``(D, D)`` of ``(N, D)`` features, in float64."""
    x = np.asarray(features, dtype=np.float64)
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_from_stats(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray,
                       eps: float = 1e-6) -> float:
    """``||mu1 - mu2||^2 + Tr(cov1 + cov2 - 2 (cov1 cov2)^(1/2))`` between two Gaussians.

    When the product is singular (fewer samples than dimensions), ``eps`` is added to both
    diagonals, as the reference FID code does; tiny imaginary parts of the square root are dropped.
    """
    diff = mu1 - mu2
    covmean = linalg.sqrtm(cov1 @ cov2)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(cov1)) * eps
        covmean = linalg.sqrtm((cov1 + offset) @ (cov2 + offset))
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(covmean))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to features ``a (N, D)`` and ``b (M, D)``."""
    return frechet_from_stats(*gaussian_stats(a), *gaussian_stats(b))


class _Uint8Images(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def published_fid_is(fake: torch.Tensor, real: torch.Tensor, weights: str, cuda: Optional[bool] = None) -> dict:
    """FID (fake vs real) and Inception Score (fake) with torch-fidelity's Inception-v3.

    ``fake``/``real`` are ``(N, 3, H, W)`` uint8. ``weights`` is the local file of torch-fidelity's
    ``pt_inception-2015-12-05`` state dict: nothing is downloaded. It is read with
    ``weights_only=True`` (tensors only) and handed to torch-fidelity as a re-saved copy, so a
    file that holds code is refused rather than run.

    Raises:
        FileNotFoundError: ``weights`` does not exist.
        ImportError: torch-fidelity is not installed (``pip install -e ".[fid]"``).
        ValueError: ``weights`` is not a plain state dict of tensors.
    """
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"Inception weights not found: {weights}")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # the unpickler raises several types for files that are not tensors only
        raise ValueError(f"{weights}: not a plain PyTorch state dict of tensors ({str(err).splitlines()[0]})") from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{weights}: expected a state dict (name -> tensor), got {type(state).__name__}")
    try:
        import torch_fidelity
    except ImportError:
        raise ImportError("the published FID/IS need torch-fidelity: pip install -e \".[fid]\"") from None
    with tempfile.TemporaryDirectory() as tmp:
        safe = os.path.join(tmp, "inception.pt")
        torch.save(state, safe)
        out = torch_fidelity.calculate_metrics(
            input1=_Uint8Images(fake), input2=_Uint8Images(real), fid=True, isc=True, verbose=False,
            save_cpu_ram=True, feature_extractor_weights_path=safe,
            cuda=torch.cuda.is_available() if cuda is None else cuda)
    return {"fid": float(out["frechet_inception_distance"]), "inception_score": float(out["inception_score_mean"]),
            "inception_score_std": float(out["inception_score_std"])}
