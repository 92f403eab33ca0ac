"""Rank every (image, caption) pair of a split by how likely it is to be wrong, with no labels.

Signals per pair: the fused pair score (embedding similarity + caption log-likelihood, fitted on
val), the pair's ranking loss in a batch of other pairs (hardest negatives, as training sees it),
the clean probability of that loss under a two-component mixture, for robust runs the loss that
training last recorded for the pair, and, for runs with the GAN, the matching-aware
discriminator's logit for the real image with the caption's condition. They are combined into one
``suspicion`` by averaging each pair's rank percentile under every signal.
"""
from __future__ import annotations

import csv
import html
import io
from dataclasses import replace
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from data.atomic import write_text_atomic
from data.datasets import ImageDataset, collate_images, encode_texts, gan_images, image_transform
from data.records import ImageSource, Split
from data.vocab import Vocabulary
from losses.ranking import RankingLoss
from metrics.loss_mixture import clean_probability
from models.lim import LIM
from models.modes import eval_mode
from models.t2i_gan import Discriminator
from runfolder.checkpoint import load_checkpoint
from runfolder.folder import RunFolder

from .fused import PairScorer
from .report_html import STYLE, thumbnail
from .retrieval import encode_split
from .wrong_pairs import detection_metrics, split_pair_scores, wrong_pair_labels


@torch.no_grad()
def pair_ranking_losses(model: LIM, split: Split, vocab: Vocabulary, cfg, device: torch.device, seed: int = 0,
                        progress: bool = False) -> np.ndarray:
    """``(M,)`` each pair's ranking loss (both directions, hardest negative) in a random batch of
    ``data.batch_size`` pairs of the split (fixed ``seed``), from embeddings encoded once."""
    img, cap = encode_split(model.matcher, split, vocab, cfg.data, device, cfg.train.eval_batch_size, progress)
    owner = torch.as_tensor(np.repeat(np.arange(split.num_images), [len(c) for c in split.captions]))
    loss_fn = RankingLoss(cfg.model.measure, cfg.loss.margin)
    order = torch.as_tensor(np.random.default_rng(seed).permutation(len(owner)))
    out = torch.zeros(len(owner))
    for start in range(0, len(order), cfg.data.batch_size):
        idx = order[start:start + cfg.data.batch_size]
        total = sum(w * loss_fn(img[b][owner[idx]], cap[b][idx], image_ids=owner[idx], max_violation=True,
                                per_pair=True)
                    for b, w in model.matcher.branch_weights.items() if w)
        out[idx] = total
    return out.numpy()


@torch.no_grad()
def discriminator_logits(model: LIM, discriminator, split: Split, vocab: Vocabulary, cfg, device: torch.device,
                         images_per_batch: int = 64) -> np.ndarray:
    """``(M,)`` the matching-aware D's logit for each real image with each of its captions' conditions."""
    with eval_mode(discriminator):
        loader = DataLoader(ImageDataset(split, image_transform(cfg.data, train=False)), batch_size=images_per_batch,
                            collate_fn=collate_images)
        logits, start = [], 0
        for batch in loader:
            x = batch[0].to(device)
            caps = split.captions[start:start + len(x)]
            owner = torch.repeat_interleave(torch.arange(len(x)), torch.tensor([len(c) for c in caps])).to(device)
            start += len(x)
            ids, lengths = encode_texts([c for cs in caps for c in cs], vocab, cfg.data.max_caption_len)
            text = model.matcher.encode_captions(ids.to(device), lengths)["grounded"]
            _, mu, _ = model.imagine.ca(text, sample=False)
            logits.append(discriminator(gan_images(x, cfg.imagine.image_size)[owner], mu).float().cpu())
        return torch.cat(logits).numpy()


def load_discriminator(run_dir: str, cfg, which: str = "best") -> Optional[Discriminator]:
    """The run's matching-aware discriminator (strictly loaded), or None if the run has none."""
    state = load_checkpoint(RunFolder(run_dir).checkpoint(which)).get("critic")
    if not state:
        return None
    d = Discriminator(cfg.imagine.c_dim, cfg.imagine.image_size, cfg.imagine.d_width)
    d.load_state_dict(state["model"], strict=True)
    return d


class PlaceholderImages(ImageSource):
    """An image source whose missing files read as a grey image (their pairs' signals are then
    discarded), so one lost file does not stop an audit of a large collection."""

    def __init__(self, inner: ImageSource, missing: set, size: int):
        self.inner, self.missing, self.size = inner, missing, size
        self.kind = inner.kind

    def __len__(self) -> int:
        return len(self.inner)

    def load(self, index: int):
        return Image.new("RGB", (self.size, self.size), (128, 128, 128)) if index in self.missing else self.inner.load(index)

    def describe(self, index: int) -> str:
        return self.inner.describe(index)


