"""Benchmark: vectorised recall_metrics vs the classic per-query argsort loop (VSE++ evaluation).

1. ``--n-images`` x k ``--n-images`` random continuous scores (float64, so no ties): time the
   classic i2t/t2i loops and recall_metrics, check that ranks and metrics are identical.
2. ``--large-images`` x k ``--large-images`` scores of random ``--dim``-d features: time the bare
   similarity matmul and recall_metrics on its result (the goal is within ~2x of the matmul).

    python benchmarks/bench_recall.py                       # 2K x 10K, then 5K x 25K x 1024
    python benchmarks/bench_recall.py --n-images 200 --large-images 500 --dim 64
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from anywhere

from metrics.retrieval import ranks_i2t, ranks_t2i, recall_metrics  # noqa: E402
from models.similarity import similarity  # noqa: E402


def classic_i2t(sims: np.ndarray, k: int) -> np.ndarray:
    """VSE++'s i2t: argsort each image's row, best position among its k captions."""
    ranks = np.zeros(sims.shape[0])
    for index in range(sims.shape[0]):
        inds = np.argsort(sims[index])[::-1]
        ranks[index] = min(np.where(inds == i)[0][0] for i in range(k * index, k * index + k))
    return ranks


def classic_t2i(sims: np.ndarray, k: int) -> np.ndarray:
    """VSE++'s t2i: argsort each caption's column, position of its image."""
    sims_t = sims.T
    ranks = np.zeros(sims_t.shape[0])
    for index in range(sims.shape[0]):
        for i in range(k):
            inds = np.argsort(sims_t[k * index + i])[::-1]
            ranks[k * index + i] = np.where(inds == index)[0][0]
    return ranks


def classic_summary(ranks: np.ndarray) -> dict[str, float]:
    """VSE++'s recall formulas."""
    out = {f"r{k}": 100.0 * len(np.where(ranks < k)[0]) / len(ranks) for k in (1, 5, 10)}
    out["medr"] = float(np.floor(np.median(ranks)) + 1)
    out["meanr"] = float(ranks.mean() + 1)
    return out


def best_of(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """(fastest wall time in seconds, last result)."""
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def versus_classic(n: int, k: int, repeats: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    sims = rng.standard_normal((n, k * n))  # float64: continuous, no ties
    sims[np.arange(k * n) // k, np.arange(k * n)] += 2.0  # some signal, so recalls are not ~0
    print(f"[1] {n} x {k * n} random float64 scores")
    t_classic, (c_i2t, c_t2i) = best_of(lambda: (classic_i2t(sims, k), classic_t2i(sims, k)), 1)
    t_ours, ours = best_of(lambda: recall_metrics(sims, k), repeats)
    same_ranks = (np.array_equal(ranks_i2t(sims, k), c_i2t) and np.array_equal(ranks_t2i(sims, k), c_t2i))
    classic = {"i2t": classic_summary(c_i2t), "t2i": classic_summary(c_t2i)}
    r = classic["i2t"]
    ri = classic["t2i"]
    classic["rsum"] = r["r1"] + r["r5"] + r["r10"] + ri["r1"] + ri["r5"] + ri["r10"]
    same_numbers = all(ours[key] == classic[key] for key in classic)
    print(f"    classic argsort loop : {t_classic:8.3f} s")
    print(f"    recall_metrics       : {t_ours:8.3f} s   speed-up {t_classic / t_ours:6.1f}x (goal >= 20x)")
    print(f"    ranks identical: {same_ranks}; recalls, medr, meanr, rsum identical: {same_numbers}; "
          f"ties: {ours['ties']}")
    print(f"    i2t {ours['i2t']}\n    t2i {ours['t2i']}\n    rsum {ours['rsum']:.2f}")


def versus_matmul(n: int, k: int, dim: int, repeats: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    images = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=1)
    captions = torch.nn.functional.normalize(torch.randn(k * n, dim, generator=g), dim=1)
    print(f"[2] {n} x {k * n} scores of {dim}-d float32 features ({torch.get_num_threads()} torch threads)")
    with torch.no_grad():
        t_matmul, sims = best_of(lambda: similarity(images, captions, "cosine"), repeats)
    t_ours, ours = best_of(lambda: recall_metrics(sims, k), repeats)
    print(f"    similarity matmul    : {t_matmul:8.3f} s")
    print(f"    recall_metrics       : {t_ours:8.3f} s   = {t_ours / t_matmul:.2f}x the matmul (goal <= ~2x)")
    print(f"    rsum {ours['rsum']:.2f}; ties: {ours['ties']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-images", type=int, default=2000, help="images of the classic-loop comparison")
    parser.add_argument("--large-images", type=int, default=5000, help="images of the matmul comparison")
    parser.add_argument("--dim", type=int, default=1024, help="feature size of the matmul comparison")
    parser.add_argument("--captions-per-image", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="best-of repeats of the fast timings")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    versus_classic(args.n_images, args.captions_per_image, args.repeats, args.seed)
    versus_matmul(args.large_images, args.captions_per_image, args.dim, args.repeats, args.seed)


if __name__ == "__main__":
    main()
