"""The fused score of a pair (docs/DESIGN.md section 2: Match), in its two uses.

A pair's fused score is ``S = w * z(s_emb) + (1 - w) * z(l)``: ``s_emb`` the embedding similarity,
``l`` the caption decoder's length-normalised log-likelihood of the caption given the image, each
standardised (z-scores, so the two scales meet), and ``w`` picked on val from :data:`WEIGHT_GRID`
by :func:`best_weight`.

Ranking captions for an image by ``l`` favours captions every image makes likely (short, frequent
phrasings). With the caption prior (:func:`with_caption_prior`, ``look.fused_caption_prior``) the
image-to-text side ranks by ``l`` less the caption's mean ``l`` over its own top-``K`` images, a
pointwise-mutual-information-style correction that costs no extra decoder pass. Text-to-image needs
none: its candidates share the caption, so the per-query z-score already removes it.

- **Re-ranked retrieval** (:class:`FusedRetrieval`): the embedding's top ``K`` for every query,
  standardised per query over those candidates and re-ordered by ``S``; items outside the top ``K``
  keep their embedding order below them; ``w`` maximises val rsum. The log-likelihoods of all
  candidate pairs are computed once, so trying every weight costs only re-scoring.
- **Scoring any pair** (:class:`PairScorer`): standardised with val's statistics; ``w`` maximises
  the val AUROC of telling each image's own caption from another image's, and a threshold on
  ``S`` flags suspect pairs. Its caption prior is the caption's mean over fixed val images.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Optional

import numpy as np
import torch

from data.datasets import ImageDataset, collate_images, encode_texts, image_transform
from data.records import Split
from data.sources import load_split
from data.vocab import Vocabulary
from metrics.pairs import auroc, best_threshold
from metrics.retrieval import fold_blocks, protocol_folds, recall_metrics
from models.modes import eval_mode
from runfolder.folder import require_decoder

from .report_md import retrieval_section
from .retrieval import encode_split

LogLik = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (image idx (P,), caption idx (P,)) -> (P,)


def decoder_loglik(decoder, image_features: torch.Tensor, captions: torch.Tensor, lengths: torch.Tensor,
                   device: torch.device, batch_size: int = 2048) -> LogLik:
    """A :data:`LogLik` over a split: grounded image features ``(N, D)``, padded captions ``(M, T)``.

    Pairs are scored ``batch_size`` at a time (each chunk trimmed to its longest caption), with
    the decoder in eval mode (no dropout).
    """
    @torch.no_grad()
    def loglik(img: np.ndarray, cap: np.ndarray) -> np.ndarray:
        out = []
        with eval_mode(decoder):
            for start in range(0, len(img), batch_size):
                i = torch.as_tensor(img[start:start + batch_size])
                c = torch.as_tensor(cap[start:start + batch_size])
                length = lengths[c]
                ids = captions[c, : int(length.max())]
                out.append(decoder.log_likelihood(image_features[i].to(device), ids.to(device), length).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)

    return loglik


def _zscore(x: np.ndarray) -> np.ndarray:
    """Standardise each row ``(Q, K)``; a row with no spread becomes zeros."""
    std = x.std(axis=1, keepdims=True)
    return np.where(std > 0, (x - x.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1), 0.0)


@dataclass
class Candidates:
    """Top-``K`` candidates per query, both directions: indices, embedding scores, log-likelihoods."""

    i2t_idx: np.ndarray  # (N, K) caption indices per image
    i2t_emb: np.ndarray
    i2t_ll: np.ndarray
    t2i_idx: np.ndarray  # (M, K) image indices per caption
    t2i_emb: np.ndarray
    t2i_ll: np.ndarray


def candidates(sims: np.ndarray, k: int, loglik: LogLik, image_offset: int = 0, caption_offset: int = 0) -> Candidates:
    """The embedding's top ``k`` of every query of ``sims (N, M)`` and their pair log-likelihoods.

    ``loglik`` gets split-level indices: block indices plus the offsets (for protocol folds).
    """
    n, m = sims.shape
    ki, kt = min(k, m), min(k, n)
    i2t = np.argsort(-sims, axis=1, kind="stable")[:, :ki]  # (N, K)
    t2i = np.argsort(-sims, axis=0, kind="stable")[:kt].T  # (M, K)
    rows_i = np.repeat(np.arange(n), ki)
    cols_t = np.repeat(np.arange(m), kt)
    ll = loglik(np.concatenate([rows_i, t2i.ravel()]) + image_offset,
                np.concatenate([i2t.ravel(), cols_t]) + caption_offset)
    return Candidates(i2t, np.take_along_axis(sims, i2t, 1), ll[: n * ki].reshape(n, ki),
                      t2i, np.take_along_axis(sims.T, t2i, 1), ll[n * ki:].reshape(m, kt))


def with_caption_prior(cand: Candidates) -> Candidates:
    """``cand`` with each image-to-text log-likelihood less that caption's mean log-likelihood over
    its text-to-image candidates (its own top-``K`` images): the caption's prior, taken out."""
    prior = cand.t2i_ll.mean(axis=1)  # (M,)
    return replace(cand, i2t_ll=cand.i2t_ll - prior[cand.i2t_idx])


