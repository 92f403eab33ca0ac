"""Pair log-likelihoods per second for fused re-ranking: batched vs one pair at a time, and packed vs padded.

    python benchmarks/bench_fused.py [--pairs 20000] [--loop 300]

A Shapes-sized caption decoder (256 LSTM units, 512-d features, 42 words, 12-token captions) scores
random (image, caption) pairs with `evaluation.fused.decoder_loglik` (2,048 pairs per batch) and with a
per-pair loop; both are timed in the same run and the ratio is printed, with the max difference.

Then an icon-set-sized decoder (2,510 words, captions of 3-12 tokens, as on tabler) scores the same
pairs with `CaptionDecoder.log_likelihood` (the vocabulary layer on the packed real positions only)
and with the padded teacher-forced logits it replaced (every position up to the batch's longest).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from evaluation.fused import decoder_loglik  # noqa: E402
from models.caption_decoder import CaptionDecoder, target_log_probs  # noqa: E402


def padded_loglik(decoder, feats, captions, lengths):
    """The reference: logits at every padded position, masked afterwards."""
    logp, mask = target_log_probs(decoder(feats, captions, lengths), captions, lengths)
    return logp.sum(1) / mask.sum(1)


def packed_vs_padded(pairs: int) -> None:
    torch.manual_seed(0)
    vocab = 2510
    decoder = CaptionDecoder(vocab_size=vocab, feature_dim=512, word_dim=300, hidden=256, max_len=20).eval()
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, 13, (pairs,), generator=g)
    captions = torch.randint(4, vocab, (pairs, 12), generator=g)
    captions[:, 0] = 1
    captions[torch.arange(pairs), lengths - 1] = 2
    captions[torch.arange(12)[None] >= lengths[:, None]] = 0
    feats = torch.rand(pairs, 512, generator=g)
    timed = {}
    with torch.no_grad():
        for name, fn in (("padded", padded_loglik), ("packed", type(decoder).log_likelihood)):
            start, out = time.perf_counter(), []
            for i in range(0, pairs, 2048):
                out.append(fn(decoder, feats[i:i + 2048], captions[i:i + 2048], lengths[i:i + 2048]))
            timed[name] = (pairs / (time.perf_counter() - start), torch.cat(out))
    (slow, ref), (fast, new) = timed["padded"], timed["packed"]
    print(f"icon-set decoder, captions of 3-12 tokens: packed {fast:,.0f} pairs/s, padded {slow:,.0f} pairs/s, "
          f"ratio {fast / slow:.2f}x; max diff {float((new - ref).abs().max()):.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=20000)
    parser.add_argument("--loop", type=int, default=300, help="pairs timed one at a time")
    args = parser.parse_args()
    torch.manual_seed(0)
    decoder = CaptionDecoder(vocab_size=42, feature_dim=512, word_dim=300, hidden=256, dropout=0.5, max_len=20).eval()
    feats = torch.rand(1000, 512)
    captions = torch.randint(4, 42, (5000, 12))
    captions[:, 0], captions[:, -1] = 1, 2
    lengths = torch.full((5000,), 12)
    rng = np.random.default_rng(0)
    img, cap = rng.integers(0, 1000, args.pairs), rng.integers(0, 5000, args.pairs)
    loglik = decoder_loglik(decoder, feats, captions, lengths, torch.device("cpu"))
    loglik(img[:10], cap[:10])  # warm-up
    start = time.perf_counter()
    fast = loglik(img, cap)
    batched = args.pairs / (time.perf_counter() - start)
    start = time.perf_counter()
    with torch.no_grad():
        slow = [float(decoder.log_likelihood(feats[i:i + 1], captions[c:c + 1], lengths[c:c + 1]))
                for i, c in zip(img[:args.loop], cap[:args.loop])]
    single = args.loop / (time.perf_counter() - start)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"batched: {batched:,.0f} pairs/s; one pair at a time: {single:,.0f} pairs/s; "
          f"ratio {batched / single:.1f}x; max diff {np.abs(fast[:args.loop] - np.array(slow)).max():.2e}")
    print(f"re-ranking the top 20 both ways on a 1K x 5K split = 120,000 pairs: {120000 / batched:.1f} s")
    packed_vs_padded(args.pairs)


if __name__ == "__main__":
    main()
