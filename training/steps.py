"""One joint training step: the ranking loss of the matcher plus the switched-on generative paths."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch

from config import Config
from data.contrast import TokenSwapper
from data.datasets import encoder_images, gan_images
from losses.ranking import RankingLoss
from models.modality import modality_logits_loss, ramp
from models.modes import running_stats_kept

from . import distributed
from .imagine import Critic, generator_terms
from .look import CaptionReward, look_terms
from .robust import PairLossRecord


def look_phase(cfg: Config, epoch: int) -> str:
    """``off``, ``xe`` or ``scst`` for this epoch: SCST takes the last ``look.scst_epochs`` epochs,
    but never the first one (sampling from an untrained decoder earns no reward to learn from)."""
    if cfg.look.lambda_i2t <= 0:
        return "off"
    first_scst = max(1, cfg.train.epochs - cfg.look.scst_epochs)
    return "scst" if cfg.look.scst_epochs > 0 and epoch >= first_scst else "xe"


class NegativeQueue:
    """The last ``size`` image and caption embeddings (detached, per branch) with their image ids:
    extra candidates for every batch, so the hardest negatives are mined from the current
    embedding beyond the batch (``loss.mined_negatives``). Same-image entries are masked by id.
    The candidates join only once the hardest form has begun (``hard_weight`` > 0): in the sum form
    of the warm-up, hundreds of stale extra negatives swamp the batch's own (measured on Shapes, a
    512-entry queue from epoch 1: val rsum 3.8 after 2 epochs, chance level; 58.5 after one epoch without the queue)."""

    def __init__(self, size: int):
        self.size = size
        self.img: dict = {}
        self.cap: dict = {}
        self.ids: Optional[torch.Tensor] = None

    def candidates(self, branch: str) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        return self.img.get(branch), self.cap.get(branch)

    def push(self, img: dict, cap: dict, ids: torch.Tensor) -> None:
        for store, new in ((self.img, img), (self.cap, cap)):
            for k, v in new.items():
                old = store.get(k)
                store[k] = (v.detach() if old is None else torch.cat([v.detach(), old]))[:self.size]
        self.ids = (ids if self.ids is None else torch.cat([ids, self.ids]))[:self.size]


@dataclass
class PairState:
    """What a step carries beyond the batch: the per-pair loss record of robust training (and
    whether its clean probabilities weight this epoch's pairs) and the mined-negative queue."""

    record: Optional[PairLossRecord] = None
    weighting: bool = False
    queue: Optional[NegativeQueue] = None
    progress: float = 1.0  # fraction of training done (ramps the modality adversary's reversal)
    swapper: Optional[TokenSwapper] = None  # contrast captions (generated hard negatives) while set
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))


def ranking_terms(img: dict, cap: dict, image_ids: torch.Tensor, branch_weights: dict, loss_fn: RankingLoss,
                  hard_weight: float, queue: Optional[NegativeQueue] = None,
                  weigh: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                  signal: bool = False) -> tuple[dict, Optional[torch.Tensor], Optional[torch.Tensor]]:
    """``rank_<branch>`` per branch, each query's negatives reduced by ``hard_weight`` (0: sum, 1:
    hardest; ``False``/``True`` work too); with ``signal`` or ``weigh``, each pair's noise signal ``(B,)``
    (its detached loss in the sum-over-negatives form, whatever form trains, so that its scale does
    not jump when hardest negatives switch on) and the pair weights ``weigh`` makes from it.
    Under torchrun the negatives come from every process; a ``queue`` adds its mined candidates."""
    gathered = distributed.torch_world_size() > 1
    extra = {}
    if gathered:
        extra = {"all_ids": distributed.gather_with_grad(image_ids), "offset": distributed.torch_rank() * len(image_ids)}
    mined = queue is not None and queue.ids is not None and float(hard_weight) > 0  # mining, not the warm-up's sum
    if mined and not gathered:
        extra = {"all_ids": torch.cat([image_ids, queue.ids]), "offset": 0}
    elif mined:
        extra["all_ids"] = torch.cat([extra["all_ids"], queue.ids])
    per_pair, noise = {}, []
    for branch, weight in branch_weights.items():
        if weight == 0:
            continue
        all_im, all_cap = img[branch], cap[branch]
        if gathered:
            all_im, all_cap = distributed.gather_with_grad(all_im), distributed.gather_with_grad(all_cap)
        if mined:
            q_im, q_cap = queue.candidates(branch)
            all_im, all_cap = torch.cat([all_im, q_im]), torch.cat([all_cap, q_cap])
        if gathered or mined:
            extra["all_im"], extra["all_cap"] = all_im, all_cap
        per_pair[branch] = weight * loss_fn(img[branch], cap[branch], image_ids=image_ids,
                                            hard_weight=float(hard_weight), per_pair=True, **extra)
        if signal or weigh is not None:
            with torch.no_grad():
                noise.append(weight * loss_fn(img[branch], cap[branch], image_ids=image_ids, hard_weight=0.0,
                                              per_pair=True, **extra))
    total = sum(noise) if noise else None
    weights = weigh(total) if weigh is not None else None
    terms = {f"rank_{b}": (v if weights is None else v * weights).sum() for b, v in per_pair.items()}
    if queue is not None:
        queue.push({b: img[b] for b in per_pair}, {b: cap[b] for b in per_pair}, image_ids)
    return terms, total, weights