WEIGHT_GRID = np.linspace(0, 1, 11)  # the embedding's share of the fused score


def combine(z_emb: np.ndarray, z_ll: np.ndarray, weight: float) -> np.ndarray:
    """``w * z_emb + (1 - w) * z_ll`` of already standardised scores."""
    return weight * z_emb + (1 - weight) * z_ll


def best_weight(objective: Callable[[float], float], grid: np.ndarray = WEIGHT_GRID) -> tuple[float, float]:
    """The grid weight with the highest ``objective`` (ties: the larger weight), and that value."""
    value, weight = max((objective(float(w)), float(w)) for w in grid)
    return weight, value


def fused_scores(emb: np.ndarray, ll: np.ndarray, weight: float) -> np.ndarray:
    """The fused score per query row ``(Q, K)``, each row standardised on its own."""
    return combine(_zscore(emb), _zscore(ll), weight)


def reranked(sims: np.ndarray, cand: Candidates, weight: float) -> tuple[np.ndarray, np.ndarray]:
    """Score matrices ``(N, M)`` for i2t and t2i in which every query's top ``K`` sit above all its
    other items, ordered by the fused score; the rest keep their embedding order."""
    low = sims.astype(np.float64) - float(sims.max()) - 1.0  # every entry <= -1
    i2t, t2i = low.copy(), low.copy()
    f_i = fused_scores(cand.i2t_emb, cand.i2t_ll, weight)
    f_t = fused_scores(cand.t2i_emb, cand.t2i_ll, weight)
    np.put_along_axis(i2t, cand.i2t_idx, f_i - f_i.min(axis=1, keepdims=True), 1)  # >= 0
    np.put_along_axis(t2i.T, cand.t2i_idx, f_t - f_t.min(axis=1, keepdims=True), 1)
    return i2t, t2i


def _metrics(sims: np.ndarray, cand: Candidates, weight: float, cpi: int) -> dict:
    i2t, t2i = reranked(sims, cand, weight)
    a, b = recall_metrics(i2t, cpi), recall_metrics(t2i, cpi)
    rsum = sum(a["i2t"][f"r{k}"] + b["t2i"][f"r{k}"] for k in (1, 5, 10))
    return {"i2t": a["i2t"], "t2i": b["t2i"], "rsum": rsum, "ties": {"i2t": a["ties"]["i2t"], "t2i": b["ties"]["t2i"]},
            "n_images": a["n_images"], "n_captions": a["n_captions"]}


class FusedRetrieval:
    """Candidates of one split under one protocol, computed once; :meth:`metrics` for any weight."""

    def __init__(self, sims: np.ndarray, loglik: LogLik, k: int, protocol: str, captions_per_image: int = 5,
                 caption_prior: bool = True):
        self.sims, self.cpi, self.protocol = np.asarray(sims, dtype=np.float64), captions_per_image, protocol
        n = self.sims.shape[0]
        self.blocks = [(self.sims[rows, cols], rows.start, cols.start)
                       for rows, cols in fold_blocks(n, protocol_folds(protocol, n), captions_per_image)]
        self.cands = [candidates(block, k, loglik, io, co) for block, io, co in self.blocks]
        if caption_prior:
            self.cands = [with_caption_prior(c) for c in self.cands]

    def metrics(self, weight: float) -> dict:
        """Metrics in :func:`recall_metrics`' format (means over folds for ``1k``)."""
        per_fold = [_metrics(block, cand, weight, self.cpi) for (block, _, _), cand in zip(self.blocks, self.cands)]
        if len(per_fold) == 1:
            return per_fold[0]
        mean = {d: {key: float(np.mean([f[d][key] for f in per_fold])) for key in per_fold[0][d]}
                for d in ("i2t", "t2i", "ties")}
        mean["rsum"] = float(np.mean([f["rsum"] for f in per_fold]))
        mean["n_images"], mean["n_captions"] = per_fold[0]["n_images"], per_fold[0]["n_captions"]
        return mean

    def best_weight(self, grid: np.ndarray = WEIGHT_GRID) -> tuple[float, float]:
        """The grid weight with the highest rsum (ties: the larger weight), and that rsum."""
        return best_weight(lambda w: self.metrics(w)["rsum"], grid)


