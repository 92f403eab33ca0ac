"""CiderD against pycocoevalcap's Cider and against a literal implementation of the formula."""
from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np
import pytest
from pycocoevalcap.cider.cider import Cider

from losses import CiderD


def random_sets(rng: random.Random, n_images: int, vocab_size: int) -> tuple[dict, dict]:
    """Random gts/res: 1-7 refs of 1-20 words; candidates that are sometimes a reference, sometimes
    one or two words or empty, sometimes contain words no reference uses."""
    vocab = [f"w{i}" for i in range(vocab_size)]
    gts, res = {}, {}
    for i in range(n_images):
        refs = [" ".join(rng.choices(vocab, k=rng.randint(1, 20))) for _ in range(rng.randint(1, 7))]
        u = rng.random()
        if u < 0.2:
            cand = rng.choice(refs)
        elif u < 0.35:
            cand = " ".join(rng.choices(vocab, k=rng.randint(0, 2)))
        else:
            words = (rng.choice(vocab) if rng.random() > 0.1 else "unseen" for _ in range(rng.randint(1, 20)))
            cand = " ".join(words)
        gts[f"img{i}"], res[f"img{i}"] = refs, [cand]
    keys = list(gts)
    rng.shuffle(keys)  # the per-image order must follow gts, whatever the insertion order of res
    return gts, {k: res[k] for k in keys}


def naive_cider(corpus: list[list[str]], items: list[tuple[str, list[str]]], n: int = 4,
                sigma: float = 6.0) -> np.ndarray:
    """CIDEr-D written out literally: df from `corpus` (one document per image), ref_len =
    log(#corpus images); scores of (candidate, references) pairs."""
    def grams(s: str) -> Counter:
        w = s.split()
        return Counter(tuple(w[i:i + k]) for k in range(1, n + 1) for i in range(len(w) - k + 1))

    df = Counter(g for refs in corpus for g in set().union(*(grams(r) for r in refs)))
    ref_len = math.log(len(corpus))

    def vector(s: str) -> tuple[dict, list[float], int]:
        tf = grams(s)
        vec = {g: c * (ref_len - math.log(max(1, df[g]))) for g, c in tf.items()}
        norms = [math.sqrt(sum(v * v for g, v in vec.items() if len(g) == k)) for k in range(1, n + 1)]
        return vec, norms, sum(c for g, c in tf.items() if len(g) == 2)  # pycocoevalcap's "length"

    out = []
    for cand, refs in items:
        vh, nh, lh = vector(cand)
        total = 0.0
        for ref in refs:
            vr, nr, lr = vector(ref)
            penalty = math.exp(-((lh - lr) ** 2) / (2 * sigma**2))
            for k in range(1, n + 1):
                dot = sum(min(v, vr.get(g, 0.0)) * vr.get(g, 0.0) for g, v in vh.items() if len(g) == k)
                if nh[k - 1] > 0 and nr[k - 1] > 0:
                    total += dot / (nh[k - 1] * nr[k - 1]) * penalty
        out.append(10.0 * total / (n * len(refs)))
    return np.array(out)


@pytest.mark.parametrize("seed", range(6))
def test_matches_pycocoevalcap(seed):
    rng = random.Random(seed)
    gts, res = random_sets(rng, n_images=rng.randint(1, 40), vocab_size=rng.choice([3, 10, 50]))
    want_mean, want = Cider().compute_score(gts, res)
    mean, got = CiderD().compute_score(gts, res)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert abs(mean - want_mean) < 1e-6


def test_matches_pycocoevalcap_sigma():
    gts, res = random_sets(random.Random(7), 30, 10)
    np.testing.assert_allclose(CiderD(sigma=2.5).compute_score(gts, res)[1],
                               Cider(sigma=2.5).compute_score(gts, res)[1], atol=1e-6)


@pytest.mark.parametrize("n,sigma", [(4, 6.0), (1, 6.0), (2, 3.0), (5, 6.0)])
def test_corpus_mode_matches_naive(n, sigma):
    rng = random.Random(n)
    corpus, _ = random_sets(rng, 25, 12)
    keys = rng.choices(list(corpus), k=40)  # repeats, like several samples per image
    vocab = [f"w{i}" for i in range(12)] + ["new", "other"]  # words and n-grams the corpus lacks
    cands = [" ".join(rng.choices(vocab, k=rng.randint(0, 15))) for _ in keys]
    cands[0], cands[1] = corpus[keys[0]][0], "new new new w1 new new"
    scorer = CiderD(n=n, sigma=sigma, corpus=corpus)
    want = naive_cider(list(corpus.values()), [(c, corpus[k]) for c, k in zip(cands, keys)], n, sigma)
    np.testing.assert_allclose(scorer.score(keys, cands), want, rtol=0, atol=1e-9)
    assert want[0] > 0


