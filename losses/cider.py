"""CIDEr-D for evaluation and SCST rewards, vectorised with numpy.

The numbers are pycocoevalcap's ``Cider`` exactly. For each order n = 1..4, a sentence becomes a
tf-idf vector of its n-gram counts, idf = ref_len - log(max(1, df)), where df counts the images whose
references contain the n-gram and ref_len = log(#images). A hypothesis h scores against a reference
r by sum_g w_g^2 min(h_g, r_g) r_g / (|h| |r|) (counts clipped by the reference), times a Gaussian
length penalty exp(-d^2 / 2 sigma^2) where the "length" is pycocoevalcap's bigram count
max(words - 1, 0); the image score averages over n and over references, x10.

Speed: words, then n-grams, are interned to integer ids (an n-gram is found from its (n-1)-gram
prefix id and its last word), so a batch takes a few numpy sorts and searchsorted calls. References
become one table sorted by (image, order, n-gram) whose entries already carry w^2 r / |r|: a
candidate costs its own n-grams and one lookup each.
"""
from __future__ import annotations

from itertools import chain, count
from typing import Hashable, Mapping, NamedTuple, Optional, Sequence

import numpy as np


_END = np.iinfo(np.int64).max  # sentinel after sorted keys: searchsorted positions stay valid indices


class _Encoded(NamedTuple):
    """N-gram counts of sentences in groups (an image's references, or one candidate): one entry per
    (sentence, n-gram), sorted by (group, order, n-gram, sentence)."""

    group: np.ndarray   # (E,)
    sent: np.ndarray    # (E,) sentence index
    order: np.ndarray   # (E,) n-gram order minus one
    gram: np.ndarray    # (E,) n-gram id; ids >= the index's n-gram count are unknown to the index
    count: np.ndarray   # (E,) term frequency
    length: np.ndarray  # (S,) pycocoevalcap's length: the number of bigrams
    bound: int          # every gram id is < bound

    def split(self, groups: int, sents: int) -> tuple[_Encoded, _Encoded]:
        """Groups [0, groups) (sentences [0, sents)) and the rest, renumbered from 0."""
        e = int(np.searchsorted(self.group, groups))
        head = _Encoded(*(a[:e] for a in self[:5]), self.length[:sents], self.bound)
        tail = _Encoded(self.group[e:] - groups, self.sent[e:] - sents, *(a[e:] for a in self[2:5]),
                        self.length[sents:], self.bound)
        return head, tail


class _Table(NamedTuple):
    """References of a set of images: rows (image, n-gram) and their entries, one per reference."""

    keys: np.ndarray    # (R + 1,) sorted (image * n + order) * bound + gram, then _END
    start: np.ndarray   # (R + 1,) first entry of each row, then E
    slot: np.ndarray    # (E,) int16, which reference of its image
    count: np.ndarray   # (E,) int32, the reference's term frequency r
    weight: np.ndarray  # (E,) w^2 r / |r| for that reference and order
    length: np.ndarray  # (I, K) bigram counts of the references, K = most references of an image
    n_refs: np.ndarray  # (I,)
    bound: int


