"""Text-to-image GAN, the "imagine" path: StackGAN stage-I (arXiv 1612.03242) on GAN-INT-CLS (arXiv 1605.05396).

- :class:`ConditioningAugmentation` turns a caption's grounded feature ``(B, T)`` into a Gaussian
  ``N(mu, exp(logvar))`` and samples the condition ``c`` from it (reparameterised, so the generator's
  loss and the KL term flow back into the text encoder).
- :class:`Generator` draws ``(B, 3, S, S)`` images in ``[-1, 1]`` from noise ``z`` and ``c``.
- :class:`Discriminator` scores (image, condition) pairs with one logit each; the matching-aware
  loss (real / wrong / fake) lives in ``losses/gan.py``.

Sizes: ``S`` in {32, 64, 128}; every block doubles or halves the resolution between ``S`` and 4.
Call :func:`init_weights` on each module (``module.apply(init_weights)``) for DCGAN's N(0, 0.02) init.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from config import GAN_FUSIONS
from config import GAN_IMAGE_SIZES as IMAGE_SIZES


def _blocks(image_size: int) -> int:
    """Number of resolution doublings between 4x4 and ``image_size``."""
    if image_size not in IMAGE_SIZES:
        raise ValueError(f"image_size must be one of {IMAGE_SIZES}, got {image_size}")
    return int(math.log2(image_size // 4))


class ConditioningAugmentation(nn.Module):
    """Text feature ``(B, T)`` -> condition ``c`` ``(B, C)``, with its ``mu`` and ``logvar``.

    ``Linear(T, 2C)`` is split into ``(mu, logvar)`` with no nonlinearity before the split (a ReLU
    there would force ``mu >= 0`` and ``logvar >= 0``, i.e. variance >= 1).

    With ``standardise`` the text feature is first brought to zero mean and unit variance over its
    ``T`` dimensions (a layer norm without learned scale). Our text features are unit vectors, whose
    entries are about ``1 / sqrt(T)``: read raw, they give ``mu`` near zero beside the unit noise, and
    the generator mostly sees noise (StackGAN's char-CNN-RNN features are not normalised).
    """

    def __init__(self, text_dim: int, c_dim: int = 128, standardise: bool = False):
        super().__init__()
        self.c_dim, self.standardise = c_dim, standardise
        self.fc = nn.Linear(text_dim, 2 * c_dim)

    def forward(self, text: torch.Tensor, sample: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``(c, mu, logvar)``, each ``(B, C)``.

        ``c = mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)``. Sampling does not depend on
        ``train()``/``eval()``: as in StackGAN, the same caption should imagine varied images at test
        time too. Pass ``sample=False`` for ``c = mu`` (deterministic demos and evaluation).
        """
        if self.standardise:
            text = F.layer_norm(text, text.shape[-1:], eps=1e-8)  # eps far below a unit vector's 1/T
        mu, logvar = self.fc(text).chunk(2, dim=1)  # (B, C) each
        if not sample:
            return mu, mu, logvar
        eps = torch.randn_like(mu)
        return mu + torch.exp(0.5 * logvar) * eps, mu, logvar


def _up_block(c_in: int, c_out: int) -> nn.Sequential:
    """Doubles the resolution: nearest upsample, conv3x3, BatchNorm, ReLU."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),  # BatchNorm's shift makes a bias redundant
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class AffineUpBlock(nn.Module):
    """Doubles the resolution with the condition fused in (DF-GAN's affine modulation, arXiv 2008.05865):
    nearest upsample, conv3x3, BatchNorm without its own scale and shift, then ``x * (1 + gamma(c)) +
    beta(c)`` per channel, ReLU. ``gamma`` and ``beta`` start at zero, so the block starts as a plain one."""

    def __init__(self, c_in: int, c_out: int, c_dim: int):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(c_out, affine=False)
        self.gamma, self.beta = nn.Linear(c_dim, c_out), nn.Linear(c_dim, c_out)
        self.reset_modulation()

    def reset_modulation(self) -> None:
        for layer in (self.gamma, self.beta):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(self.up(x)))
        x = x * (1 + self.gamma(c)[:, :, None, None]) + self.beta(c)[:, :, None, None]
        return torch.relu(x)


class Generator(nn.Module):
    """Noise ``z`` ``(B, Z)`` and condition ``c`` ``(B, C)`` -> images ``(B, 3, S, S)`` in ``[-1, 1]``.

    ``concat(z, c)`` -> Linear + BatchNorm + ReLU -> ``(8w, 4, 4)``, then upsampling blocks halving the channels
    (never below ``w // 2``) until ``S``, then conv3x3 to RGB and tanh. With ``fusion="affine"`` every
    upsampling block also reads ``c`` (:class:`AffineUpBlock`), not the input layer alone.

    Args:
        c_dim: ``C``, the condition size.
        z_dim: ``Z``, the noise size.
        image_size: ``S`` in {32, 64, 128}.
        width: ``w``, the base channel count (64 in StackGAN; tests use 4).
        fusion: ``"input"`` (StackGAN) or ``"affine"`` (DF-GAN-style modulation in every block).
    """

    def __init__(self, c_dim: int = 128, z_dim: int = 100, image_size: int = 64, width: int = 64,
                 fusion: str = "input"):
        super().__init__()
        if fusion not in GAN_FUSIONS:
            raise ValueError(f"fusion must be one of {GAN_FUSIONS}, got {fusion!r}")
        self.fusion = fusion
        n = _blocks(image_size)
        self.z_dim, self.c_dim, self.image_size = z_dim, c_dim, image_size
        self.top = 8 * width
        self.fc = nn.Sequential(
            nn.Linear(z_dim + c_dim, self.top * 16, bias=False),
            nn.BatchNorm1d(self.top * 16),
            nn.ReLU(inplace=True),
        )
        channels = [self.top] + [max(self.top >> (k + 1), max(width // 2, 1)) for k in range(n)]
        pairs = list(zip(channels[:-1], channels[1:]))
        self.blocks = (nn.ModuleList(AffineUpBlock(a, b, c_dim) for a, b in pairs) if fusion == "affine"
                       else nn.Sequential(*(_up_block(a, b) for a, b in pairs)))
        self.to_rgb = nn.Conv2d(channels[-1], 3, 3, padding=1)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = self.fc(torch.cat([z, c], dim=1)).view(-1, self.top, 4, 4)  # (B, 8w, 4, 4)
        # Channels-last activations run the few-channel convs at 32-128 px about 1.7x faster on CPU.
        x = x.contiguous(memory_format=torch.channels_last)
        if self.fusion == "affine":
            for block in self.blocks:
                x = block(x, c)
        else:
            x = self.blocks(x)  # (B, w', S, S)
        return torch.tanh(self.to_rgb(x)).contiguous()  # (B, 3, S, S)


class TextToImage(nn.Module):
    """The imagine path's trainable text side: conditioning augmentation + generator.

    The discriminator is not part of it: it is a training-time critic (train.py keeps it beside
    the model), and sampling needs only this module.
    """

    def __init__(self, text_dim: int, c_dim: int = 128, z_dim: int = 100, image_size: int = 64, width: int = 64,
                 fusion: str = "input", standardise_text: bool = False):
        super().__init__()
        self.ca = ConditioningAugmentation(text_dim, c_dim, standardise_text)
        self.generator = Generator(c_dim, z_dim, image_size, width, fusion)
        self.z_dim, self.image_size = z_dim, image_size
        self.apply(init_weights)
        for block in self.modules():
            if isinstance(block, AffineUpBlock):
                block.reset_modulation()  # after DCGAN's init: modulation starts at the identity

    def forward(self, text: torch.Tensor, z: torch.Tensor, sample: bool = True, interpolate: bool = False) -> dict:
        """Grounded caption features ``(B, T)`` and noise ``(B, Z)`` -> ``{"fake", "mu", "logvar"}``.

        ``fake`` ``(B, 3, S, S)`` in [-1, 1]; ``mu``, ``logvar`` ``(B, C)``. With ``interpolate``
        (GAN-INT) also ``fake_int`` drawn from conditions halfway between two captions and the
        matching ``mu_int`` for the discriminator (fresh noise).
        """
        c, mu, logvar = self.ca(text, sample)  # (B, C) each
        out = {"fake": self.generator(z, c), "mu": mu, "logvar": logvar}
        if interpolate:
            c_int, mu_int = interpolate_conditions(torch.cat([c, mu], dim=1)).split(c.shape[1], dim=1)
            out["fake_int"], out["mu_int"] = self.generator(torch.randn_like(z), c_int), mu_int
        return out


def interpolate_conditions(c: torch.Tensor, alpha: float = 0.5,
                           generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """GAN-INT: ``alpha * c + (1 - alpha) * c[j]`` ``(B, C)``, each row mixed with another row ``j``.

    The partner rows are a random cyclic shift by 1..B-1 (so no row meets itself). The result has
    no real image: use it only in the generator's step (D(G(z, c_int), c_int) -> 1), as GAN-INT does.
    """
    b = c.shape[0]
    if b < 2:
        raise ValueError(f"interpolate_conditions needs at least 2 rows, got {b}")
    shift = torch.randint(1, b, (1,), generator=generator, device=c.device)
    partner = (torch.arange(b, device=c.device) + shift) % b  # (B,)
    return alpha * c + (1 - alpha) * c[partner]


def _down_block(c_in: int, c_out: int, norm: bool) -> nn.Sequential:
    """Halves the resolution: conv4x4 stride 2, optional BatchNorm, LeakyReLU(0.2)."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


class Discriminator(nn.Module):
    """Images ``(B, 3, S, S)`` and conditions ``(B, K)`` -> one logit per pair ``(B,)``.

    Strided convs bring the image to ``(8w, 4, 4)`` (BatchNorm on all but the first); the condition,
    projected by ``Linear(K, P)`` + LeakyReLU, is tiled to 4x4 and concatenated; a 1x1 conv mixes
    the two and a 4x4 valid conv gives the logit (GAN-INT-CLS / StackGAN).

    Args:
        cond_dim: ``K``, the condition size (the CA's ``C``, or the text feature size).
        image_size: ``S`` in {32, 64, 128}.
        width: ``w``, the base channel count (64 in StackGAN; tests use 4).
        proj_dim: ``P``, the projected condition size.
        spectral: spectral normalisation (Miyato et al., arXiv 1802.05957) on every conv and linear
            layer, and no BatchNorm (SN-GAN's discriminator). Call :func:`init_weights` before.
    """

    def __init__(self, cond_dim: int = 128, image_size: int = 64, width: int = 64, proj_dim: int = 128,
                 spectral: bool = False):
        super().__init__()
        n = _blocks(image_size)
        # Channels double per block and end at 8w: 32 px -> 2w, 4w, 8w; 64 px -> w .. 8w; 128 px -> w .. 8w, 8w.
        channels = [3] + [width * 2 ** min(k + max(0, 4 - n), 3) for k in range(n)]
        self.image = nn.Sequential(*(_down_block(a, b, norm=k > 0 and not spectral)
                                     for k, (a, b) in enumerate(zip(channels[:-1], channels[1:]))))
        self.cond = nn.Sequential(nn.Linear(cond_dim, proj_dim), nn.LeakyReLU(0.2, inplace=True))
        self.joint = nn.Sequential(
            nn.Conv2d(8 * width + proj_dim, 8 * width, 1, bias=spectral),
            nn.Identity() if spectral else nn.BatchNorm2d(8 * width),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(8 * width, 1, 4),  # (B, 1, 1, 1)
        )
        self.spectral = spectral

    def apply_spectral_norm(self) -> "Discriminator":
        """Wrap every conv and linear layer in spectral normalisation (after :func:`init_weights`)."""
        if self.spectral:
            for module in list(self.modules()):
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    nn.utils.parametrizations.spectral_norm(module)
        return self

    def forward(self, images: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.judge(self.image(images), cond)

    def judge(self, features: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The logits ``(B,)`` of image features ``(B, 8w, 4, 4)`` (``self.image(images)``) with conditions
        ``(B, K)``: one pass of the image convs can be judged against several conditions."""
        y = self.cond(cond)[:, :, None, None].expand(-1, -1, 4, 4)  # (B, P, 4, 4)
        return self.joint(torch.cat([features, y], dim=1)).view(-1)  # (B,)


def init_weights(module: nn.Module) -> None:
    """DCGAN init, for ``model.apply(init_weights)``: conv/linear N(0, 0.02), BatchNorm N(1, 0.02), zero biases."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and module.affine:
        nn.init.normal_(module.weight, 1.0, 0.02)
    else:
        return
    if module.bias is not None:
        nn.init.zeros_(module.bias)