def test_given_references_use_corpus_df():
    rng = random.Random(11)
    corpus, _ = random_sets(rng, 20, 10)
    val_gts, val_res = random_sets(rng, 8, 14)  # words the corpus never saw
    gts = {f"val_{k}": v for k, v in val_gts.items()}  # keys the corpus lacks: their references are given
    res = {f"val_{k}": v for k, v in val_res.items()}
    gts["img3"], res["img3"] = None, ["w1 w2 w3 w4"]  # None = the corpus references of img3
    items = [(res[k][0], corpus[k] if gts[k] is None else gts[k]) for k in gts]
    mean, got = CiderD(corpus=corpus).compute_score(gts, res)
    np.testing.assert_allclose(got, naive_cider(list(corpus.values()), items), atol=1e-9)
    assert mean == pytest.approx(got.mean())


def test_no_corpus_other_orders_match_naive():
    gts, res = random_sets(random.Random(3), 15, 6)
    for n in (1, 2, 6):  # pycocoevalcap's n != 4 is broken (it always cooks 4-grams)
        items = [(res[k][0], gts[k]) for k in gts]
        np.testing.assert_allclose(CiderD(n=n).compute_score(gts, res)[1],
                                   naive_cider(list(gts.values()), items, n), atol=1e-9)


def test_score_equals_compute_score_and_pycocoevalcap_on_own_corpus():
    gts, res = random_sets(random.Random(5), 30, 20)
    scorer = CiderD(corpus=gts)  # df from the same references: pycocoevalcap's numbers
    keys = list(gts)
    fast = scorer.score(keys, [res[k][0] for k in keys])
    by_res = scorer.compute_score(None, res)[1]  # gts=None: in the order of res
    np.testing.assert_allclose(by_res, scorer.score(list(res), [res[k][0] for k in res]), atol=1e-12)
    np.testing.assert_allclose(fast, scorer.compute_score(dict.fromkeys(keys), res)[1], atol=1e-12)
    np.testing.assert_allclose(fast, CiderD().compute_score(gts, res)[1], atol=1e-9)
    np.testing.assert_allclose(fast, Cider().compute_score(gts, res)[1], atol=1e-6)


def test_repeated_keys_score_independently():
    corpus = {"a": ["a man rides a horse", "a person on a horse"],
              "b": ["two dogs play", "dogs in a park"], "c": ["a red car"]}
    scorer = CiderD(corpus=corpus)
    cands = ["a man rides a horse", "a horse", "", "dogs play in a park", "a man on a horse"]
    together = scorer.score(["a", "a", "a", "b", "a"], cands)
    alone = [scorer.score([k], [c])[0] for k, c in zip("aaaba", cands)]
    np.testing.assert_allclose(together, alone, atol=1e-12)
    assert together[0] > together[4] > together[1] > 0 and together[2] == 0
    assert scorer.score([], []).shape == (0,)


def test_empty_strings_score_zero():
    # pycocoevalcap fails on references without any word (max() of no document frequencies).
    _, got = CiderD().compute_score({1: [""], 2: ["", " "]}, {1: ["a"], 2: [""]})
    np.testing.assert_array_equal(got, [0.0, 0.0])
    corpus = {1: [""], 2: ["x y"]}
    want = naive_cider(list(corpus.values()), [("x", [""]), ("", ["x y"]), ("x y", ["x y"])])
    np.testing.assert_allclose(CiderD(corpus=corpus).score([1, 2, 2], ["x", "", "x y"]), want)


def test_errors():
    gts = {1: ["a b c", "a b"], 2: ["c d"]}
    with pytest.raises(ValueError, match="exactly one hypothesis string"):
        CiderD().compute_score(gts, {1: "a b", 2: ["c"]})
    with pytest.raises(ValueError, match="exactly one hypothesis string"):
        CiderD().compute_score(gts, {1: ["a b", "a"], 2: ["c"]})
    with pytest.raises(ValueError, match="missing from gts"):
        CiderD().compute_score(gts, {1: ["a"], 2: ["c"], 3: ["d"]})
    with pytest.raises(ValueError, match="without a hypothesis"):
        CiderD().compute_score(gts, {1: ["a"]})
    with pytest.raises(ValueError, match="non-empty list"):
        CiderD().compute_score({1: [], 2: ["c"]}, {1: ["a"], 2: ["c"]})
    with pytest.raises(ValueError, match="non-empty list"):
        CiderD().compute_score({1: "a b", 2: ["c"]}, {1: ["a"], 2: ["c"]})
    with pytest.raises(ValueError, match="gts is required"):
        CiderD().compute_score(None, {1: ["a"]})
    with pytest.raises(ValueError, match="needs a corpus"):
        CiderD().score([1], ["a"])
    with pytest.raises(ValueError, match="non-empty list"):
        CiderD(corpus={1: ["a"], 2: []})
    with pytest.raises(ValueError, match="corpus is empty"):
        CiderD(corpus={})
    scorer = CiderD(corpus=gts)
    with pytest.raises(ValueError, match="not in the corpus"):
        scorer.score([1, 3], ["a", "b"])
    with pytest.raises(ValueError, match="not in the corpus"):
        scorer.compute_score({3: None}, {3: ["a"]})
    with pytest.raises(ValueError, match="2 keys but 1 candidates"):
        scorer.score([1, 2], ["a"])
    with pytest.raises(ValueError, match="must be strings"):
        scorer.score([1], [["a"]])