def split_captions(split, vocab, max_len: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Every caption of ``split`` in protocol order as padded ids ``(kN, T)`` and lengths ``(kN,)``."""
    return encode_texts(split.flat_captions(), vocab, max_len)


def fused_retrieval(model, split, vocab, data_cfg, device: torch.device, k: int, protocol: str,
                    embeddings: tuple, batch_size: int = 2048, caption_prior: bool = True) -> FusedRetrieval:
    """:class:`FusedRetrieval` of ``split`` from its embeddings ``(img, cap)`` and ``model.decoder``."""
    img, cap = embeddings
    sims = model.matcher.similarity(img, cap).numpy()
    ids, lengths = split_captions(split, vocab, data_cfg.max_caption_len)
    loglik = decoder_loglik(model.decoder, img["grounded"], ids, lengths, device, batch_size)
    return FusedRetrieval(sims, loglik, k, protocol, data_cfg.captions_per_image, caption_prior)


@torch.no_grad()
def raw_pair_scores(model, images: torch.Tensor, captions: list[str], vocab: Vocabulary, max_len: int,
                    device: torch.device, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Embedding similarity and caption log-likelihood ``(P,)`` each of pairs (``images[p]``, ``captions[p]``)."""
    with eval_mode(model):
        emb, ll = [], []
        for start in range(0, len(captions), batch):
            x = images[start:start + batch].to(device)
            ids, lengths = encode_texts(captions[start:start + batch], vocab, max_len)
            img = model.matcher.encode_images(x)
            cap = model.matcher.encode_captions(ids.to(device), lengths)
            emb.append(model.matcher.paired_similarity(img, cap).float().cpu())
            ll.append(model.decoder.log_likelihood(img["grounded"], ids.to(device), lengths).float().cpu())
        return torch.cat(emb).numpy(), torch.cat(ll).numpy()


PRIOR_IMAGES = 10  # fixed val images over which PairScorer averages a caption's prior


class PairScorer:
    """Fused pair score ``w * z(s_emb) + (1 - w) * z(l)`` with z-scores, weight and suspect
    threshold all fitted on val: each val image's first caption (correct) and the first caption of
    the next image (wrong). ``w`` maximises val AUROC; the threshold maximises balanced accuracy.

    With ``caption_prior`` (``look.fused_caption_prior``) ``l`` is the likelihood less the caption's
    prior, its mean log-likelihood over :data:`PRIOR_IMAGES` fixed val images (evenly spaced), so a
    caption every image makes likely does not pass with any image; callers holding raw likelihoods
    go through :meth:`likelihood` before :meth:`fuse`."""

    def __init__(self, model, val: Split, vocab: Vocabulary, data_cfg, device: torch.device,
                 caption_prior: bool = True):
        require_decoder(model, "the fused pair score")
        self.model, self.vocab, self.data_cfg, self.device = model, vocab, data_cfg, device
        dataset = ImageDataset(val, image_transform(data_cfg, train=False))
        images = collate_images([dataset[i] for i in range(val.num_images)])[0]
        n = val.num_images
        self.prior_features = None
        if caption_prior:
            reference = images[np.linspace(0, n - 1, min(PRIOR_IMAGES, n)).astype(int)]
            with torch.no_grad(), eval_mode(model):
                self.prior_features = model.matcher.encode_images(reference.to(device))["grounded"]  # (R, D)
        true = [val.captions[i][0] for i in range(n)]
        wrong = [val.captions[(i + 1) % n][0] for i in range(n)]
        emb, ll = raw_pair_scores(model, torch.cat([images, images]), true + wrong, vocab,
                                  data_cfg.max_caption_len, device)
        ll = self.likelihood(ll, true + wrong)
        labels = np.r_[np.ones(n), np.zeros(n)]
        self.stats = (emb.mean(), emb.std() or 1.0, ll.mean(), ll.std() or 1.0)
        self.weight = best_weight(lambda w: auroc(self._fuse(emb, ll, w), labels))[0]
        fused = self._fuse(emb, ll, self.weight)
        self.val_auroc = auroc(fused, labels)
        self.threshold, self.val_balanced_accuracy = best_threshold(fused, labels)

    @torch.no_grad()
    def caption_prior(self, captions: list[str], batch: int = 256) -> np.ndarray:
        """``(P,)`` each caption's mean log-likelihood over the reference val images."""
        feats, out = self.prior_features, []
        r = len(feats)
        with eval_mode(self.model):
            for start in range(0, len(captions), batch):
                ids, lengths = encode_texts(captions[start:start + batch], self.vocab, self.data_cfg.max_caption_len)
                ll = self.model.decoder.log_likelihood(feats.repeat(len(ids), 1), ids.repeat_interleave(r, 0).to(self.device),
                                                       lengths.repeat_interleave(r))
                out.append(ll.float().view(len(ids), r).mean(1).cpu())
        return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)

    def likelihood(self, ll: np.ndarray, captions: list[str]) -> np.ndarray:
        """Raw log-likelihoods ``(P,)`` of pairs with ``captions`` as :meth:`fuse` reads them: less each
        caption's prior when the scorer takes it out, unchanged otherwise."""
        return ll if self.prior_features is None else ll - self.caption_prior(captions)

    def _fuse(self, emb: np.ndarray, ll: np.ndarray, weight: float) -> np.ndarray:
        me, se, ml, sl = self.stats
        return combine((emb - me) / se, (ll - ml) / sl, weight)

    def fuse(self, emb: np.ndarray, ll: np.ndarray) -> np.ndarray:
        """The fitted fused score of raw embedding similarities and :meth:`likelihood` values."""
        return self._fuse(emb, ll, self.weight)

    def score(self, images: torch.Tensor, captions: list[str]) -> np.ndarray:
        """Fused scores ``(P,)`` of normalised images ``(P, 3, S, S)`` with their captions."""
        emb, ll = raw_pair_scores(self.model, images, captions, self.vocab, self.data_cfg.max_caption_len, self.device)
        return self.fuse(emb, self.likelihood(ll, captions))