class _Index:
    """Interned n-grams, idf weights and reference table of a set of images (the df source).

    N-gram ids: order 0 (unigrams) first, then order 1, ...; a unigram's id is its word's id.
    """

    def __init__(self, refs: Sequence[Sequence[str]], n: int, sigma: float) -> None:
        self.n, self.sigma = n, sigma
        self.vocab: dict[str, int] = {}
        self.keys = [np.array([_END])] * n  # per order >= 1: sorted prefix id * len(vocab) + word id
        self.offset = np.zeros(n + 1, np.int64)  # ids of order k are offset[k] <= id < offset[k + 1]
        n_refs = np.array([len(r) for r in refs])
        enc, words, keys = self.encode(list(chain.from_iterable(refs)), n_refs)
        # The index was empty, so every n-gram was new and its id is offset[k] + its rank in keys[k].
        self.vocab = {w: i for i, w in enumerate(words)}
        self.keys = [np.append(k, _END) for k in keys]
        self.offset = np.cumsum([0] + [len(k) for k in keys])
        self.ref_len = float(np.log(float(len(refs))))
        self.table = self.make_table(enc, n_refs, own=True)

    def encode(self, strings: Sequence[str], sizes: Optional[np.ndarray] = None
               ) -> tuple[_Encoded, list[str], list[np.ndarray]]:
        """N-gram counts of `strings`, plus the words and per-order keys the index lacks.

        sizes: the sentences form groups of sizes[i] consecutive ones (default: one each).
        N-grams unknown to the index get ids from offset[-1] up, consistent within this call.
        """
        toks = list(map(str.split, strings))
        n_words = np.fromiter(map(len, toks), np.int64, len(toks))
        flat = list(chain.from_iterable(toks))
        new = [w for w in dict.fromkeys(flat) if w not in self.vocab]
        ids = self.vocab | dict(zip(new, count(len(self.vocab))))
        words = np.fromiter(map(ids.__getitem__, flat), np.int64, len(flat))
        sent = np.repeat(np.arange(len(toks)), n_words)
        known_v, all_v, total = len(self.vocab), len(self.vocab) + len(new), int(self.offset[-1])
        gram = np.where(words < known_v, words, words - known_v + total)
        sents, grams, new_keys, n_new = [sent], [gram], [np.arange(known_v, all_v)], len(new)
        for k in range(1, self.n):
            m = max(len(words) - k, 0)
            ok = sent[:m] == sent[k:]  # the (k+1)-gram starting here stays in one sentence
            pre, last = gram[:m][ok], words[k:][ok]
            gram = np.full(len(last), -1, np.int64)
            # Known prefix and known last word: maybe a known n-gram, found by its key.
            maybe = np.flatnonzero((pre < self.offset[k]) & (last < known_v))
            key = pre[maybe] * known_v + last[maybe]
            o = np.argsort(key)  # searchsorted is several times faster on ascending queries (cache)
            pos = np.searchsorted(self.keys[k], key[o])
            found = self.keys[k][pos] == key[o]
            gram[maybe[o[found]]] = self.offset[k] + pos[found]
            unknown = gram < 0
            uniq, inv = np.unique((pre * all_v + last)[unknown], return_inverse=True)
            gram[unknown] = total + n_new + inv
            n_new += len(uniq)
            new_keys.append(uniq)
            sents.append(sent[:m][ok])
            grams.append(gram)
            gram = np.full(m, -1, np.int64)  # the prefix ids of the next order, by start position
            gram[ok] = grams[-1]
        # Count each (group, order, n-gram, sentence) with one sort of int64 codes.
        sizes = np.ones(len(toks), np.int64) if sizes is None else sizes
        bound, width = total + n_new, int(sizes.max(initial=1))
        if (len(sizes) + 1) * self.n * bound * width >= 2**63:
            raise ValueError("too many n-grams for int64 codes")
        first = np.cumsum(sizes) - sizes
        sent = np.concatenate(sents)  # (P,) sentence of each n-gram position, all orders
        g = np.repeat(np.arange(len(sizes)), sizes)[sent]
        order = np.repeat(np.arange(self.n), [len(x) for x in sents])
        code = ((g * self.n + order) * bound + np.concatenate(grams)) * width + sent - first[g]
        code, tf = np.unique(code, return_counts=True)
        code, slot = np.divmod(code, width)
        code, gram = np.divmod(code, bound)
        g, order = np.divmod(code, self.n)
        length = np.maximum(n_words - 1, 0) if self.n > 1 else np.zeros_like(n_words)
        return _Encoded(g, first[g] + slot, order, gram, tf, length, bound), new, new_keys

    def weights(self, gram: np.ndarray) -> np.ndarray:
        """idf of each n-gram (ref_len for unknown ones)."""
        return self.idf[np.minimum(gram, len(self.idf) - 1)]

    def make_table(self, enc: _Encoded, n_refs: np.ndarray, own: bool = False) -> _Table:
        """Reference table of images whose n_refs[i] references are `enc`'s groups, in order.

        own: these are the index's references, which define the document frequencies.
        """
        n, n_sent = self.n, len(enc.length)
        key = (enc.group * n + enc.order) * enc.bound + enc.gram  # sorted already
        start = np.flatnonzero(np.diff(key, prepend=-1))  # one row per (image, n-gram)
        if own:  # df[g] = number of rows, i.e. of images, holding g; unknown n-grams (last) have none
            df = np.bincount(enc.gram[start], minlength=int(self.offset[-1]) + 1)
            self.idf = self.ref_len - np.log(np.maximum(df, 1.0))
        w = self.weights(enc.gram)
        tf = enc.count * w
        seg = enc.sent * n + enc.order
        norm = np.sqrt(np.bincount(seg, tf**2, minlength=n_sent * n))
        norm[norm == 0] = 1.0  # its weights are all zero
        image = np.repeat(np.arange(len(n_refs)), n_refs)
        slot = np.arange(n_sent) - (np.cumsum(n_refs) - n_refs)[image]
        length = np.zeros((len(n_refs), int(n_refs.max())))
        length[image, slot] = enc.length
        # Narrow integer types: a training corpus has tens of millions of entries.
        return _Table(np.append(key[start], _END), np.append(start, len(key)), slot[enc.sent].astype(np.int16),
                      enc.count.astype(np.int32), w * tf / norm[seg], length, n_refs, enc.bound)

    def score(self, table: _Table, image: np.ndarray, enc: _Encoded) -> np.ndarray:
        """CIDEr-D of candidate sentence c (of `enc`) against the references of table image image[c]."""
        n, n_cand = self.n, len(enc.length)
        w = self.weights(enc.gram)
        seg = enc.sent * n + enc.order
        norm = np.sqrt(np.bincount(seg, (enc.count * w) ** 2, minlength=n_cand * n))
        norm[norm == 0] = 1.0  # a zero-norm vector has zero dot products anyway
        # Ids >= table.bound are absent from the table and would alias another row.
        hit = np.flatnonzero(enc.gram < table.bound)
        key = (image[enc.sent[hit]] * n + enc.order[hit]) * table.bound + enc.gram[hit]
        pos = np.searchsorted(table.keys, key)  # faster when `image` ascends: the keys do too
        found = table.keys[pos] == key
        hit, pos = hit[found], pos[found]
        # Expand each matched row into its reference entries: src = candidate entry, ref = table entry.
        size = table.start[pos + 1] - table.start[pos]
        src = np.repeat(hit, size)
        ref = np.repeat(table.start[pos] - np.cumsum(size) + size, size) + np.arange(int(size.sum()))
        cand = enc.sent[src]
        penalty = np.exp(-((enc.length[:, None] - table.length[image]) ** 2) / (2 * self.sigma**2))  # (C, K)
        value = (np.minimum(enc.count[src], table.count[ref]) * table.weight[ref]
                 * penalty[cand, table.slot[ref]] / norm[seg[src]])
        return 10.0 * np.bincount(cand, value, minlength=n_cand) / (n * table.n_refs[image])


