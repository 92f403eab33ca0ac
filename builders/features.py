"""``python -m data extract``: CNN features of every split into one HDF5 file (the h5 data kind)."""
from __future__ import annotations

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from config import Config
from data.atomic import atomic_path
from data.datasets import ImageDataset, collate_images, image_transform
from data.features import write_h5_split
from data.records import DataError
from data.sources import load_split

SPLITS = ("train", "val", "test")


@torch.no_grad()
def extract_features(cfg: Config, out_path: str, device: str = "auto", batch_size: int = 64) -> dict[str, int]:
    """Run ``model.image_encoder``'s backbone (weights from ``model.cnn_weights``) over every
    split and write ``/{split}/images`` + ``/{split}/captions``; returns image counts per split.

    The file appears only when complete (written under a temp name, then renamed).
    """
    from models.image_encoder import ModelError, torchvision_backbone

    arch = cfg.model.image_encoder
    if arch not in ("resnet18", "resnet34", "resnet50", "resnet152", "vgg19"):
        raise ModelError(f"extract needs a torchvision CNN (model.image_encoder=resnet18|34|50|152 or vgg19), got {arch}")
    if not cfg.model.cnn_weights:
        raise ModelError("extract needs pretrained weights: model.cnn_weights=PATH (a local state dict)")
    if cfg.data.name != "karpathy" and cfg.data.name != "shapes":
        raise DataError(f"extract reads images; data.name={cfg.data.name} already holds features")
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    net, _ = torchvision_backbone(arch, cfg.model.cnn_weights)
    net.eval().to(dev)
    counts = {}
    with atomic_path(out_path) as tmp:
        for split_name in SPLITS:
            split = load_split(cfg.data, split_name)
            loader = DataLoader(ImageDataset(split, image_transform(cfg.data, train=False)), batch_size=batch_size,
                                num_workers=cfg.data.num_workers, collate_fn=collate_images)
            feats = [net(x.to(dev)).float().cpu().numpy() for x, _ in tqdm(loader, desc=f"extract {split_name}")]
            write_h5_split(tmp, split_name, np.concatenate(feats), split.flat_captions())
            counts[split_name] = split.num_images
        with h5py.File(tmp, "a") as f:
            f.attrs["backbone"] = arch
            f.attrs["captions_per_image"] = cfg.data.captions_per_image
    return counts
