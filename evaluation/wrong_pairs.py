"""Score every (image, own caption) pair of a split, and grade the scores against known wrong pairs."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from data import load_split
from data.datasets import ImageDataset, collate_images, encode_texts, image_transform
from data.records import Split
from data.vocab import Vocabulary
from metrics.pairs import auroc, average_precision
from models.lim import LIM
from models.modes import eval_mode

from .fused import PairScorer


@torch.no_grad()
def split_pair_scores(model: LIM, split: Split, vocab: Vocabulary, data_cfg, device: torch.device,
                      images_per_batch: int = 128, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Embedding similarity and caption log-likelihood ``(M,)`` of every caption of ``split`` with
    its own image, in flat caption order (the likelihood is None for a run without a decoder).
    Each image is encoded once for all its captions."""
    with eval_mode(model):
        loader = DataLoader(ImageDataset(split, image_transform(data_cfg, train=False)), batch_size=images_per_batch,
                            collate_fn=collate_images)
        emb, ll, start = [], [], 0
        for batch in tqdm(loader, desc=f"scoring {split.name} pairs", disable=not progress, leave=False):
            x = batch[0].to(device)
            caps = split.captions[start:start + len(x)]
            owner = torch.repeat_interleave(torch.arange(len(x)), torch.tensor([len(c) for c in caps])).to(device)
            start += len(x)
            ids, lengths = encode_texts([c for cs in caps for c in cs], vocab, data_cfg.max_caption_len)
            img = {k: v[owner] for k, v in model.matcher.encode_images(x).items()}
            cap = model.matcher.encode_captions(ids.to(device), lengths)
            emb.append(model.matcher.paired_similarity(img, cap).float().cpu())
            if model.decoder is not None:
                ll.append(model.decoder.log_likelihood(img["grounded"], ids.to(device), lengths).float().cpu())
        return torch.cat(emb).numpy(), (torch.cat(ll).numpy() if ll else None)


def wrong_pair_labels(split: Split) -> np.ndarray:
    """``(M,)`` 1 for the captions of ``split`` that were swapped in from another image, else 0."""
    labels = np.zeros(split.num_captions, dtype=np.int64)
    replaced = split.extra.get("wrong_pairs", {}).get("replaced", [])
    labels[[c for c, _ in replaced]] = 1
    return labels


def detection_metrics(suspicion: np.ndarray, wrong: np.ndarray) -> dict:
    """AUROC and average precision of ``suspicion`` (higher = more likely wrong) at finding ``wrong``."""
    return {"auroc": round(auroc(suspicion, wrong), 4), "average_precision": round(average_precision(suspicion, wrong), 4)}


def wrong_pair_detection(scorer: PairScorer, split: Split, progress: bool = False, writer=None, step: int = 0) -> dict:
    """How well the fused pair score (and each of its two parts) flags the injected wrong pairs of
    ``split``: AUROC, average precision, and the flag rates at the threshold fitted on val. With a
    TensorBoard ``writer``, also the precision-recall curve of the score at finding the correct pairs."""
    wrong = wrong_pair_labels(split)
    if wrong.sum() == 0 or wrong.sum() == len(wrong):
        raise ValueError(f"{split.name}: wrong-pair detection needs both injected wrong pairs and correct pairs "
                         "(train with data.wrong_fraction between 0 and 1)")
    emb, ll = split_pair_scores(scorer.model, split, scorer.vocab, scorer.data_cfg, scorer.device, progress=progress)
    ll = scorer.likelihood(ll, split.flat_captions())  # less each caption's prior, as the scorer was fitted
    fused = scorer.fuse(emb, ll)
    flagged = fused < scorer.threshold
    if writer is not None:
        writer.add_pr_curve("wrong_pairs/fused_score_finds_correct_pairs", torch.from_numpy(1 - wrong),
                            torch.sigmoid(torch.from_numpy(fused - scorer.threshold)), step)
    return {
        "pairs": int(len(wrong)), "wrong": int(wrong.sum()), "weight": float(scorer.weight),
        "fused": detection_metrics(-fused, wrong),
        "embedding_only": detection_metrics(-emb, wrong),
        "likelihood_only": detection_metrics(-ll, wrong),
        "flagged_wrong": round(float(flagged[wrong == 1].mean()), 4),
        "flagged_correct": round(float(flagged[wrong == 0].mean()), 4),
    }


def wrong_pairs_section(model: LIM, cfg, vocab: Vocabulary, device: torch.device, progress: bool = False,
                        writer=None, step: int = 0) -> dict:
    """The report's ``wrong_pairs`` block for a run trained with ``data.wrong_fraction``: how well the
    fused pair score (fitted on val) flags the training pairs that were made wrong."""
    if model.decoder is None:
        return {"note": "this run trained on injected wrong pairs but has no caption decoder (look.lambda_i2t=0); "
                        "the fused pair score that flags them needs one"}
    scorer = PairScorer(model, load_split(cfg.data, "val"), vocab, cfg.data, device, cfg.look.fused_caption_prior)
    return wrong_pair_detection(scorer, load_split(cfg.data, "train"), progress, writer, step)
