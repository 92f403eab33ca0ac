"""Imagine-path training: real images for the discriminator, D's update, G's loss terms.

Per step (docs/DESIGN.md section 2): the discriminator is updated first, on detached generated images and
detached conditions; then G's adversarial loss against the updated D, plus the KL of the
conditioning augmentation, joins the joint objective, so it reaches the generator, the CA and,
through the CA, the text encoder's grounded head. D never trains the text encoder.
"""
from __future__ import annotations

import contextlib
import math
from typing import Optional

import torch

from config import ImagineConfig
from data.datasets import encoder_images
from losses.gan import discriminator_loss, generated_match_loss, generator_loss, mismatched_indices
from models.diff_augment import DiffAugment
from models.modes import eval_mode
from models.t2i_gan import Discriminator, init_weights

from . import distributed


@contextlib.contextmanager
def frozen(module: torch.nn.Module):
    """Graphs built inside carry no gradient into ``module``'s weights (G's loss goes through D)."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


class Critic:
    """The matching-aware discriminator with its own Adam, updated once per training step.

    Under torchrun its gradients are averaged across processes by hand: it runs separate
    forwards per update (the real images, then the fakes; BatchNorm statistics kept apart), which
    DDP's one forward per backward does not allow. A ``local`` critic (one process training the GAN alone)
    neither averages nor waits for the others.
    """

    def __init__(self, cfg: ImagineConfig, grad_clip: float = 0.0, local: bool = False, channels_last: bool = False):
        self.cfg, self.grad_clip, self.local = cfg, grad_clip, local
        self.module = Discriminator(cfg.c_dim, cfg.image_size, cfg.d_width, spectral=cfg.spectral_norm)
        self.module.apply(init_weights)
        self.module.apply_spectral_norm()
        if channels_last:  # as the model's convs (model.channels_last)
            self.module.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(self.module.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.skipped = 0
        self.augment = DiffAugment(cfg.diff_augment)

    def to(self, device: torch.device) -> "Critic":
        self.module.to(device)
        return self

    def state_dict(self) -> dict:
        """What a checkpoint keeps of it: D's weights, its Adam, the count of skipped updates."""
        return {"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(), "skipped": self.skipped}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.skipped = state["skipped"]

    def step(self, real: torch.Tensor, out: dict, image_ids: torch.Tensor) -> dict[str, float]:
        """One D update on ``real (n, 3, S, S)`` in [-1, 1], the model's ``fake``/``mu``, ``image_ids (n,)``.

        Returns the terms as floats (``d_real``, ``d_wrong``, ``d_fake``, ``d_loss``, ``d_skipped``).
        The update is skipped while the loss (averaged over processes) is below ``d_skip_loss``:
        a discriminator that has already won gives the generator nothing to learn from. A
        non-finite loss is returned without an update (the training loop stops on it).
        """
        d = self.module
        d.train()
        cond = out["mu"].detach()  # (n, C): D judges the caption, it does not train the text encoder
        wrong = cond[mismatched_indices(image_ids)]  # each real image with another image's caption
        fake = out["fake"].detach()
        if self.augment:  # one transform per pair: its real image (with its own and a wrong caption) and its fake
            params = self.augment.draw(len(real), real.shape[-1], real.device)
            real, fake = self.augment.apply(real, params), self.augment.apply(fake, params)
        # The real images go through D's convs once, judged with their own and with a wrong caption (the
        # same values as two passes, a third less of the update's conv work; D's BatchNorm, when it
        # has one, updates its running statistics once per batch of real images instead of twice).
        seen = d.image(real)
        terms = discriminator_loss(d.judge(seen, cond), d.judge(seen, wrong), d(fake, cond), self.cfg.adv_loss)
        total = terms["total"]
        mean = float(total.detach() if self.local else distributed.all_reduce_mean(total.detach()))
        skip = mean < self.cfg.d_skip_loss or not math.isfinite(mean)
        if not skip:
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            if distributed.torch_world_size() > 1 and not self.local:
                for p in d.parameters():
                    p.grad = distributed.all_reduce_mean(p.grad)
            if self.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(d.parameters(), self.grad_clip)
            self.optimizer.step()
        self.skipped += skip
        logged = {f"d_{k}": float(v.detach()) for k, v in terms.items() if k != "total"}
        return {**logged, "d_loss": float(total.detach()), "d_skipped": float(skip)}


def generator_terms(critic: Critic, out: dict, cfg: ImagineConfig, matcher=None, image_ids=None,
                    encoder_size: int = 0, weights: Optional[torch.Tensor] = None,
                    swapped: Optional[tuple[dict, torch.Tensor]] = None) -> dict[str, torch.Tensor]:
    """G's terms for the joint objective: ``gan_g`` (adversarial, + GAN-INT), ``gan_kl`` (weighted)
    and, with ``imagine.match_weight > 0`` and a ``matcher``, ``gan_match`` (weighted).

    D sees the detached condition ``mu`` (as in StackGAN): the text encoder learns from the
    imagine path only through the generator's input ``c`` and the KL term. ``gan_match`` asks the
    matcher's image encoder (frozen, BatchNorm in eval mode, so fake images never train it) to
    find each of the first ``imagine.match_pairs`` generated images closest to its own caption
    among theirs: the match path teaching imagine. ``weights (B,)`` (robust training) scale each
    pair's ``gan_match`` terms. ``swapped``: the embeddings of a one-word swap of each row's caption
    and whether it has one ``(B,)``; with ``imagine.match_swaps`` each generated image must also
    score its caption above its swap (a colour, shape, size or relation word it has to draw).
    """
    augment = critic.augment  # D sees generated images the way it was trained to: augmented (fresh draws)
    with frozen(critic.module) as d:
        terms = generator_loss(d(augment(out["fake"]), out["mu"].detach()), out["mu"], out["logvar"], cfg.kl_weight,
                               cfg.adv_loss)
        adv = terms["adv"]
        if "fake_int" in out:
            adv = adv + generator_loss(d(augment(out["fake_int"]), out["mu_int"].detach()), out["mu"], out["logvar"],
                                       0.0, cfg.adv_loss)["adv"]
    result = {"gan_g": adv, "gan_kl": cfg.kl_weight * terms["kl"]}
    if cfg.match_weight > 0 and matcher is not None:
        encoder = matcher.image_encoder
        n = min(cfg.match_pairs or len(out["fake"]), len(out["fake"]))
        with frozen(encoder), eval_mode(encoder):
            emb = encoder(encoder_images(out["fake"][:n], encoder_size))  # per branch (n, D)
        captions = {k: v[:n].detach() for k, v in out["cap"].items()}
        w = None if weights is None else weights[:n]
        extra = None
        if cfg.match_swaps and swapped is not None:
            neg, ok = swapped
            extra = matcher.paired_similarity(emb, {k: v[:n].detach() for k, v in neg.items()})
            extra = extra.masked_fill(~ok[:n].to(extra.device), float("nan"))[:, None]  # (n, 1)
        result["gan_match"] = cfg.match_weight * generated_match_loss(matcher.similarity(emb, captions), image_ids[:n],
                                                                      weights=w, swapped=extra)
    return result
