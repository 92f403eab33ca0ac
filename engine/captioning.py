"""Caption a split with the decoder and score it against the references (the look report)."""
from __future__ import annotations

import json
import os
from typing import Optional

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from config import DataConfig
from data.datasets import ImageDataset, collate_images, image_transform
from data.records import Split
from data.vocab import Vocabulary
from metrics.captioning import caption_metrics


@torch.no_grad()
def generate_captions(model, split: Split, vocab: Vocabulary, data_cfg: DataConfig, device: torch.device,
                      beam_size: int = 3, batch_size: int = 256, progress: bool = True,
                      limit: Optional[int] = None) -> list[str]:
    """One caption per image (beam search on the grounded image embedding), in split order."""
    if model.decoder is None:
        raise ValueError("this model has no caption decoder (it was trained with look.lambda_i2t=0)")
    was_training = model.training
    model.eval()
    dataset = ImageDataset(split, image_transform(data_cfg, train=False))
    if limit is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=data_cfg.num_workers, collate_fn=collate_images)
    captions = []
    for x, _ in tqdm(loader, desc=f"caption {split.name}", disable=not progress, leave=False):
        feats = model.matcher.encode_images(x.to(device))["grounded"]
        tokens = model.decoder.beam_search(feats, beam_size)
        captions += [vocab.decode(row) for row in tokens.cpu().tolist()]
    model.train(was_training)
    return captions


def evaluate_captions(model, split: Split, vocab: Vocabulary, data_cfg: DataConfig, device: torch.device,
                      beam_size: int = 3, batch_size: int = 256, progress: bool = True,
                      results_path: Optional[str] = None, meteor: bool = True) -> dict:
    """Captioning metrics on ``split``; optionally writes the captions in COCO results format."""
    captions = generate_captions(model, split, vocab, data_cfg, device, beam_size, batch_size, progress)
    gts = {i: caps for i, caps in enumerate(split.captions)}
    res = {i: cap for i, cap in enumerate(captions)}
    metrics = caption_metrics(gts, res, meteor)
    metrics["beam_size"] = beam_size
    if results_path:
        tmp = f"{results_path}.tmp.{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump([{"image_id": i, "caption": c} for i, c in res.items()], f, indent=0)
        os.replace(tmp, results_path)
        metrics["results_file"] = results_path
    return metrics