# The paper's order within one iteration (after the discriminator): G, the caption decoder, the ranking loss.
PATHS = ("imagine", "look", "rank")


def joint_step(model, batch, device: torch.device, cfg: Config, loss_fn: RankingLoss, hard_weight: float,
               phase: str, reward: Optional[CaptionReward], critic: Optional[Critic] = None,
               paths: tuple = PATHS, pairs: Optional[PairState] = None) -> tuple[torch.Tensor, dict]:
    """Weighted sum of the terms of ``paths`` for one batch, and the terms as floats for logging.

    The paths share one forward pass of the encoders. With a ``critic`` and ``imagine`` among the
    paths, the discriminator is updated here first, on the first ``imagine.batch_pairs`` pairs; the
    generator's terms against the updated D then join the sum. The weighted losses go into one
    backward, so each encoder learns from the ranking loss and its generative path together.
    Terms whose name starts with ``_`` are logged, not optimised. ``hard_weight`` reduces each
    ranking query's negatives, from 0 (their sum) to 1 (the hardest), see :meth:`RankingLoss.hard_weight_at`.

    With ``pairs``: each pair's ranking loss is recorded (robust training), and while
    ``pairs.weighting`` is on, each pair's clean probability under the record's mixture weights its
    ranking, decoder and GAN-matching terms; ``pairs.queue`` adds mined negatives.
    """
    raw = model.module if hasattr(model, "module") else model
    pairs = pairs or PairState()
    images, captions, lengths, image_ids, caption_ids = batch
    images, image_ids = images.to(device, non_blocking=True), image_ids.to(device)
    critic = critic if "imagine" in paths else None
    phase = phase if "look" in paths else "off"
    n_gan = (cfg.imagine.batch_pairs or len(images)) if critic is not None else 0
    modality = ramp(pairs.progress) if "rank" in paths and raw.matcher.modality is not None else -1.0
    # The contrast captions (generated hard negatives) go through the text encoder with the batch's own.
    swap = pairs.swapper(captions, lengths, pairs.rng) if "rank" in paths and pairs.swapper is not None else None
    out = model(images, captions.to(device, non_blocking=True), lengths, look=phase, samples=cfg.look.scst_samples,
                temperature=cfg.look.temperature, imagine=n_gan, interpolate=cfg.imagine.interpolate,
                modality=modality, extra_captions=None if swap is None else swap[:2])
    terms, weights = {}, None
    weigh = pairs.record.weights if pairs.record is not None and pairs.weighting else None
    if "rank" in paths or weigh is not None:  # the weights come from the pairs' ranking losses
        rank, per_pair, weights = ranking_terms(out["img"], out["cap"], image_ids, raw.matcher.branch_weights,
                                                loss_fn, hard_weight, pairs.queue if "rank" in paths else None,
                                                weigh, signal=pairs.record is not None)
        if "rank" in paths:
            terms.update(rank)
            if pairs.record is not None:
                record_losses(pairs.record, caption_ids, per_pair)
        if weights is not None:
            terms["_clean_weight_mean"] = weights.mean()
    if swap is not None:
        terms.update(contrast_terms(raw, out, captions, lengths, pairs, cfg, device, swap))
    if "modality_logits" in out:
        loss, accuracy = modality_logits_loss(out["modality_logits"], len(images))
        terms["invariant"] = cfg.model.invariant_weight * loss
        terms["_modality_accuracy"] = accuracy
    if phase != "off":
        for name, value in look_terms(raw.decoder, out, batch, phase, cfg.look, reward, weights).items():
            terms[name] = value if name.startswith("_") else cfg.look.lambda_i2t * value
    if critic is not None:
        real = gan_images(images[:n_gan], cfg.imagine.image_size)  # (n, 3, S, S) in [-1, 1]
        terms.update({f"_{k}": v for k, v in critic.step(real, out, image_ids[:n_gan]).items()})
        swapped = (out["extra_cap"], swap[2]) if swap is not None and "extra_cap" in out else None
        for name, value in generator_terms(critic, out, cfg.imagine, raw.matcher, image_ids, cfg.data.image_size,
                                           weights, swapped).items():
            terms[name] = cfg.imagine.lambda_t2i * value
    loss = sum(v for k, v in terms.items() if not k.startswith("_"))
    return loss, {k.lstrip("_"): float(v.detach() if torch.is_tensor(v) else v) for k, v in terms.items()}


