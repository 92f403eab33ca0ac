"""Training throughput (pairs/s) of one optimisation step on this machine.

    python benchmarks/bench_train.py [--steps 20] [--threads N]

Settings: the Shapes default (small CNN on 64 px images, two-branch matcher, caption decoder,
text-to-image GAN) built up path by path (matcher only; + look XE; + imagine; + imagine without its
matching loss; look SCST + imagine), the rate `imagine.every=2` gives, the depth-1 CNN with the
GAN on every step (the default before 2026-12-03) and the plain NCHW layout (`model.channels_last=false`,
the default before 2026-12-04); `configs/custom.yaml` on an icon-set-shaped batch (2,510
words, 9-token captions) path by path, with the rate `imagine.every=3` would give; and a
COCO-shaped precomputed-feature matcher (2048-d synthetic features, batch 128, 1024-d embedding,
1024-unit GRU, 10k-word vocabulary, 12-word captions). Batches are made once, so data loading is
excluded: the numbers are the model's step rate, and the ratios between settings are what carries
across machines.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import Config, ImagineConfig, LookConfig, ModelConfig, load_config  # noqa: E402
from data import build_vocab, load_split  # noqa: E402
from data.datasets import PairDataset, collate_pairs, image_transform  # noqa: E402
from losses.ranking import RankingLoss  # noqa: E402
from models.lim import LIM  # noqa: E402
from training.imagine import Critic  # noqa: E402
from training.look import CaptionReward  # noqa: E402
from training.steps import joint_step  # noqa: E402

CUSTOM = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "custom.yaml")


def make_step(cfg: Config, batch, vocab_size: int, phase: str, reward=None, feature_dim=None):
    """One optimisation step of a fresh seeded model on ``batch``, as a function, warmed up."""
    torch.manual_seed(0)
    model = LIM(cfg.model, cfg.look, cfg.imagine, vocab_size, feature_dim)
    critic = Critic(cfg.imagine, channels_last=cfg.model.channels_last) if model.imagine is not None else None
    opt = torch.optim.Adam(model.parameters(), 2e-4)
    loss_fn = RankingLoss(cfg.model.measure, cfg.loss.margin, max_violation=True)

    def step():
        loss, _ = joint_step(model, batch, torch.device("cpu"), cfg, loss_fn, True, phase, reward, critic)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.update_ema()  # as the training loop does (nothing without imagine.ema)

    step()  # warm-up (numba compilation, allocator)
    return step


def pairs_per_second(cfg: Config, batch, vocab_size: int, steps: int, phase: str, reward=None,
                     feature_dim=None) -> float:
    step = make_step(cfg, batch, vocab_size, phase, reward, feature_dim)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * len(batch[0]) / (time.perf_counter() - start)


def alternating_seconds(fns: list, rounds: int, reps: int = 4) -> list[float]:
    """Seconds per call of each function, timed in alternating rounds of ``reps`` calls each (the
    order reversed every other round), so that a drift in the machine's speed falls on all alike."""
    spent = [0.0] * len(fns)
    for r in range(rounds):
        for i in (range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))):
            start = time.perf_counter()
            for _ in range(reps):
                fns[i]()
            spent[i] += time.perf_counter() - start
    return [t / (rounds * reps) for t in spent]


