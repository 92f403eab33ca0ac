"""Caption a split with the decoder and score it against the references (the look report)."""
from __future__ import annotations

import json
from collections import Counter
from typing import Optional, Sequence

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from config import DataConfig
from data.atomic import write_text_atomic
from data.datasets import ImageDataset, collate_images, encode_texts, image_transform
from data.records import Split
from data.vocab import UNK, Vocabulary, tokenize
from metrics.captioning import caption_metrics
from models.caption_decoder import END
from models.modes import eval_mode
from runfolder.folder import require_decoder

from .retrieval import encode_split

# Temperature of the softmax over the batch's images in :func:`rerank_beams` (order similarities
# live in [-1, 0]; semi.temperature uses the same value for the same purpose).
RERANK_TEMPERATURE = 0.01


def rerank_beams(matcher, img: dict, beams: list[list[str]], vocab: Vocabulary, max_len: int,
                 fluency: Optional[list[list[float]]] = None) -> list[str]:
    """For each image ``b`` (its embeddings ``img[branch][b]``), the candidate of ``beams[b]`` that
    best retrieves image ``b`` among the batch's images: the largest log-softmax over the images of
    the matcher's scores with the candidate, plus its ``fluency`` when given (the decoder's
    per-token log-probability, so that a fragment such as "an icon for" that fits every image
    equally does not win by default); the first, most likely, wins ties. Discriminative decoding:
    it keeps the decoder's fluent candidates and picks the one that tells this image apart. The raw
    matcher score would not do: an order embedding scores a generic caption high with every image."""
    flat = [c for cands in beams for c in cands]
    owners = torch.tensor([b for b, cands in enumerate(beams) for _ in cands])
    ids, lengths = encode_texts(flat, vocab, max_len)
    device = next(iter(img.values())).device
    cap = matcher.encode_captions(ids.to(device), lengths)
    logp = torch.log_softmax(matcher.similarity(img, cap) / RERANK_TEMPERATURE, dim=0).cpu()  # (B, sum K_b)
    scores = logp[owners, torch.arange(len(flat))]  # (sum K_b,) log p(own image | candidate)
    if fluency is not None:
        scores = scores + torch.tensor([f for row in fluency for f in row], dtype=scores.dtype)
    picked, start = [], 0
    for cands in beams:
        part = scores[start:start + len(cands)]
        picked.append(cands[int(torch.argmax(part))])  # argmax returns the first of equal maxima
        start += len(cands)
    return picked


@torch.no_grad()
def generate_captions(model, split: Split, vocab: Vocabulary, data_cfg: DataConfig, device: torch.device,
                      beam_size: int = 3, batch_size: int = 256, progress: bool = True,
                      limit: Optional[int] = None, rerank: bool = False, samples: int = 0,
                      temperature: float = 0.7, fluency_weight: float = 1.0) -> list[str]:
    """One caption per image (beam search on the grounded image embedding), in split order; with
    ``rerank``, the candidate the matcher scores highest with the image (see :func:`decode_images`)."""
    require_decoder(model, "captioning")
    dataset = ImageDataset(split, image_transform(data_cfg, train=False))
    if limit is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=data_cfg.num_workers, collate_fn=collate_images)
    captions = []
    with eval_mode(model):
        for x, _ in tqdm(loader, desc=f"caption {split.name}", disable=not progress, leave=False):
            captions += decode_images(model, model.matcher.encode_images(x.to(device)), vocab, beam_size, rerank,
                                      data_cfg.max_caption_len, samples, temperature, fluency_weight)
    return captions


def decode_options(look) -> dict:
    """The run's decoding settings (``look.*``) as keyword arguments of :func:`generate_captions`."""
    return {"rerank": look.rerank_captions, "samples": look.rerank_samples, "temperature": look.rerank_temperature,
            "fluency_weight": look.rerank_fluency_weight}


def _usable(caption: str) -> bool:
    """A candidate worth offering: no ``<unk>`` and no repeated word pair ("a line drawing of a a line drawing")."""
    words = caption.split()
    pairs = list(zip(words, words[1:]))
    return bool(words) and UNK not in words and len(pairs) == len(set(pairs))


