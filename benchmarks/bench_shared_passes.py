"""Two passes the training step shares since 2026-12-04, each against the separate passes it replaced,
timed in alternating rounds on the Shapes default's shapes (2 threads unless told):

- the discriminator's update: the real images through D's convs once, judged with their own and a
  wrong caption, against one pass per judgement (real, wrong, fake);
- the text encoder: the batch's captions and their one-word contrast swaps in one GRU call, against
  a call each.

    python benchmarks/bench_shared_passes.py [--rounds 10] [--threads 2]

Each line prints both rates, the ratio and the largest difference between the two results.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import load_config  # noqa: E402
from data import build_vocab, load_split  # noqa: E402
from data.contrast import TokenSwapper  # noqa: E402
from data.datasets import PairDataset, collate_pairs, gan_images, image_transform  # noqa: E402
from losses.gan import discriminator_loss, mismatched_indices  # noqa: E402
from models.lim import LIM  # noqa: E402
from training.imagine import Critic  # noqa: E402

from bench_train import alternating_seconds  # noqa: E402  (this folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config()
    split = load_split(cfg.data, "train")
    vocab = build_vocab(split.flat_captions(), cfg.data.vocab_threshold)
    pairs = PairDataset(split, vocab, image_transform(cfg.data, train=True))
    images, captions, lengths, image_ids, _ = collate_pairs([pairs[j * 5] for j in range(cfg.data.batch_size)])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, Shapes default shapes")

    # The critic: imagine.batch_pairs real images, their captions' CA means and generated images.
    n = cfg.imagine.batch_pairs
    torch.manual_seed(0)
    model = LIM(cfg.model, cfg.look, cfg.imagine, len(vocab)).train()
    with torch.no_grad():
        out = model(images[:n], captions[:n], lengths[:n], imagine=n)
    real, cond, fake = gan_images(images[:n], cfg.imagine.image_size), out["mu"], out["fake"]
    wrong = cond[mismatched_indices(image_ids[:n], torch.Generator().manual_seed(0))]
    d = Critic(cfg.imagine, channels_last=cfg.model.channels_last).module
    d_naive = copy.deepcopy(d)

    def shared(net=d):
        seen = net.image(real)
        loss = discriminator_loss(net.judge(seen, cond), net.judge(seen, wrong), net(fake, cond))["total"]
        net.zero_grad()
        loss.backward()
        return loss.detach()

    def three(net=d_naive):
        loss = discriminator_loss(net(real, cond), net(real, wrong), net(fake, cond))["total"]
        net.zero_grad()
        loss.backward()
        return loss.detach()

    diff = abs(shared().item() - three().item())
    grad = max((p.grad - q.grad).abs().max().item() for p, q in zip(d.parameters(), d_naive.parameters()))
    t_shared, t_three = alternating_seconds([shared, three], args.rounds, reps=3)
    print(f"discriminator update ({n} pairs): real images through D once {n / t_shared:,.0f} pairs/s, "
          f"three passes {n / t_three:,.0f} pairs/s ({t_three / t_shared:.2f}x); loss diff {diff:.1e}, "
          f"largest gradient diff {grad:.1e}")

    # The text encoder: the batch's captions and their contrast swaps.
    swapped, new_lengths, _ = TokenSwapper(vocab)(captions, lengths, np.random.default_rng(0))
    text = model.matcher.text_encoder

    def one_call():
        both = model(images[:2], captions, lengths, extra_captions=(swapped, new_lengths))
        loss = sum(v.sum() for v in both["extra_cap"].values()) + sum(v.sum() for v in both["cap"].values())
        text.zero_grad()
        loss.backward()
        return both

    def two_calls():
        cap, neg = text(captions, lengths), text(swapped, new_lengths)
        loss = sum(v.sum() for v in neg.values()) + sum(v.sum() for v in cap.values())
        text.zero_grad()
        loss.backward()
        return {"cap": cap, "extra_cap": neg}

    a, b = one_call(), two_calls()
    diff = max((a[k][br] - b[k][br]).abs().max().item() for k in ("cap", "extra_cap") for br in a[k])
    t_one, t_two = alternating_seconds([one_call, two_calls], args.rounds, reps=3)
    m = len(captions)
    print(f"text encoder, {m} captions + {m} contrast captions, forward and backward: one call {m / t_one:,.0f} "
          f"pairs/s, two calls {m / t_two:,.0f} pairs/s ({t_two / t_one:.2f}x; the one call also encodes 2 "
          f"images); largest vector diff {diff:.1e}")


if __name__ == "__main__":
    main()