def missing_images(split: Split) -> list[int]:
    """Indices of images whose files do not exist (sources without files have none)."""
    exists = getattr(split.images, "exists", None)
    return [i for i in range(split.num_images) if not exists(i)] if exists else []


def audit_split(run_dir: str, model: LIM, cfg, vocab: Vocabulary, split: Split, val: Split, device: torch.device,
                progress: bool = False) -> dict:
    """Every signal for every pair of ``split`` (flat caption order), as numpy arrays, plus notes.
    Pairs whose image file is missing get NaN signals and are listed in ``missing``."""
    missing = missing_images(split)
    if missing:
        split = replace(split, images=PlaceholderImages(split.images, set(missing), cfg.data.image_size))
    result = _signals(run_dir, model, cfg, vocab, split, val, device, progress)
    if missing:
        k = split.num_captions // max(split.num_images, 1)
        lost = np.concatenate([np.arange(i * k, (i + 1) * k) for i in missing])
        for name, values in result["signals"].items():
            values = values.astype(np.float64)
            values[lost] = np.nan
            result["signals"][name] = values
        result["notes"].append(f"{len(missing)} image files are missing, their pairs are not scored: "
                               + ", ".join(split.images.describe(i) for i in missing[:10])
                               + (" ..." if len(missing) > 10 else ""))
    result["missing"] = [split.images.describe(i) for i in missing]
    return result


def _signals(run_dir: str, model: LIM, cfg, vocab: Vocabulary, split: Split, val: Split, device: torch.device,
             progress: bool) -> dict:
    notes = []
    signals: dict[str, np.ndarray] = {}
    if model.decoder is not None:
        scorer = PairScorer(model, val, vocab, cfg.data, device, cfg.look.fused_caption_prior)
        emb, ll = split_pair_scores(model, split, vocab, cfg.data, device, progress=progress)
        signals["score"] = scorer.fuse(emb, scorer.likelihood(ll, split.flat_captions()))
        signals["suspect"] = (signals["score"] < scorer.threshold).astype(np.int64)
    else:
        notes.append("no caption decoder (look.lambda_i2t=0): the score is the embedding similarity alone; "
                     "train with look.lambda_i2t=1 for the fused score with the caption likelihood")
        emb, _ = split_pair_scores(model, split, vocab, cfg.data, device, progress=progress)
        signals["score"] = emb
    signals["ranking_loss"] = pair_ranking_losses(model, split, vocab, cfg, device, progress=progress)
    signals["clean_probability"] = clean_probability(signals["ranking_loss"])
    recorded = load_checkpoint(RunFolder(run_dir).checkpoint("last")).get("pair_losses") if split.name == "train" \
        else None
    if recorded is not None and len(recorded["losses"]) == split.num_captions:
        signals["recorded_loss"] = recorded["losses"].numpy()  # each pair's loss when training last saw it
    discriminator = load_discriminator(run_dir, cfg) if model.imagine is not None else None
    if discriminator is not None:
        signals["d_logit"] = discriminator_logits(model, discriminator.to(device), split, vocab, cfg, device)
    else:
        notes.append("no discriminator in this run (imagine.lambda_t2i=0): no d_logit signal")
    signals["suspicion"] = combined_suspicion(signals)
    return {"signals": signals, "notes": notes}


# Each signal's direction: +1 when a larger value is more suspect.
SUSPECT_DIRECTION = {"score": -1, "ranking_loss": 1, "recorded_loss": 1, "d_logit": -1}


def combined_suspicion(signals: dict) -> np.ndarray:
    """``(M,)`` in [0, 1]: the mean over the signals of :data:`SUSPECT_DIRECTION` present of each
    pair's rank percentile by that signal's suspicion (1 = the most suspect pair by every signal).
    Ranks make the signals' different scales comparable. A signal that could not score a pair (a
    pair training never saw has no recorded loss) is left out of that pair's mean; a pair no signal
    scored (its image is missing) stays NaN."""
    parts = []
    for name, direction in SUSPECT_DIRECTION.items():
        if name not in signals:
            continue
        values = direction * np.asarray(signals[name], dtype=np.float64)
        finite = np.isfinite(values)
        ranks = np.full(len(values), np.nan)
        order = np.argsort(values[finite], kind="stable")
        pct = np.empty(len(order))
        pct[order] = np.arange(len(order)) / max(len(order) - 1, 1)
        ranks[finite] = pct
        parts.append(ranks)
    parts = np.stack(parts)
    seen = np.isfinite(parts).sum(0)
    total = np.where(np.isfinite(parts), parts, 0.0).sum(0)
    return np.where(seen > 0, total / np.maximum(seen, 1), np.nan)


