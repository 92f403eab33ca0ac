"""Training throughput (pairs/s) of one optimisation step of the matcher on this machine.

    python benchmarks/bench_train.py [--steps 20] [--threads N]

Two settings: the Shapes default (small CNN on 64 px images, the default config) and a
COCO-shaped precomputed-feature config (2048-d synthetic features, batch 128, 1024-d embedding,
1024-unit GRU, 10k-word vocabulary, 12-word captions). Data loading is excluded: batches are made
once, so the number is the model's step rate.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import ModelConfig, load_config  # noqa: E402
from losses.ranking import RankingLoss  # noqa: E402
from models import Matcher  # noqa: E402


def pairs_per_second(cfg: ModelConfig, images: torch.Tensor, vocab: int, cap_len: int, steps: int,
                     feature_dim=None) -> float:
    torch.manual_seed(0)
    b = images.shape[0]
    model = Matcher(cfg, vocab, feature_dim)
    opt = torch.optim.Adam(model.parameters(), 2e-4)
    loss_fn = RankingLoss(cfg.measure, 0.05, max_violation=True)
    captions = torch.randint(4, vocab, (b, cap_len))
    lengths = torch.randint(cap_len // 2, cap_len + 1, (b,))
    ids = torch.arange(b)

    def step():
        img, cap = model(images, captions, lengths)
        loss = sum(w * loss_fn(img[k], cap[k], image_ids=ids) for k, w in model.branch_weights.items())
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * b / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    default = load_config()
    shapes = pairs_per_second(default.model, torch.randn(default.data.batch_size, 3, 64, 64), 45, 12, args.steps)
    coco_cfg = ModelConfig(image_encoder="precomp", embed_dim=1024, text_hidden=1024)
    coco = pairs_per_second(coco_cfg, torch.randn(128, 2048), 10000, 12, args.steps, feature_dim=2048)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"shapes default (small CNN, 64 px, batch {default.data.batch_size}): {shapes:,.0f} pairs/s")
    print(f"coco-shaped precomputed (2048-d features, batch 128): {coco:,.0f} pairs/s")


if __name__ == "__main__":
    main()
