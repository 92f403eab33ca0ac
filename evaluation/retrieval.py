"""Encode a split once and compute the retrieval metrics under a protocol (docs/DESIGN.md section 5)."""
from __future__ import annotations

from typing import Optional

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from config import DataConfig
from data.datasets import CaptionDataset, ImageDataset, collate_captions, collate_images, image_transform
from data.records import Split
from data.vocab import Vocabulary
from metrics.retrieval import FOLD_IMAGES, protocol_folds, recall_metrics, recall_metrics_folds
from models.modes import eval_mode

PROTOCOLS = ("auto", "1k", "5k", "full")


@torch.no_grad()
def encode_split(
    matcher,
    split: Split,
    vocab: Vocabulary,
    data_cfg: DataConfig,
    device: torch.device,
    batch_size: int = 256,
    progress: bool = True,
    with_captions: bool = True,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Embeddings of every image ``(N, D)`` and every caption ``(k N, D)`` per branch, on CPU
    (the caption dict is empty when ``with_captions`` is false)."""
    with eval_mode(matcher):
        workers = data_cfg.num_workers
        images = DataLoader(ImageDataset(split, image_transform(data_cfg, train=False)), batch_size=batch_size,
                            num_workers=workers, collate_fn=collate_images)
        captions = DataLoader(CaptionDataset(split, vocab, data_cfg.max_caption_len), batch_size=batch_size,
                              num_workers=workers, collate_fn=collate_captions)
        img_parts: dict[str, list] = {}
        for x, _ in tqdm(images, desc=f"encode {split.name} images", disable=not progress, leave=False):
            for k, v in matcher.encode_images(x.to(device)).items():
                img_parts.setdefault(k, []).append(v.float().cpu())
        if not with_captions:
            return {k: torch.cat(v) for k, v in img_parts.items()}, {}
        cap_parts: dict[str, list] = {}
        for ids, lengths, _ in tqdm(captions, desc=f"encode {split.name} captions", disable=not progress, leave=False):
            for k, v in matcher.encode_captions(ids.to(device), lengths).items():
                cap_parts.setdefault(k, []).append(v.float().cpu())
    return ({k: torch.cat(v) for k, v in img_parts.items()}, {k: torch.cat(v) for k, v in cap_parts.items()})


def resolve_protocol(protocol: str, n_images: int) -> list[str]:
    """Protocols to run; ``auto`` is 1K folds plus 5K on a 5,000-image set (COCO), else full."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    if protocol == "auto":
        return ["1k", "5k"] if n_images == 5000 else ["full"]
    if protocol == "1k" and (n_images % FOLD_IMAGES or n_images < FOLD_IMAGES):
        raise ValueError(f"the 1k protocol needs a multiple of {FOLD_IMAGES} images, this split has {n_images}")
    if protocol == "5k" and n_images != 5000:
        raise ValueError(f"the 5k protocol needs the 5,000-image COCO test set, this split has {n_images}")
    return [protocol]


def retrieval_metrics(sims: torch.Tensor, protocol: str, captions_per_image: int = 5) -> dict:
    """Metrics of an ``(N, k N)`` similarity matrix under one resolved protocol."""
    if protocol == "1k":
        return recall_metrics_folds(sims, captions_per_image, n_folds=protocol_folds(protocol, sims.shape[0]))
    return recall_metrics(sims, captions_per_image)


def evaluate_retrieval(
    matcher,
    split: Split,
    vocab: Vocabulary,
    data_cfg: DataConfig,
    device: torch.device,
    protocol: str = "auto",
    batch_size: int = 256,
    progress: bool = True,
    embeddings: Optional[tuple] = None,
) -> dict:
    """``{"protocols": {name: metrics}, "primary": name}`` for one split."""
    names = resolve_protocol(protocol, split.num_images)
    img, cap = embeddings or encode_split(matcher, split, vocab, data_cfg, device, batch_size, progress)
    sims = matcher.similarity(img, cap)  # (N, k N) on CPU
    return {"protocols": {p: retrieval_metrics(sims, p, data_cfg.captions_per_image) for p in names},
            "primary": names[0]}