def val_weight(model, cfg, vocab, k: int, device, progress: bool = False,
               caption_prior: Optional[bool] = None) -> tuple[float, float]:
    """The fused weight for re-ranking ``k`` candidates picked on the whole val split, and its val rsum;
    ``caption_prior`` defaults to ``look.fused_caption_prior``."""
    caption_prior = cfg.look.fused_caption_prior if caption_prior is None else caption_prior
    val = load_split(cfg.data, "val")
    val_emb = encode_split(model.matcher, val, vocab, cfg.data, device, cfg.train.eval_batch_size, progress)
    return fused_retrieval(model, val, vocab, cfg.data, device, k, "full", val_emb,
                           caption_prior=caption_prior).best_weight()


def fused_section(model, cfg, vocab, data, embeddings, protocol: str, k: int, device, progress: bool,
                  caption_prior: Optional[bool] = None) -> dict:
    """``retrieval.fused``: the fused weight picked on val (full val split), then applied to ``data``;
    ``caption_prior`` defaults to ``look.fused_caption_prior``."""
    prior = cfg.look.fused_caption_prior if caption_prior is None else caption_prior
    weight, val_rsum = val_weight(model, cfg, vocab, k, device, progress, prior)
    metrics = fused_retrieval(model, data, vocab, cfg.data, device, k, protocol, embeddings,
                              caption_prior=prior).metrics(weight)
    section = retrieval_section({"protocols": {protocol: metrics}, "primary": protocol})["embedding"]
    return {**section, "protocol": protocol, "k": k, "weight": weight, "val_rsum": round(val_rsum, 2),
            "caption_prior": prior}