def _check_refs(refs: object, name: str) -> Sequence[str]:
    """`refs` itself, if it is a non-empty list of strings."""
    if not isinstance(refs, (list, tuple)) or not refs or not all(isinstance(r, str) for r in refs):
        raise ValueError(f"{name} must be a non-empty list of reference strings, got {refs!r:.200}")
    return refs


class CiderD:
    """CIDEr-D scorer with pycocoevalcap's interface, plus a cached-corpus mode for SCST rewards.

    Without `corpus`, document frequencies come from the `gts` of each call (pycocoevalcap's
    numbers). With `corpus` ({image key: [reference strings]}, e.g. the training references with
    the reward tokenisation), df and ref_len = log(#corpus images) come from it once, and its
    reference vectors are cached, so `score` only processes the candidates.
    """

    def __init__(self, n: int = 4, sigma: float = 6.0,
                 corpus: Optional[Mapping[Hashable, Sequence[str]]] = None) -> None:
        if n < 1 or sigma <= 0:
            raise ValueError(f"need n >= 1 and sigma > 0, got n={n}, sigma={sigma}")
        self.n, self.sigma = n, sigma
        self._corpus: Optional[_Index] = None
        self._rows: dict[Hashable, int] = {}
        if corpus is not None:
            if not corpus:
                raise ValueError("corpus is empty")
            keys = list(corpus)
            self._corpus = _Index([_check_refs(corpus[k], f"corpus[{k!r}]") for k in keys], n, sigma)
            self._rows = {k: i for i, k in enumerate(keys)}

    def score(self, keys: Sequence[Hashable], candidates: Sequence[str]) -> np.ndarray:
        """CIDEr-D of candidates[i] against the corpus references of keys[i] (keys may repeat); (N,)."""
        if self._corpus is None:
            raise ValueError("score() needs a corpus: build CiderD(corpus=...) or use compute_score")
        if len(keys) != len(candidates):
            raise ValueError(f"{len(keys)} keys but {len(candidates)} candidates")
        if not all(isinstance(c, str) for c in candidates):
            raise ValueError("candidates must be strings")
        missing = [k for k in keys if k not in self._rows]
        if missing:
            raise ValueError(f"{len(missing)} keys are not in the corpus, e.g. {missing[0]!r}")
        image = np.fromiter(map(self._rows.__getitem__, keys), np.int64, len(keys))
        o = np.argsort(image, kind="stable")  # in image order, the table lookups are faster
        enc = self._corpus.encode([candidates[i] for i in o])[0]
        out = np.empty(len(keys))
        out[o] = self._corpus.score(self._corpus.table, image[o], enc)
        return out

    def compute_score(self, gts: Optional[Mapping[Hashable, Optional[Sequence[str]]]],
                      res: Mapping[Hashable, Sequence[str]]) -> tuple[float, np.ndarray]:
        """(mean, per-image scores in the order of `gts`), like pycocoevalcap's Cider.compute_score.

        res[key] is a one-string list; `gts` has the same keys. With a corpus, `gts` may be None
        (scores then follow `res`'s order) and a None value stands for the corpus references; given
        references are scored with the corpus's document frequencies.
        """
        for k, v in res.items():
            if not isinstance(v, (list, tuple)) or len(v) != 1 or not isinstance(v[0], str):
                raise ValueError(f"res[{k!r}] must be a list of exactly one hypothesis string, got {v!r:.200}")
        if gts is None and self._corpus is None:
            raise ValueError("gts is required without a corpus")
        if not res:
            raise ValueError("nothing to score: res is empty")
        if gts is not None and gts.keys() != res.keys():
            missing, extra = [k for k in res if k not in gts], [k for k in gts if k not in res]
            raise ValueError(f"gts and res must have the same keys: {len(missing)} res keys missing from gts "
                             f"{missing[:3]!r}..., {len(extra)} gts keys without a hypothesis {extra[:3]!r}...")
        keys = list(res if gts is None else gts)
        cands = [res[k][0] for k in keys]
        if self._corpus is None:
            index = _Index([_check_refs(gts[k], f"gts[{k!r}]") for k in keys], self.n, self.sigma)
            scores = index.score(index.table, np.arange(len(keys)), index.encode(cands)[0])
            return float(scores.mean()), scores
        cached = [i for i, k in enumerate(keys) if gts is None or gts[k] is None]
        given = [i for i, k in enumerate(keys) if gts is not None and gts[k] is not None]
        scores = np.empty(len(keys))
        if cached:
            scores[cached] = self.score([keys[i] for i in cached], [cands[i] for i in cached])
        if given:
            refs = [_check_refs(gts[keys[i]], f"gts[{keys[i]!r}]") for i in given]
            scores[given] = self._score_given(refs, [cands[i] for i in given])
        return float(scores.mean()), scores

    def _score_given(self, refs: list[Sequence[str]], cands: list[str]) -> np.ndarray:
        """cands[i] against refs[i], with the corpus's document frequencies."""
        n_refs = np.array([len(r) for r in refs])
        # One encoding for both, so n-grams the corpus lacks get the same ids in references and candidates.
        strings = list(chain.from_iterable(refs)) + cands
        enc = self._corpus.encode(strings, np.r_[n_refs, np.ones(len(cands), np.int64)])[0]
        enc_refs, enc_cands = enc.split(len(refs), int(n_refs.sum()))
        table = self._corpus.make_table(enc_refs, n_refs)
        return self._corpus.score(table, np.arange(len(refs)), enc_cands)
