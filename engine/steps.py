"""One joint training step: the ranking loss of the matcher plus the switched-on generative paths."""
from __future__ import annotations

from typing import Optional

import torch

from config import Config
from losses.ranking import RankingLoss

from . import distributed
from .imagine import Critic, gan_images, generator_terms
from .look import CaptionReward, look_terms


def look_phase(cfg: Config, epoch: int) -> str:
    """``off``, ``xe`` or ``scst`` for this epoch: SCST takes the last ``look.scst_epochs`` epochs,
    but never the first one (sampling from an untrained decoder earns no reward to learn from)."""
    if cfg.look.lambda_i2t <= 0:
        return "off"
    first_scst = max(1, cfg.train.epochs - cfg.look.scst_epochs)
    return "scst" if cfg.look.scst_epochs > 0 and epoch >= first_scst else "xe"


def ranking_terms(img: dict, cap: dict, image_ids: torch.Tensor, branch_weights: dict, loss_fn: RankingLoss,
                  max_violation: bool) -> dict:
    """``rank_<branch>`` per branch; under torchrun the negatives come from every process."""
    gathered = distributed.torch_world_size() > 1
    extra = {}
    if gathered:
        extra = {"all_ids": distributed.gather_with_grad(image_ids), "offset": distributed.torch_rank() * len(image_ids)}
    terms = {}
    for branch, weight in branch_weights.items():
        if weight == 0:
            continue
        if gathered:
            extra["all_im"] = distributed.gather_with_grad(img[branch])
            extra["all_cap"] = distributed.gather_with_grad(cap[branch])
        terms[f"rank_{branch}"] = weight * loss_fn(img[branch], cap[branch], image_ids=image_ids,
                                                   max_violation=max_violation, **extra)
    return terms


# The paper's order within one iteration (after the discriminator): G, the caption decoder, the ranking loss.
PATHS = ("imagine", "look", "rank")
SCHEDULES = ("joint", "sequential")


def joint_step(model, batch, device: torch.device, cfg: Config, loss_fn: RankingLoss, max_violation: bool,
               phase: str, reward: Optional[CaptionReward], critic: Optional[Critic] = None,
               paths: tuple = PATHS) -> tuple[torch.Tensor, dict]:
    """Weighted sum of the terms of ``paths`` for one batch, and the terms as floats for logging.

    The paths share one forward pass of the encoders. With a ``critic`` and ``imagine`` among the
    paths, the discriminator is updated here first, on the first ``imagine.batch_pairs`` pairs; the
    generator's terms against the updated D then join the sum. The weighted losses go into one
    backward, so each encoder learns from the ranking loss and its generative path together.
    Terms whose name starts with ``_`` are logged, not optimised.
    """
    raw = model.module if hasattr(model, "module") else model
    images, captions, lengths, image_ids, _ = batch
    images, image_ids = images.to(device, non_blocking=True), image_ids.to(device)
    critic = critic if "imagine" in paths else None
    phase = phase if "look" in paths else "off"
    n_gan = (cfg.imagine.batch_pairs or len(images)) if critic is not None else 0
    out = model(images, captions.to(device, non_blocking=True), lengths, look=phase, samples=cfg.look.scst_samples,
                temperature=cfg.look.temperature, imagine=n_gan, interpolate=cfg.imagine.interpolate)
    terms = {}
    if "rank" in paths:
        terms = ranking_terms(out["img"], out["cap"], image_ids, raw.matcher.branch_weights, loss_fn, max_violation)
    if phase != "off":
        for name, value in look_terms(raw.decoder, out, batch, phase, cfg.look, reward).items():
            terms[name] = value if name.startswith("_") else cfg.look.lambda_i2t * value
    if critic is not None:
        real = gan_images(images[:n_gan], cfg.imagine.image_size)  # (n, 3, S, S) in [-1, 1]
        terms.update({f"_{k}": v for k, v in critic.step(real, out, image_ids[:n_gan]).items()})
        for name, value in generator_terms(critic, out, cfg.imagine, raw.matcher, image_ids, cfg.data.image_size).items():
            terms[name] = cfg.imagine.lambda_t2i * value
    loss = sum(v for k, v in terms.items() if not k.startswith("_"))
    return loss, {k.lstrip("_"): float(v.detach() if torch.is_tensor(v) else v) for k, v in terms.items()}


def schedule_paths(cfg: Config, phase: str, has_critic: bool) -> list[tuple]:
    """The updates of one iteration, as groups of paths that share a forward and a backward.

    ``train.schedule=joint``: one update with every switched-on path. ``sequential``: the paper's
    Algorithm 1, one update per path in the order D + G (the discriminator steps inside the
    imagine update), caption decoder, ranking loss, each with its own forward pass.
    """
    on = [p for p in PATHS if (p != "imagine" or has_critic) and (p != "look" or phase != "off")]
    return [tuple(on)] if cfg.train.schedule == "joint" else [(p,) for p in on]