def interleaved_rates(cfgs: list[Config], batch, vocab_size: int, steps: int, phase: str, reward=None) -> list[float]:
    """Pairs per second of each config's step, timed in alternating rounds of four steps each."""
    fns = [make_step(cfg, batch, vocab_size, phase, reward) for cfg in cfgs]
    return [len(batch[0]) / t for t in alternating_seconds(fns, max(steps // 4, 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config()
    split = load_split(cfg.data, "train")
    vocab = build_vocab(split.flat_captions(), cfg.data.vocab_threshold)
    pairs = PairDataset(split, vocab, image_transform(cfg.data, train=True))
    batch = collate_pairs([pairs[j * 5] for j in range(cfg.data.batch_size)])
    reward = CaptionReward(split, vocab, cfg.look.max_len)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    settings = [("matcher only", ["look.lambda_i2t=0", "imagine.lambda_t2i=0"], "off"),
                 ("+ look (XE)", ["imagine.lambda_t2i=0"], "xe"),
                 ("+ look (XE) + imagine every step", [], "xe"),
                 ("+ look (XE) + imagine without its matching loss", ["imagine.match_weight=0"], "xe"),
                 ("+ look (SCST) + imagine", [], "scst")]
    shapes = {}
    for label, overrides, phase in settings:
        rate = pairs_per_second(load_config(None, overrides), batch, len(vocab), args.steps, phase, reward)
        shapes[label] = rate
        print(f"shapes, {label}: {rate:,.0f} pairs/s")
    # The default takes the GAN every other step (imagine.every=2) to pay for its depth-2 CNN; against
    # the default before that (depth 1, the GAN every step), in the cross-entropy epochs.
    every2 = 2 / (1 / shapes["+ look (XE) + imagine every step"] + 1 / shapes["+ look (XE)"])
    old = pairs_per_second(load_config(None, ["model.small_cnn_depth=1", "imagine.every=1"]), batch, len(vocab),
                           args.steps, "xe", reward)
    print(f"shapes, the default with imagine.every=2 (from the two above): {every2:,.0f} pairs/s; the depth-1 "
          f"CNN with the GAN every step: {old:,.0f} pairs/s ({every2 / old:.2f}x)")
    # Conv weights and activations channels-last (model.channels_last, the default since 2026-12-04)
    # against the plain NCHW layout, timed in alternating rounds: the full step (XE + the GAN), the matcher alone.
    for label, overrides, phase in [("+ look (XE) + imagine every step", [], "xe"),
                                    ("matcher only", ["look.lambda_i2t=0", "imagine.lambda_t2i=0"], "off")]:
        last, plain = interleaved_rates([load_config(None, overrides + [f"model.channels_last={v}"])
                                         for v in ("true", "false")], batch, len(vocab), args.steps, phase, reward)
        print(f"shapes, {label}: channels-last {last:,.0f}, model.channels_last=false {plain:,.0f} pairs/s "
              f"({last / plain:.2f}x)")
    # The generator's moving average (imagine.ema, the Shapes default since 2026-12-04) against none.
    averaged, live = interleaved_rates([load_config(None, [f"imagine.ema={v}"]) for v in ("0.999", "0")], batch,
                                       len(vocab), args.steps, "xe", reward)
    print(f"shapes, + look (XE) + imagine every step: imagine.ema=0.999 {averaged:,.0f}, imagine.ema=0 {live:,.0f} "
          f"pairs/s ({averaged / live:.2f}x)")

    # custom.yaml on an icon set: cosine matcher, 2,510 words, 9-token captions, batch 128
    icon = ["data.json=set.json", "data.image_root=images"]
    b, n_words = 128, 2510
    caps = torch.randint(4, n_words, (b, 9), generator=torch.Generator().manual_seed(0))
    caps[:, 0], caps[:, -1] = 1, 2
    icon_batch = (torch.randn(b, 3, 64, 64, generator=torch.Generator().manual_seed(1)), caps, torch.full((b,), 9),
                  torch.arange(b), torch.arange(b))
    rates = {}
    for label, overrides, phase in [("matcher only", ["look.lambda_i2t=0", "imagine.lambda_t2i=0"], "off"),
                                    ("+ look (XE)", ["imagine.lambda_t2i=0"], "xe"),
                                    ("+ look (XE) + imagine (the default)", [], "xe")]:
        rates[label] = pairs_per_second(load_config(CUSTOM, icon + overrides), icon_batch, n_words,
                                        args.steps, phase)
        print(f"icon set (custom.yaml), {label}: {rates[label]:,.0f} pairs/s")
    look, full = rates["+ look (XE)"], rates["+ look (XE) + imagine (the default)"]
    every3 = 3 / (1 / full + 2 / look)  # one step with the GAN, two without
    print(f"icon set (custom.yaml), + look + imagine.every=3 (from the two above): {every3:,.0f} pairs/s "
          f"({every3 / full:.2f}x the default)")
    last, plain = interleaved_rates([load_config(CUSTOM, icon + [f"model.channels_last={v}"]) for v in ("true", "false")],
                                    icon_batch, n_words, args.steps, "xe")
    print(f"icon set (custom.yaml), + look (XE) + imagine: channels-last {last:,.0f}, model.channels_last=false "
          f"{plain:,.0f} pairs/s ({last / plain:.2f}x)")

    coco = Config(model=ModelConfig(image_encoder="precomp", embed_dim=1024, text_hidden=1024),
                  look=LookConfig(lambda_i2t=0), imagine=ImagineConfig(lambda_t2i=0))
    b = 128
    caps = torch.randint(4, 10000, (b, 14))
    caps[:, 0], caps[:, -1] = 1, 2
    coco_batch = (torch.randn(b, 2048), caps, torch.full((b,), 14), torch.arange(b), torch.arange(b))
    rate = pairs_per_second(coco, coco_batch, 10000, args.steps, "off", feature_dim=2048)
    print(f"coco-shaped precomputed matcher (2048-d features, batch 128): {rate:,.0f} pairs/s")


if __name__ == "__main__":
    main()
