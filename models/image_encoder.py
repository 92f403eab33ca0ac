"""Image encoder: a backbone (small CNN, torchvision CNN or none for precomputed features) and two
embedding heads, the high-level *abstract* one and the detailed *grounded* one."""
from __future__ import annotations

import os
from typing import Optional

import torch
import torch.nn as nn
import torchvision

from config import BACKBONES, ModelConfig



class ModelError(ValueError):
    """A model cannot be built or loaded as asked; the message says why and names the file."""


class SmallCNN(nn.Module):
    """Four strided conv blocks (64 px -> 4x4), then the flattened 4x4 grid: positions survive,
    which Shapes needs for "left of" / "above". Strided convs instead of max-pooling run ~3x
    faster on a CPU for the same receptive field. ``depth`` > 1 adds that many - 1 stride-1 3x3
    convs to each block (more capacity per resolution, for pictures richer than Shapes)."""

    def __init__(self, width: int = 32, depth: int = 1):
        super().__init__()
        if depth < 1:
            raise ModelError(f"model.small_cnn_depth must be >= 1, got {depth}")
        chans = [3, width, 2 * width, 4 * width, 8 * width]
        blocks = []
        for n, (cin, cout) in enumerate(zip(chans[:-1], chans[1:])):
            kernel = 5 if n == 0 else 3
            for d in range(depth):
                blocks += [
                    nn.Conv2d(cin if d == 0 else cout, cout, kernel if d == 0 else 3, stride=2 if d == 0 else 1,
                              padding=(kernel if d == 0 else 3) // 2, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True),
                ]
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(4)  # any input size -> (C, 4, 4)
        self.out_dim = chans[-1] * 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)  # (B, 16 C)


def _load_state_dict(path: str) -> dict:
    if not os.path.isfile(path):
        raise ModelError(f"model.cnn_weights: {path} not found (weights are never downloaded)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, zip errors, forbidden globals
        raise ModelError(f"{path}: not a loadable tensor state dict ({str(err).splitlines()[0]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"{path}: expected a state dict, got {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def torchvision_backbone(arch: str, weights: Optional[str]) -> tuple[nn.Module, int]:
    """A torchvision CNN with its classifier removed; weights only from a local file."""
    net = getattr(torchvision.models, arch)(weights=None)
    if weights:
        state = _load_state_dict(weights)
        result = net.load_state_dict(state, strict=False)
        shape_errors = [
            k for k, v in state.items() if k in net.state_dict() and net.state_dict()[k].shape != v.shape
        ]
        if result.missing_keys or result.unexpected_keys or shape_errors:
            raise ModelError(
                f"{weights} does not fit {arch}: missing {result.missing_keys[:5]}, "
                f"unexpected {result.unexpected_keys[:5]}, wrong shape {shape_errors[:5]}"
            )
    if arch.startswith("resnet"):
        dim = net.fc.in_features
        net.fc = nn.Identity()
    else:  # vgg: keep the 4096-d fc7 output
        dim = net.classifier[-1].in_features
        net.classifier[-1] = nn.Identity()
    return net, dim


def l2norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


def embed(x: torch.Tensor, measure: str) -> torch.Tensor:
    """l2-normalise; under the order measure take the absolute value (embeddings live in R+^D)."""
    x = l2norm(x)
    return x.abs() if measure == "order" else x


class ImageEncoder(nn.Module):
    """Images ``(B, 3, S, S)`` or features ``(B, F)`` -> ``{"abstract", "grounded"}`` ``(B, D)``."""

    def __init__(self, cfg: ModelConfig, feature_dim: Optional[int] = None):
        super().__init__()
        if cfg.image_encoder not in BACKBONES:
            raise ModelError(f"model.image_encoder={cfg.image_encoder!r} is not one of {', '.join(BACKBONES)}")
        self.measure = cfg.measure
        self.frozen = False
        if cfg.image_encoder == "small_cnn":
            self.backbone: nn.Module = SmallCNN(cfg.small_cnn_width, cfg.small_cnn_depth)
            dim = self.backbone.out_dim
            if cfg.image_init and not cfg.finetune:  # trained elsewhere (training/image_init.py)
                self.frozen = True
                self.backbone.requires_grad_(False)
        elif cfg.image_encoder == "precomp":
            if feature_dim is None:
                raise ModelError("model.image_encoder=precomp needs precomputed features (data.name=precomp or h5)")
            self.backbone, dim = nn.Identity(), feature_dim
        else:
            self.backbone, dim = torchvision_backbone(cfg.image_encoder, cfg.cnn_weights)
            if not cfg.finetune:
                self.frozen = True
                self.backbone.requires_grad_(False)
        self.feature_dim = dim
        self.abstract = nn.Linear(dim, cfg.embed_dim)
        self.grounded = nn.Linear(dim, cfg.embed_dim)

    def train(self, mode: bool = True) -> "ImageEncoder":
        super().train(mode)
        if self.frozen:  # a frozen backbone keeps its BatchNorm statistics
            self.backbone.eval()
        return self

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.backbone(images)  # (B, F)
        return {
            "abstract": embed(self.abstract(feats), self.measure),
            "grounded": embed(self.grounded(feats), self.measure),
        }
