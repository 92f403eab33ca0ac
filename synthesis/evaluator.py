"""Synthesis metrics of a run's generator under a separately trained evaluator (docs/DESIGN.md section 5)."""
from __future__ import annotations

import os
from functools import partial
from typing import Optional

import torch
from tqdm import tqdm

from config import Config
from data.datasets import ImageDataset, collate_images, encode_texts, encoder_images, gan_images, image_transform
from data.records import Split
from data.vocab import Vocabulary
from metrics.synthesis import candidate_sets, frechet_distance, published_fid_is, r_precision
from models.lim import LIM
from runfolder.checkpoint import CheckpointError
from runfolder.folder import RunFolder, load_trained

from .sampling import imagine, to_uint8
from .swaps import swap_picks, swap_test

FRECHET_NOTE = ("Frechet distance between Gaussians fitted to the evaluator's grounded image embeddings of "
                "generated and real test images; NOT the published FID (that needs Inception-v3 features: "
                "pass --inception-weights)")


def load_evaluator(evaluator_dir: str, run_dir: str) -> tuple[Config, Vocabulary, LIM]:
    """A run trained without the GAN, other than ``run_dir``; its matcher scores the generated images.

    Raises:
        CheckpointError: it is the same run, it trained a generator, or it reads precomputed features.
    """
    if os.path.realpath(evaluator_dir) == os.path.realpath(run_dir):
        raise CheckpointError(f"--evaluator {evaluator_dir} is the run being evaluated: train a separate matcher, "
                              "e.g. python train.py imagine.lambda_t2i=0 look.lambda_i2t=0 train.out_dir=runs/evaluator")
    cfg, vocab, model, _ = load_trained(evaluator_dir, "best")
    if model.imagine is not None:
        raise CheckpointError(f"--evaluator {evaluator_dir} trained with the GAN (imagine.lambda_t2i="
                              f"{cfg.imagine.lambda_t2i}): its embedding would grade its own kind of images; "
                              "train one with imagine.lambda_t2i=0")
    if cfg.model.image_encoder == "precomp":
        raise CheckpointError(f"--evaluator {evaluator_dir} reads precomputed features, not images")
    return cfg, vocab, model


@torch.no_grad()
def _encode_images(model: LIM, images: torch.Tensor, size: int, device: torch.device, batch: int) -> dict:
    """Images in [-1, 1] -> the evaluator's embeddings per branch, resized to its input size."""
    parts: dict[str, list] = {}
    for start in range(0, len(images), batch):
        x = encoder_images(images[start:start + batch].to(device), size)
        for k, v in model.matcher.encode_images(x).items():
            parts.setdefault(k, []).append(v.float().cpu())
    return {k: torch.cat(v) for k, v in parts.items()}


@torch.no_grad()
def _encode_texts(model: LIM, texts: list[str], vocab: Vocabulary, max_len: int, device: torch.device,
                  batch: int) -> dict:
    parts: dict[str, list] = {}
    for start in range(0, len(texts), batch):
        captions, lengths = encode_texts(texts[start:start + batch], vocab, max_len)
        for k, v in model.matcher.encode_captions(captions.to(device), lengths).items():
            parts.setdefault(k, []).append(v.float().cpu())
    return {k: torch.cat(v) for k, v in parts.items()}


@torch.no_grad()
def _real_images(split: Split, cfg: Config, batch: int) -> torch.Tensor:
    """Every image of ``split`` at the generator's size, in [-1, 1] ``(N, 3, S, S)``."""
    dataset = ImageDataset(split, image_transform(cfg.data, train=False))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, collate_fn=collate_images,
                                         num_workers=cfg.data.num_workers)
    return torch.cat([gan_images(x, cfg.imagine.image_size) for x, _ in loader])


def evaluate_synthesis(model: LIM, split: Split, vocab: Vocabulary, cfg: Config, device: torch.device,
                       evaluator_dir: str, run_dir: str, seed: int = 0, mismatched: int = 99,
                       inception_weights: Optional[str] = None, progress: bool = True) -> dict:
    """R-precision and Frechet distance of images imagined from each test image's first caption.

    One image per test image (seeded). R-precision: the generated image against its caption and
    ``mismatched`` first captions of other images, under the evaluator's pair similarity; the same
    for the real images gives the ceiling. The Frechet distance compares generated with real
    images in the evaluator's grounded image embedding; ``frechet_real_halves`` (real vs real, two
    halves of the split) is its floor. ``swaps``: per word class, how often the generated (and the
    real) image scores its caption above a one-word swap of it (:mod:`synthesis.swaps`; Shapes words).
    With ``inception_weights``, the published FID and IS too.
    """
    ecfg, evocab, evaluator = load_evaluator(evaluator_dir, run_dir)
    evaluator.to(device)
    batch = cfg.train.eval_batch_size
    texts = [caps[0] for caps in split.captions]
    steps = tqdm(total=4, desc="synthesis metrics", disable=not progress, leave=False)
    fake = imagine(model, texts, vocab, 1, seed, device, cfg.data.max_caption_len, batch)  # (N, 3, S, S)
    steps.update()
    real = _real_images(split, cfg, batch)
    steps.update()
    size = ecfg.data.image_size
    fake_emb = _encode_images(evaluator, fake, size, device, batch)
    real_emb = _encode_images(evaluator, real, size, device, batch)
    text_emb = _encode_texts(evaluator, texts, evocab, ecfg.data.max_caption_len, device, batch)
    steps.update()
    sets = candidate_sets(len(texts), mismatched, seed)  # (N, 1 + K)
    rows = torch.arange(len(texts))[:, None]
    scores = {name: evaluator.matcher.similarity(emb, text_emb)[rows, torch.from_numpy(sets)].numpy()
              for name, emb in (("fake", fake_emb), ("real", real_emb))}
    half = len(real) // 2
    out = {
        "evaluator": RunFolder(evaluator_dir).checkpoint("best"),
        "images": len(texts),
        "captions": "the first caption of each image",
        "seed": seed,
        "mismatched_captions": mismatched,
        "r_precision": round(r_precision(scores["fake"]), 2),
        "r_precision_real": round(r_precision(scores["real"]), 2),
        "frechet_distance_evaluator": round(frechet_distance(fake_emb["grounded"].numpy(),
                                                             real_emb["grounded"].numpy()), 4),
        "frechet_real_halves": round(frechet_distance(real_emb["grounded"][:half].numpy(),
                                                      real_emb["grounded"][half:].numpy()), 4),
        "frechet_note": FRECHET_NOTE,
    }
    picks = swap_picks(texts, seed)
    if picks:
        encode = partial(_encode_texts, evaluator, vocab=evocab, max_len=ecfg.data.max_caption_len, device=device,
                         batch=batch)
        out["swaps"] = swap_test(evaluator.matcher, {"imagined": fake_emb, "real": real_emb}, text_emb, picks, encode)
    steps.update()
    if inception_weights:
        out.update(published_fid_is(torch.from_numpy(to_uint8(fake)).permute(0, 3, 1, 2),
                                    torch.from_numpy(to_uint8(real)).permute(0, 3, 1, 2), inception_weights))
    steps.close()
    return out
