"""Training-loader throughput (pairs/s) on image files: decoded every epoch vs cached in memory.

    python benchmarks/bench_loader.py [--images 1000] [--batches 30] [--workers 0]

Writes a Karpathy-format set of 72 px PNGs (line drawings, 5 captions each) to a temporary folder,
then times `training.loop.make_loader` over the same batches under `configs/custom.yaml`'s image
settings (resize 72, random 64 px crops), once with `data.cache_mb=0` (every image opened and
resized from its file, the old path) and once with the cache (`data.datasets.cache_resized`, the
default). One process by default (`--workers 0`), so the figure is the CPU the loader takes from
training; the cache's one-off decoding time is printed beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import load_config  # noqa: E402
from data import build_vocab, load_split  # noqa: E402
from data.datasets import cache_resized  # noqa: E402
from training import distributed  # noqa: E402
from training.loop import make_loader  # noqa: E402


def write_set(root: str, n: int) -> str:
    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        img = Image.new("RGB", (72, 72), "white")
        draw = ImageDraw.Draw(img)
        for _ in range(4):
            ends = rng.integers(4, 68, 4).tolist()
            draw.line([tuple(ends[:2]), tuple(ends[2:])], fill="black", width=3)
        img.save(os.path.join(root, f"{i}.png"))
        split = "train" if i >= 20 else ("val" if i < 10 else "test")
        records.append({"filepath": "", "filename": f"{i}.png", "split": split, "imgid": i,
                        "sentences": [{"raw": f"icon {i % 97} variant {j}"} for j in range(5)]})
    path = os.path.join(root, "dataset_bench.json")
    with open(path, "w") as f:
        json.dump({"images": records}, f)
    return path


def rate(cfg, split, vocab, batches: int) -> float:
    loader = make_loader(cfg, split, vocab, 0, distributed.Dist())
    it = iter(loader)
    next(it)  # warm-up (and worker start)
    start, pairs = time.perf_counter(), 0
    for _ in range(batches):
        pairs += len(next(it)[0])
    return pairs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        cfg = load_config(os.path.join(os.path.dirname(__file__), "..", "configs", "custom.yaml"),
                          [f"data.json={write_set(root, args.images)}", f"data.image_root={root}",
                           f"data.num_workers={args.workers}"])
        split = load_split(cfg.data, "train")
        vocab = build_vocab(split.flat_captions(), 1)
        files = rate(replace(cfg, data=replace(cfg.data, cache_mb=0)), split, vocab, args.batches)
        start = time.perf_counter()
        cached_split = cache_resized(split, cfg.data)
        decode = time.perf_counter() - start
        cached = rate(cfg, cached_split, vocab, args.batches)
    print(f"{split.num_images} training images, batch {cfg.data.batch_size}, {args.workers} workers")
    print(f"files every epoch: {files:,.0f} pairs/s; cached: {cached:,.0f} pairs/s; ratio {cached / files:.2f}x "
          f"(one-off decoding {decode:.1f} s)")


if __name__ == "__main__":
    main()
