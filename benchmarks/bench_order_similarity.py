"""Benchmark: the fast CPU order similarity vs a chunked broadcast baseline (1K x 5K x 1024).

The baseline is the obvious torch code, chunked over images so that each ``(chunk, M, D)``
temporary stays within ``--baseline-chunk-mb``::

    -(captions[None] - images[chunk, None]).clamp(min=0).pow(2).sum(-1)

The fast path is ``similarity(images, captions, "order")`` under ``no_grad`` (the numba kernel).
Its extra memory is measured twice, before the baseline runs so the process peak is still low:
tracemalloc's peak (numpy allocations; the output is the only one) and the growth of the peak RSS.

    python benchmarks/bench_order_similarity.py
    python benchmarks/bench_order_similarity.py --n-images 200 --n-captions 1000 --dim 256
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc
from functools import partial

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from anywhere

from models.similarity import numba_available, similarity  # noqa: E402

MB = 2**20


def baseline(images: torch.Tensor, captions: torch.Tensor, chunk_bytes: int) -> torch.Tensor:
    """Chunked broadcast: ``(chunk, M, D)`` temporaries of at most chunk_bytes each."""
    per_image = captions.numel() * captions.element_size()
    chunk = max(1, chunk_bytes // per_image)
    return torch.cat([-(captions[None] - images[a:a + chunk, None]).clamp(min=0).pow(2).sum(-1)
                      for a in range(0, len(images), chunk)])  # (N, M)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-images", type=int, default=1000)
    parser.add_argument("--n-captions", type=int, default=5000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--baseline-chunk-mb", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="best-of repeats of the fast path")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not numba_available():
        sys.exit("numba is not installed (pip install numba): there is no fast path to compare")
    torch.set_grad_enabled(False)

    g = torch.Generator().manual_seed(args.seed)
    dtype = getattr(torch, args.dtype)
    unit_rows = partial(torch.nn.functional.normalize, dim=1)  # non-negative unit rows, as under order
    images = unit_rows(torch.randn(args.n_images, args.dim, generator=g, dtype=dtype).abs())
    captions = unit_rows(torch.randn(args.n_captions, args.dim, generator=g, dtype=dtype).abs())
    out_mb = args.n_images * args.n_captions * images.element_size() / MB
    print(f"order similarity, {args.n_images} x {args.n_captions} x {args.dim} {args.dtype}, "
          f"{torch.get_num_threads()} threads; the output alone is {out_mb:.1f} MB")

    t = time.perf_counter()
    similarity(images[:2], captions[:2], "order")  # compiles, or loads numba's on-disk cache
    print(f"  numba compile / cache load : {time.perf_counter() - t:8.3f} s (once per process)")

    rss_before = peak_rss_mb()
    tracemalloc.start()
    fast = similarity(images, captions, "order")  # (N, M)
    traced_peak = tracemalloc.get_traced_memory()[1] / MB
    tracemalloc.stop()
    rss_growth = peak_rss_mb() - rss_before
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        similarity(images, captions, "order")
        times.append(time.perf_counter() - t)
    t_fast = min(times)

    rss_before = peak_rss_mb()
    t = time.perf_counter()
    slow = baseline(images, captions, args.baseline_chunk_mb * MB)
    t_slow = time.perf_counter() - t
    rss_growth_slow = peak_rss_mb() - rss_before

    print(f"  chunked broadcast baseline : {t_slow:8.3f} s  (chunks of <= {args.baseline_chunk_mb} MB)")
    print(f"  fast path (numba)          : {t_fast:8.3f} s  (best of {args.repeats})")
    print(f"  speed-up                   : {t_slow / t_fast:8.1f}x (goal >= 10x)")
    print(f"  max |fast - baseline|      : {(fast - slow).abs().max().item():.3g}")
    print(f"  fast path extra memory     : tracemalloc peak {traced_peak:.1f} MB (output {out_mb:.1f} MB), "
          f"peak RSS growth {rss_growth:.1f} MB")
    print(f"  baseline peak RSS growth   : {rss_growth_slow:.1f} MB")


if __name__ == "__main__":
    main()
