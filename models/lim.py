"""The whole LIM model: the matcher plus whichever generative paths are switched on."""
from __future__ import annotations

import copy
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from config import ImagineConfig, LookConfig, ModelConfig

from .caption_decoder import CaptionDecoder
from .matcher import BRANCHES, Matcher
from .modality import branch_vectors, reverse_gradient
from .t2i_gan import TextToImage

LOOK_MODES = ("off", "xe", "scst")


class LIM(nn.Module):
    """``matcher`` always; ``decoder`` (look: image -> caption) when ``look.lambda_i2t > 0``;
    ``imagine`` (caption -> image: conditioning augmentation + generator) when ``imagine.lambda_t2i > 0``,
    and with ``imagine.ema > 0`` its moving average ``imagine_ema`` (no gradients; :meth:`sampler`).

    A path that is switched off is ``None``: it has no parameters and costs nothing.
    """

    def __init__(self, model: ModelConfig, look: LookConfig, imagine: ImagineConfig, vocab_size: int,
                 image_feature_dim: Optional[int] = None):
        super().__init__()
        self.matcher = Matcher(model, vocab_size, image_feature_dim)
        self.decoder: Optional[CaptionDecoder] = None
        if look.lambda_i2t > 0:
            self.decoder = CaptionDecoder(vocab_size, model.embed_dim, look.word_dim, look.hidden, look.dropout,
                                          look.max_len)
        self.imagine: Optional[TextToImage] = None
        if imagine.lambda_t2i > 0:  # config.checks refuses it with precomputed features (no pixels)
            self.imagine = TextToImage(model.embed_dim, imagine.c_dim, imagine.z_dim, imagine.image_size,
                                       imagine.g_width, imagine.fusion, imagine.standardise_text)
        self.imagine_ema: Optional[TextToImage] = None
        if self.imagine is not None and imagine.ema > 0:
            self.imagine_ema = copy.deepcopy(self.imagine).requires_grad_(False)
        self.ema_decay = imagine.ema
        if model.channels_last:  # the layout follows the weights through every conv (model.channels_last)
            self.to(memory_format=torch.channels_last)

    def sampler(self) -> Optional[TextToImage]:
        """The generator to draw pictures with after training: the averaged one when there is one."""
        return self.imagine_ema if self.imagine_ema is not None else self.imagine

    @torch.no_grad()
    def update_ema(self, step: Optional[int] = None) -> None:
        """``ema = d * ema + (1 - d) * live`` for every weight and every floating-point buffer
        (BatchNorm's running statistics are averaged too, as timm's ModelEmaV2 does: copied, they
        would describe the live weights' activations, not the averaged ones'); integer buffers are
        copied. ``d`` is ``imagine.ema``, or with ``step`` (updates so far) ``min(ema, (1 + step) /
        (10 + step))``, TensorFlow's warm-up: early on the average follows the live weights instead
        of holding the random initial ones for a thousand steps. Call after each optimizer step."""
        if self.imagine_ema is None:
            return
        decay = self.ema_decay if step is None else min(self.ema_decay, (1 + step) / (10 + step))
        for ema, live in zip(self.imagine_ema.parameters(), self.imagine.parameters()):
            ema.lerp_(live.detach(), 1.0 - decay)
        for ema, live in zip(self.imagine_ema.buffers(), self.imagine.buffers()):
            if ema.is_floating_point():
                ema.lerp_(live, 1.0 - decay)
            else:
                ema.copy_(live)

    def forward(self, images: torch.Tensor, captions: torch.Tensor, lengths: torch.Tensor, look: str = "off",
                samples: int = 1, temperature: float = 1.0, imagine: int = 0, interpolate: bool = False,
                modality: float = -1.0, extra_captions: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> dict:
        """One training forward pass (what DDP wraps), so every used parameter is seen by DDP.

        Returns ``img``/``cap`` embeddings per branch and, by ``look``: ``"xe"`` teacher-forced
        ``logits (B, T-1, V)``; ``"scst"`` ``samples`` sampled captions per image as ``tokens``,
        ``logprobs`` and ``mask`` ``(B * samples, L)``. With ``imagine = n > 0``, images generated
        from the first ``n`` captions as ``fake (n, 3, S, S)`` in [-1, 1], with the conditioning's
        ``mu`` and ``logvar`` ``(n, C)`` (and GAN-INT's ``fake_int``, ``mu_int`` with ``interpolate``).
        With ``modality >= 0`` and a modality classifier, ``modality_logits (2B,)`` for the image then
        the caption vectors, seen through gradient reversal of that scale (inside the forward, so DDP
        sees the classifier's parameters used). ``extra_captions`` ``(captions (B', T'), lengths (B',))``
        are encoded in the same text-encoder call as the batch's (one GRU pass over both, cheaper on a
        CPU than two: benchmarks/bench_shared_passes.py) and returned as ``extra_cap``, per branch ``(B', D)``:
        the contrast captions of the generated hard negatives.
        """
        if look not in LOOK_MODES:
            raise ValueError(f"look={look!r} is not one of {LOOK_MODES}")
        if extra_captions is None:
            img, cap = self.matcher(images, captions, lengths)
            out = {"img": img, "cap": cap}
        else:
            more, more_lengths = extra_captions
            width = max(captions.shape[1], more.shape[1])
            both = torch.cat([F.pad(captions, (0, width - captions.shape[1])),
                              F.pad(more.to(captions.device), (0, width - more.shape[1]))])
            img, both_cap = self.matcher(images, both, torch.cat([lengths.cpu(), more_lengths.cpu()]))
            cap = {k: v[:len(captions)] for k, v in both_cap.items()}
            out = {"img": img, "cap": cap, "extra_cap": {k: v[len(captions):] for k, v in both_cap.items()}}
        if modality >= 0 and self.matcher.modality is not None:
            both = torch.cat([branch_vectors(img, BRANCHES), branch_vectors(cap, BRANCHES)])
            out["modality_logits"] = self.matcher.modality(reverse_gradient(both, modality))
        if look != "off" and self.decoder is None:
            raise ValueError("the caption decoder is switched off (look.lambda_i2t=0)")
        if look == "xe":
            out["logits"] = self.decoder(img["grounded"], captions, lengths)
        elif look == "scst":
            out["tokens"], out["logprobs"], out["mask"] = self.decoder.sample(img["grounded"], samples, temperature)
        if imagine:
            if self.imagine is None:
                raise ValueError("the generator is switched off (imagine.lambda_t2i=0)")
            text = cap["grounded"][:imagine]  # (n, D)
            z = torch.randn(len(text), self.imagine.z_dim, device=text.device)
            out.update(self.imagine(text, z, interpolate=interpolate))
        return out