@torch.no_grad()
def decode_images(model, img: dict, vocab: Vocabulary, beam_size: int, rerank: bool, max_len: int,
                  samples: int = 0, temperature: float = 0.7, fluency_weight: float = 1.0) -> list[str]:
    """Captions of a batch of images from their matcher embeddings ``img`` (the decoder reads the
    grounded one): the most likely beam, or with ``rerank`` the candidate the matcher prefers
    (:func:`rerank_beams`). The candidates are the finished beams and, with ``samples``, that many
    captions sampled per image at ``temperature``; those with ``<unk>`` or a repeated word pair are
    dropped while any other remains. Each candidate's fluency is the decoder's mean per-token
    log-likelihood of it, times ``fluency_weight``."""
    grounded = img["grounded"]
    if not rerank:
        return [vocab.decode(row) for row in model.decoder.beam_search(grounded, beam_size).cpu().tolist()]
    tokens, scores, done = model.decoder.beam_search(grounded, beam_size, all_beams=True)
    cands: list[dict[str, None]] = [{} for _ in range(grounded.shape[0])]
    for b, (rows, row_scores, finished) in enumerate(zip(tokens.cpu().tolist(), scores.cpu().tolist(),
                                                          done.cpu().tolist())):
        order = sorted(range(len(rows)), key=lambda j: -row_scores[j])  # most likely first
        for j in [j for j in order if finished[j] and row_scores[j] > float("-inf")] or order[:1]:
            cands[b].setdefault(vocab.decode(rows[j]), None)
    if samples:
        # A fixed seed, on a forked RNG: the same captions every time, and training's RNG untouched.
        with torch.random.fork_rng(devices=[grounded.device] if grounded.device.type == "cuda" else []):
            torch.manual_seed(0)
            drawn, _, _ = model.decoder.sample(grounded, samples, temperature)
        for r, row in enumerate(drawn.cpu().tolist()):
            if END in row:
                cands[r // samples].setdefault(vocab.decode(row), None)
    beams = []
    for c in cands:
        good = [x for x in c if _usable(x)]
        beams.append(good or list(c)[:1])
    fluency = [[fluency_weight * f for f in row] for row in _fluency(model.decoder, grounded, beams, vocab, max_len)]
    return rerank_beams(model.matcher, img, beams, vocab, max_len, fluency)


def _fluency(decoder, grounded: torch.Tensor, beams: list[list[str]], vocab: Vocabulary, max_len: int) -> list[list[float]]:
    """The decoder's mean per-token log-likelihood (words and ``<end>``) of each candidate given its image."""
    flat = [c for cands in beams for c in cands]
    owner = torch.tensor([b for b, cands in enumerate(beams) for _ in cands], device=grounded.device)
    ids, lengths = encode_texts(flat, vocab, max_len)
    ll = decoder.log_likelihood(grounded[owner], ids.to(grounded.device), lengths).float().cpu().tolist()
    out, start = [], 0
    for cands in beams:
        out.append(ll[start:start + len(cands)])
        start += len(cands)
    return out


def _encoded_captions(matcher, captions: Sequence[str], vocab: Vocabulary, data_cfg: DataConfig,
                      device: torch.device, batch_size: int):
    """``(start, per-branch caption embeddings on CPU)`` for consecutive batches of ``captions``;
    the caller runs it under ``eval_mode(matcher)`` and ``torch.no_grad()``."""
    for start in range(0, len(captions), batch_size):
        ids, lengths = encode_texts(captions[start:start + batch_size], vocab, data_cfg.max_caption_len)
        yield start, {k: v.cpu() for k, v in matcher.encode_captions(ids.to(device), lengths).items()}


def distinctiveness(matcher, split: Split, captions: Sequence[str], vocab: Vocabulary, data_cfg: DataConfig,
                    device: torch.device, batch_size: int = 256, img: Optional[dict] = None) -> dict:
    """How well each image's generated caption retrieves that image among the split's images, in
    ``matcher``'s embedding: ``{"r1", "r5"}`` in percent (captions in split order, one per image)."""
    if img is None:
        img = encode_split(matcher, split, vocab, data_cfg, device, batch_size, False, False)[0]
    img = {k: v[:len(captions)] for k, v in img.items()}
    ranks = []
    with eval_mode(matcher), torch.no_grad():
        for start, cap in _encoded_captions(matcher, captions, vocab, data_cfg, device, batch_size):
            n = next(iter(cap.values())).shape[0]
            scores = matcher.similarity(img, cap)  # (N, n)
            own = scores[torch.arange(start, start + n), torch.arange(n)]
            ranks.append((scores > own[None]).sum(0))  # images scoring above the caption's own image
    ranks = torch.cat(ranks).float()
    return {f"r{k}": round(100 * float((ranks < k).float().mean()), 2) for k in (1, 5)}


CLIP_S_WEIGHT = 2.5  # CLIP-S's rescaling of the cosine (Hessel et al., 2021, "CLIPScore")


def reference_free_score(matcher, split: Split, captions: Sequence[str], vocab: Vocabulary, data_cfg: DataConfig,
                         device: torch.device, batch_size: int = 256, img: Optional[dict] = None) -> float:
    """Mean CLIP-S-style score of each image's caption (captions in split order): 2.5 x max(cos, 0)
    of the image and caption embeddings in ``matcher``'s space; needs no reference caption."""
    if img is None:
        img = encode_split(matcher, split, vocab, data_cfg, device, batch_size, False, False)[0]
    scores = []
    with eval_mode(matcher), torch.no_grad():
        for start, cap in _encoded_captions(matcher, captions, vocab, data_cfg, device, batch_size):
            own = {k: v[start:start + next(iter(cap.values())).shape[0]] for k, v in img.items()}
            scores.append(CLIP_S_WEIGHT * matcher.paired_cosine(own, cap).clamp(min=0))
    return round(float(torch.cat(scores).mean()), 4)


def _mean_words(words: Sequence[Sequence[str]]) -> float:
    return round(sum(map(len, words)) / max(len(words), 1), 2)


def fluency(captions: Sequence[str], references: Sequence[str]) -> dict:
    """Word-salad indicators: mean length, share of captions with a word repeated back to back,
    share with a word pair said twice ("a red circle a red circle"), and share that occur verbatim
    among ``references`` (any image's; a grammar check for templated data such as Shapes, where a
    fluent caption is usually some image's reference)."""
    words = [tokenize(c) for c in captions]
    seen = {" ".join(tokenize(c)) for c in references}
    n = max(len(words), 1)
    pairs = [list(zip(w, w[1:])) for w in words]
    return {"mean_words": _mean_words(words),
            "stutter_pct": round(100 * sum(any(a == b for a, b in zip(w, w[1:])) for w in words) / n, 2),
            "repeated_pair_pct": round(100 * sum(len(p) != len(set(p)) for p in pairs) / n, 2),
            "seen_in_references_pct": round(100 * sum(" ".join(w) in seen for w in words) / n, 2)}


def diversity(captions: Sequence[str]) -> dict:
    """Collapse indicators of one caption per image: ``distinct`` (% of the images whose caption is
    a distinct string: 100 when no two images share a caption), ``mean_length`` (words per caption,
    the same figure as ``fluency``'s ``mean_words``), the most frequent caption ``top_caption`` (as
    first generated) and ``top_share``, the % of images it covers. Captions are compared after
    tokenisation, so case and punctuation do not make two captions distinct."""
    words = [tokenize(c) for c in captions]
    keys = [" ".join(w) for w in words]
    counts = Counter(keys)
    top, top_n = counts.most_common(1)[0] if counts else ("", 0)  # ties: the caption seen first
    n = max(len(words), 1)
    return {"distinct": round(100 * len(counts) / n, 2), "mean_length": _mean_words(words),
            "top_caption": captions[keys.index(top)] if counts else "", "top_share": round(100 * top_n / n, 2)}


def evaluate_captions(model, split: Split, vocab: Vocabulary, data_cfg: DataConfig, device: torch.device,
                      beam_size: int = 3, batch_size: int = 256, progress: bool = True,
                      results_path: Optional[str] = None, meteor: bool = True, img: Optional[dict] = None,
                      rerank: bool = False, samples: int = 0, temperature: float = 0.7,
                      fluency_weight: float = 1.0, keep_captions: bool = False) -> dict:
    """Captioning metrics on ``split``, with ``distinctiveness``, ``fluency`` and ``diversity``;
    optionally writes the captions in COCO results format. ``img``: the split's image embeddings
    under ``model.matcher`` when the caller already has them (``encode_split``), else encoded here.
    ``keep_captions``: the captions too, in split order, under ``"captions"``."""
    captions = generate_captions(model, split, vocab, data_cfg, device, beam_size, batch_size, progress,
                                 rerank=rerank, samples=samples, temperature=temperature,
                                 fluency_weight=fluency_weight)
    gts = {i: caps for i, caps in enumerate(split.captions)}
    res = {i: cap for i, cap in enumerate(captions)}
    metrics = caption_metrics(gts, res, meteor)
    metrics["beam_size"] = beam_size
    metrics["decode"] = ("most likely beam" if not rerank else "beams re-ranked by the matcher" if not samples
                         else f"beams and {samples} samples (temperature {temperature}) re-ranked by the matcher, "
                              f"fluency weight {fluency_weight}")
    metrics["distinctiveness"] = distinctiveness(model.matcher, split, captions, vocab, data_cfg, device, batch_size,
                                                 img)
    metrics["fluency"] = fluency(captions, split.flat_captions())
    metrics["diversity"] = diversity(captions)
    if results_path:
        write_text_atomic(results_path, json.dumps([{"image_id": i, "caption": c} for i, c in res.items()], indent=0))
        metrics["results_file"] = results_path
    if keep_captions:
        metrics["captions"] = captions
    return metrics