def contrast_terms(model, out: dict, captions: torch.Tensor, lengths: torch.Tensor, pairs: PairState, cfg: Config,
                   device: torch.device, swap: Optional[tuple] = None) -> dict:
    """Generated hard negatives from each caption with one class word swapped (rows with nothing to
    swap are skipped and counted in ``contrast_skipped``):

    - ``contrast`` (``loss.contrast_weight``): the image must score its caption above the swapped
      caption by the margin (hinge, image as query);
    - ``imagined`` (``loss.imagined_weight``, needs the GAN): the caption must score its image above
      an image the generator (its averaged copy when there is one) imagines from the swapped caption
      (caption as query), on the first ``loss.imagined_pairs`` rows. The generator runs without
      gradient (this loss trains the matcher, not G). The image encoder normalises the imagined
      images with their own batch statistics, as it does real batches, and they never shift its
      running statistics (:func:`models.modes.running_stats_kept`).

    ``swap``: the swapper's ``(captions, lengths, ok)`` drawn already, whose captions the forward
    encoded into ``out["extra_cap"]``; without it they are drawn and encoded here.
    """
    matcher, loss_cfg = model.matcher, cfg.loss
    swapped, new_lengths, ok = swap if swap is not None else pairs.swapper(captions, lengths, pairs.rng)
    terms = {"_contrast_skipped": (~ok).float().sum()}
    if not ok.any():
        return terms
    ok = ok.to(device)
    neg = out["extra_cap"] if "extra_cap" in out else matcher.encode_captions(swapped.to(device), new_lengths)
    pos_s = matcher.paired_similarity(out["img"], out["cap"])
    if loss_cfg.contrast_weight > 0:
        hinge = (loss_cfg.margin + matcher.paired_similarity(out["img"], neg) - pos_s).clamp(min=0) * ok
        terms["contrast"] = loss_cfg.contrast_weight * hinge.sum()
        terms["_contrast_violations"] = (hinge > 0).float().sum() / ok.sum()
    if loss_cfg.imagined_weight > 0:
        n = min(loss_cfg.imagined_pairs or len(ok), len(ok))
        with torch.no_grad():
            text = neg["grounded"][:n].detach()
            fake = model.sampler()(text, torch.randn(n, model.imagine.z_dim, device=device))["fake"]
        encoder = matcher.image_encoder
        with running_stats_kept(encoder):
            fake_img = encoder(encoder_images(fake, cfg.data.image_size))
        fake_s = matcher.paired_similarity(fake_img, {k: v[:n] for k, v in out["cap"].items()})
        hinge = (loss_cfg.margin + fake_s - pos_s[:n]).clamp(min=0) * ok[:n]
        terms["imagined"] = loss_cfg.imagined_weight * hinge.sum()
        terms["_imagined_violations"] = (hinge > 0).float().sum() / ok[:n].sum().clamp(min=1)
    return terms


def record_losses(record: PairLossRecord, caption_ids: torch.Tensor, losses: torch.Tensor) -> None:
    """Record a batch's per-pair losses; under torchrun every process records every process's pairs."""
    if distributed.torch_world_size() > 1:
        caption_ids = distributed.gather_with_grad(caption_ids.to(losses.device))
        losses = distributed.gather_with_grad(losses)
    record.record(caption_ids, losses)


def schedule_paths(cfg: Config, phase: str, has_critic: bool) -> list[tuple]:
    """The updates of one iteration, as groups of paths that share a forward and a backward.

    ``train.schedule=joint``: one update with every switched-on path. ``sequential``: the paper's
    Algorithm 1, one update per path in the order D + G (the discriminator steps inside the
    imagine update), caption decoder, ranking loss, each with its own forward pass.
    """
    on = [p for p in PATHS if (p != "imagine" or has_critic) and (p != "look" or phase != "off")]
    return [tuple(on)] if cfg.train.schedule == "joint" else [(p,) for p in on]
