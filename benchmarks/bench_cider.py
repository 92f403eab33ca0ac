"""Benchmark: losses.CiderD vs pycocoevalcap's Cider on caption-like strings.

1. ``--images`` candidates x ``--refs`` references: time pycocoevalcap's ``Cider().compute_score``,
   ``CiderD().compute_score`` (df from the given references, the evaluation mode) and, with the same
   references as a cached corpus, ``CiderD.score``; report speed-ups and max abs differences.
2. SCST rewards: build ``CiderD(corpus=...)`` over ``--corpus-images`` images (timed once), then time
   ``score()`` for ``--candidates`` candidates (``--samples`` per image, keys repeat) and for the
   first ``--batch`` of them (one training step's rewards).

Strings are drawn from a ``--vocab``-word Zipf vocabulary plus a few words per image, with lengths
``--min-len``..``--max-len``; candidates are a reference with some words replaced.

    python benchmarks/bench_cider.py
    python benchmarks/bench_cider.py --images 100 --corpus-images 1000 --candidates 500
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from anywhere

from losses import CiderD  # noqa: E402


def make_captions(rng: np.random.Generator, n_images: int, n_refs: int, args: argparse.Namespace) -> dict:
    """{image: [n_refs captions]}: Zipf-distributed common words mixed with the image's own words."""
    vocab = np.array([f"word{i}" for i in range(args.vocab)])
    zipf = 1.0 / np.arange(1, args.vocab + 1)
    zipf /= zipf.sum()
    out = {}
    for i in range(n_images):
        own = rng.choice(args.vocab, size=6, replace=False)
        refs = []
        for _ in range(n_refs):
            length = rng.integers(args.min_len, args.max_len + 1)
            words = rng.choice(args.vocab, size=length, p=zipf)
            mask = rng.random(length) < 0.3
            words[mask] = rng.choice(own, size=int(mask.sum()))
            refs.append(" ".join(vocab[words]))
        out[i] = refs
    return out


def perturb(rng: np.random.Generator, caption: str, vocab: int) -> str:
    """A reference with about a fifth of its words replaced (sometimes none), like a decent sample."""
    words = caption.split()
    for j in np.flatnonzero(rng.random(len(words)) < 0.2):
        words[j] = f"word{rng.integers(vocab)}"
    return " ".join(words)


def best_times(fns: dict[str, Callable[[], object]], repeats: int) -> tuple[dict, dict]:
    """Best wall time of each function over `repeats` rounds, and its last result. Rounds interleave
    the functions so that drifting machine load affects them alike."""
    best, out = {k: float("inf") for k in fns}, {}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            out[k] = fn()
            best[k] = min(best[k], time.perf_counter() - t)
    return best, out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=500, help="candidates (one per image) in part 1")
    p.add_argument("--refs", type=int, default=5, help="references per image")
    p.add_argument("--vocab", type=int, default=300)
    p.add_argument("--min-len", type=int, default=8)
    p.add_argument("--max-len", type=int, default=15)
    p.add_argument("--corpus-images", type=int, default=10000)
    p.add_argument("--candidates", type=int, default=5000)
    p.add_argument("--samples", type=int, default=5, help="candidates per image in part 2")
    p.add_argument("--batch", type=int, default=250, help="also time one SCST batch of this many candidates")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from pycocoevalcap.cider.cider import Cider

    rng = np.random.default_rng(args.seed)
    gts = make_captions(rng, args.images, args.refs, args)
    res = {k: [perturb(rng, refs[0], args.vocab)] for k, refs in gts.items()}
    print(f"1. {args.images} candidates x {args.refs} references, vocab {args.vocab}, "
          f"lengths {args.min_len}-{args.max_len}, best of {args.repeats}")
    t_build = time.perf_counter()
    scorer = CiderD(corpus=gts)
    t_build = time.perf_counter() - t_build
    keys, cands = list(res), [res[k][0] for k in res]
    t, out = best_times({"ref": lambda: Cider().compute_score(gts, res),
                         "fast": lambda: CiderD().compute_score(gts, res),
                         "cached": lambda: scorer.score(keys, cands)}, args.repeats)
    (mean_ref, want), (mean_fast, got) = out["ref"], out["fast"]
    print(f"   pycocoevalcap Cider.compute_score  {t['ref'] * 1e3:8.1f} ms   mean {mean_ref:.6f}")
    print(f"   CiderD.compute_score               {t['fast'] * 1e3:8.1f} ms   mean {mean_fast:.6f}   "
          f"x{t['ref'] / t['fast']:.1f}   max |diff| {np.abs(got - want).max():.2e}")
    print(f"   CiderD(corpus=gts).score           {t['cached'] * 1e3:8.1f} ms   mean {out['cached'].mean():.6f}"
          f"   x{t['ref'] / t['cached']:.1f}   max |diff| {np.abs(out['cached'] - want).max():.2e}")
    print(f"   (building CiderD(corpus=gts) once: {t_build * 1e3:.1f} ms)")

    corpus = make_captions(rng, args.corpus_images, args.refs, args)
    print(f"2. SCST rewards: {args.candidates} candidates ({args.samples} per image) vs a cached "
          f"{args.corpus_images}-image corpus")
    t_build = time.perf_counter()
    scorer = CiderD(corpus=corpus)
    t_build = time.perf_counter() - t_build
    n_img = -(-args.candidates // args.samples)
    images = rng.choice(args.corpus_images, size=n_img, replace=n_img > args.corpus_images)
    keys = np.repeat(images, args.samples)[: args.candidates].tolist()
    cands = [perturb(rng, corpus[k][rng.integers(args.refs)], args.vocab) for k in keys]
    batch = min(args.batch, len(keys))
    t, out = best_times({"all": lambda: scorer.score(keys, cands),
                         "batch": lambda: scorer.score(keys[:batch], cands[:batch])}, args.repeats)
    print(f"   build CiderD(corpus=...)           {t_build * 1e3:8.1f} ms (once)")
    for name, size in (("all", len(keys)), ("batch", batch)):
        print(f"   score() of {size:5d} candidates      {t[name] * 1e3:8.1f} ms   "
              f"({t[name] / size * 1e6:.1f} us/candidate, mean reward {out[name].mean():.4f})")


if __name__ == "__main__":
    main()