def detection_summary(signals: dict, wrong: np.ndarray) -> dict:
    """AUROC / AP of each signal at finding the known wrong pairs (higher suspicion = more likely wrong)."""
    suspicion = {name: direction * signals[name] for name, direction in SUSPECT_DIRECTION.items() if name in signals}
    suspicion["clean_probability"] = -signals["clean_probability"]
    if "suspicion" in signals:
        suspicion["combined"] = signals["suspicion"]
    out = {}
    for name, s in suspicion.items():
        scored = np.isfinite(signals["score"]) & np.isfinite(s)  # pairs with a missing image are left out
        out[name] = detection_metrics(s[scored], wrong[scored])
    return out


def write_csv(path: str, split: Split, signals: dict, order: np.ndarray, wrong: Optional[np.ndarray]) -> None:
    flat = split.flat_captions()
    k = split.num_captions // max(split.num_images, 1)
    optional = [c for c in ("recorded_loss", "d_logit", "suspect") if c in signals]
    columns = ["rank", "caption_index", "image", "caption", "suspicion", "score", "clean_probability", "ranking_loss"]
    columns += optional + (["injected_wrong"] if wrong is not None else [])
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    for rank, j in enumerate(order, 1):
        row = [rank, int(j), split.images.describe(int(j) // k), flat[j]]
        row += [_cell(signals[c][j]) for c in ["suspicion", "score", "clean_probability", "ranking_loss", *optional]]
        if wrong is not None:
            row.append(int(wrong[j]))
        writer.writerow(row)
    write_text_atomic(path, buf.getvalue())


def _cell(value) -> str:
    """A CSV cell: empty for a pair that could not be scored (its image is missing)."""
    return "" if not np.isfinite(value) else f"{value:.5g}"


def suspects_html(split: Split, signals: dict, order: np.ndarray, top: int, title: str,
                  summary: Optional[dict] = None, wrong: Optional[np.ndarray] = None,
                  missing: Sequence[str] = ()) -> str:
    """A page of the ``top`` most suspect pairs with thumbnails (a missing image is named, not fatal)."""
    flat = split.flat_captions()
    k = split.num_captions // max(split.num_images, 1)
    rows = []
    order = [j for j in order if np.isfinite(signals["score"][j])]
    for rank, j in enumerate(order[:top], 1):
        known = "" if wrong is None else f"<td>{'wrong' if wrong[j] else 'correct'}</td>"
        rows.append(f"<tr><td>{rank}</td><td>{thumbnail(split, int(j) // k)}</td><td>{html.escape(flat[j])}</td>"
                    f"<td>{signals['suspicion'][j]:.3f}</td><td>{signals['score'][j]:.3f}</td>"
                    f"<td>{signals['clean_probability'][j]:.3f}</td>{known}</tr>")
    head = ("<tr><th>rank</th><th>image</th><th>caption</th><th>suspicion</th><th>score</th>"
            "<th>clean probability</th>")
    head += "" if wrong is None else "<th>injected</th>"
    summary_html = ""
    if summary:
        summary_html = "<h2>Against the injected wrong pairs</h2><table><tr><th>signal</th><th>AUROC</th><th>AP</th></tr>" + "".join(
            f"<tr><td>{html.escape(n)}</td><td>{m['auroc']:.3f}</td><td>{m['average_precision']:.3f}</td></tr>"
            for n, m in summary.items()) + "</table>"
    if missing:
        summary_html += ("<h2>Images that could not be read (their pairs are not scored)</h2><ul>"
                         + "".join(f"<li>{html.escape(m)}</li>" for m in missing) + "</ul>")
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{summary_html}"
            f"<h2>Top {min(top, len(order))} suspects (highest combined suspicion first)</h2>"
            f"<table>{head}</tr>{''.join(rows)}</table></body></html>\n")


def known_wrong(split: Split) -> Optional[np.ndarray]:
    """Labels of injected wrong pairs when the split carries them (a run with data.wrong_fraction)."""
    return wrong_pair_labels(split) if "wrong_pairs" in split.extra else None
