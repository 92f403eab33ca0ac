"""One training epoch and one validation pass, and what they are built from: the epoch's caption
order, the loader, the batch size a small training set allows, the vocabulary, the optimisers."""
from __future__ import annotations

import math
import os
from dataclasses import replace
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from config import Config
from data import DataError, build_vocab
from data.datasets import PairDataset, collate_pairs, image_transform
from data.labelled import labelled_captions, labelled_ids
from data.vocab import Vocabulary
from evaluation.captioning import decode_options, generate_captions
from evaluation.report import GRID_CAPTIONS, GRID_SAMPLES
from evaluation.retrieval import evaluate_retrieval
from losses.ranking import RankingLoss
from models.lim import LIM
from runfolder.checkpoint import CheckpointError
from runfolder.folder import RunFolder
from synthesis.sampling import split_grid

from . import distributed
from .imagine import Critic
from .look import CaptionReward, split_cider_d
from .steps import PairState, joint_step, look_phase, schedule_paths

# Val CIDEr-D each epoch is a progress signal, not the selection metric: a subset keeps it cheap.
VAL_CAPTION_IMAGES = 500


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message says where and why."""


def epoch_caption_indices(split, one_per_image: bool, epoch: int, seed: int) -> np.ndarray:
    """Shuffled caption indices for one epoch: all captions, or one random caption per image.

    With ``data.labelled_fraction < 1`` only the labelled images' captions are drawn, repeated
    (each pass reshuffled, with a fresh caption choice) to the epoch's full length, so that every
    fraction trains for the same number of steps.
    """
    rng = np.random.default_rng([seed, epoch])
    k = len(split.captions[0])
    if "labelled" not in split.extra:
        idx = np.arange(split.num_images) * k + rng.integers(0, k, split.num_images) if one_per_image \
            else np.arange(split.num_captions)
        return rng.permutation(idx)
    images = labelled_ids(split)
    length = split.num_images if one_per_image else split.num_captions
    passes = []
    while sum(map(len, passes)) < length:
        picks = images * k + rng.integers(0, k, len(images)) if one_per_image \
            else (images[:, None] * k + np.arange(k)).ravel()
        passes.append(rng.permutation(picks))
    return np.concatenate(passes)[:length]


def make_loader(cfg: Config, split, vocab: Vocabulary, epoch: int, dist: distributed.Dist) -> DataLoader:
    """This process's shard of the epoch, equal-sized across processes (gathers need equal batches)."""
    idx = epoch_caption_indices(split, cfg.train.one_caption_per_image, epoch, cfg.train.seed)
    per_rank = len(idx) // dist.world_size
    idx = idx[dist.rank * per_rank : (dist.rank + 1) * per_rank]
    dataset = PairDataset(split, vocab, image_transform(cfg.data, train=True), cfg.data.max_caption_len, idx)
    return DataLoader(dataset, batch_size=cfg.data.batch_size, shuffle=False, drop_last=True,
                      num_workers=cfg.data.num_workers, collate_fn=collate_pairs,
                      persistent_workers=False, pin_memory=torch.cuda.is_available())


def endless_batches(cfg: Config, split, vocab: Vocabulary, first_epoch: int):
    """Training batches without end for the phases after the epochs (one process), each pass over the
    split a fresh shuffle; passes are numbered from ``first_epoch``, so their orders differ from the
    joint epochs'."""
    one = distributed.Dist(rank=0, world_size=1, local_rank=0)
    epoch = first_epoch
    while True:
        yield from make_loader(cfg, split, vocab, epoch, one)
        epoch += 1


def ranking_loss(cfg: Config) -> RankingLoss:
    """The ranking loss the ``loss`` and ``model.measure`` keys describe."""
    loss = cfg.loss
    return RankingLoss(cfg.model.measure, loss.margin, loss.max_violation, loss.warmup_epochs, loss.hard_ramp_epochs,
                       loss.mean_negatives, loss.hard_weight_max)


def fit_batch_to_data(cfg: Config, train_split, dist: distributed.Dist) -> Config:
    """A batch no larger than an epoch's pairs per process: a smaller training set shrinks the
    batch, with a note (the last partial batch is dropped, so a too-large batch would train nothing)."""
    pairs = train_split.num_images if cfg.train.one_caption_per_image else train_split.num_captions
    per_rank = pairs // dist.world_size
    if per_rank >= cfg.data.batch_size:
        return cfg
    if per_rank < 2:
        raise DataError(f"the training split has {pairs} pairs per epoch, {per_rank} per process: a batch needs at "
                        "least 2 (the ranking loss needs a negative)")
    if dist.main:
        print(f"note: the training split has {per_rank} pairs per epoch per process, fewer than data.batch_size="
              f"{cfg.data.batch_size}; training with batches of {per_rank}")
    return replace(cfg, data=replace(cfg.data, batch_size=per_rank))


def build_vocabulary(cfg: Config, folder: RunFolder, train_split, dist: distributed.Dist) -> Vocabulary:
    """From the (labelled) training captions only; a resumed run must find the same vocabulary."""
    vocab = build_vocab(labelled_captions(train_split), cfg.data.vocab_threshold)
    if os.path.exists(folder.vocab):
        saved = Vocabulary.load(folder.vocab)
        if saved != vocab:
            raise CheckpointError(f"{folder.vocab} does not match the vocabulary of this data ({len(saved)} vs "
                                  f"{len(vocab)} words): the data changed since the run started")
    elif dist.main:
        vocab.save(folder.vocab)
    return vocab


def build_optimizers(cfg: Config, model: LIM) -> tuple[dict, torch.optim.lr_scheduler.LRScheduler]:
    """One Adam per path (docs/DESIGN.md section 2): ``match`` (encoders), ``look`` (the decoder) and
    ``imagine`` (conditioning augmentation + generator; the discriminator's is in its :class:`Critic`)."""
    def trainable(module: torch.nn.Module) -> list:
        return [p for p in module.parameters() if p.requires_grad]

    optimizers = {"match": torch.optim.Adam(trainable(model.matcher), lr=cfg.train.lr)}
    if model.decoder is not None:
        optimizers["look"] = torch.optim.Adam(trainable(model.decoder), lr=cfg.look.lr)
    if model.imagine is not None:
        optimizers["imagine"] = torch.optim.Adam(trainable(model.imagine), lr=cfg.imagine.lr,
                                                 betas=(cfg.imagine.beta1, cfg.imagine.beta2))
    return optimizers, lr_scheduler(cfg, optimizers["match"])


def lr_factor(cfg: Config, epoch: int) -> float:
    """The matcher's learning rate in 0-based ``epoch`` as a multiple of ``train.lr``."""
    t = cfg.train
    if t.lr_schedule == "cosine":
        return t.lr_decay + (1 - t.lr_decay) * 0.5 * (1 + math.cos(math.pi * epoch / max(t.epochs - 1, 1)))
    return t.lr_decay ** (epoch // t.lr_decay_epochs) if t.lr_decay_epochs else 1.0


def lr_scheduler(cfg: Config, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch. ``step`` keeps the StepLR of older run folders (its state loads into
    theirs); ``cosine`` is a LambdaLR over :func:`lr_factor`."""
    if cfg.train.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: lr_factor(cfg, epoch))
    step_size = cfg.train.lr_decay_epochs or 10**9
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=cfg.train.lr_decay)


def start_weighting(cfg: Config, pairs: PairState, epoch: int, writer, step: int) -> None:
    """Robust training: from ``robust.warmup_epochs`` on, refit the clean/noisy mixture to the
    recorded pair losses at the start of each epoch and weight this epoch's pairs by it."""
    if pairs.record is None:
        return
    pairs.weighting = epoch >= cfg.robust.warmup_epochs and pairs.record.refit()
    if pairs.weighting and writer is not None:
        seen = pairs.record.losses[np.isfinite(pairs.record.losses)]
        clean = pairs.record.clean_probability(seen)
        writer.add_scalar("robust/clean_fraction", float((clean > 0.5).mean()), step)
        writer.add_scalar("robust/noisy_component_weight", pairs.record.mixture.weights[1], step)
        writer.add_histogram("robust/clean_probability", clean, step)


def train_epoch(cfg: Config, ddp, optimizers: dict, loss_fn: RankingLoss, loader: DataLoader, device,
                epoch: int, state: dict, writer, folder: RunFolder, reward: Optional[CaptionReward],
                critic: Optional[Critic], pair_state: Optional[PairState] = None) -> dict:
    """One pass over the loader; returns ``{"loss", "pairs", "phase"}`` for the epoch summary."""
    phase = look_phase(cfg, epoch)
    if "look" in optimizers:
        for group in optimizers["look"].param_groups:
            group["lr"] = cfg.look.scst_lr if phase == "scst" else cfg.look.lr
    # Each path's gradient is clipped on its own, so a spike in one path cannot shrink another's update.
    groups = [[p for g in opt.param_groups for p in g["params"]] for opt in optimizers.values()]
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs} ({phase})", disable=writer is None, leave=False)
    pairs, last = 0, float("nan")
    with_gan = schedule_paths(cfg, phase, critic is not None)
    without_gan = schedule_paths(cfg, phase, False)
    latest: dict = {}  # each term as of the last step that computed it: the GAN's skip steps under imagine.every
    for i, batch in enumerate(bar):
        hard_weight = loss_fn.hard_weight_at(epoch + i / len(loader))  # ramps per step, not per epoch
        terms, loss_total = {}, 0.0
        updates = with_gan if state["step"] % cfg.imagine.every == 0 else without_gan
        for paths in updates:  # one update (joint), or one per path in the paper's order (sequential)
            loss, update_terms = joint_step(ddp, batch, device, cfg, loss_fn, hard_weight, phase, reward, critic, paths,
                                            pair_state)
            terms.update(update_terms)
            latest.update(update_terms)
            if not (torch.isfinite(loss) and all(np.isfinite(v) for v in update_terms.values())):
                raise TrainingError(f"non-finite loss at epoch {epoch + 1}, step {state['step']}: {terms}; "
                                    f"the last good checkpoint is {folder.checkpoint('last')}")
            for opt in optimizers.values():
                opt.zero_grad(set_to_none=True)  # params a path does not reach keep grad None: Adam skips them
            loss.backward()
            if cfg.train.grad_clip > 0:
                for params in groups:
                    torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
            for opt in optimizers.values():
                opt.step()
            (ddp.module if hasattr(ddp, "module") else ddp).update_ema(state["step"])
            loss_total += loss.item()
        state["step"] += 1
        pairs += len(batch[0]) * distributed.torch_world_size()
        last = loss_total
        bar.set_postfix(loss=f"{last:.3f}")
        if writer and state["step"] % cfg.train.log_every == 0:
            writer.add_scalar("train/loss", last, state["step"])
            for name, value in latest.items():
                writer.add_scalar(f"train/{name}", value, state["step"])
            writer.add_scalar("train/lr", optimizers["match"].param_groups[0]["lr"], state["step"])
            writer.add_scalar("train/hard_weight", hard_weight, state["step"])
        if cfg.train.max_steps and state["step"] >= cfg.train.max_steps:
            break
    return {"loss": last, "pairs": pairs, "phase": phase}


def caption_epoch(cfg: Config, epoch: int, step: int) -> bool:
    """Whether validation after 0-based ``epoch`` (ending at ``step``) decodes val captions: every
    ``look.val_caption_every`` epochs and after the last (by ``train.epochs`` or ``train.max_steps``)."""
    every = cfg.look.val_caption_every
    last = epoch + 1 >= cfg.train.epochs or bool(cfg.train.max_steps and step >= cfg.train.max_steps)
    return last or (every > 0 and (epoch + 1) % every == 0)


def val_rsum(cfg: Config, model: LIM, val_split, vocab: Vocabulary, device) -> float:
    """The matcher's rsum on ``val_split`` under its primary protocol (what picks the best checkpoint)."""
    val = evaluate_retrieval(model.matcher, val_split, vocab, cfg.data, device, "auto", cfg.train.eval_batch_size)
    return val["protocols"][val["primary"]]["rsum"]


def validate(cfg: Config, model: LIM, val_split, vocab: Vocabulary, device, writer, step: int,
             captions: bool = True) -> tuple[float, str]:
    """Val rsum (model selection); with a decoder (and ``captions``), val CIDEr-D and sample captions
    to TensorBoard; with a generator, a grid imagined from val captions with fixed noise, and the
    collapse check."""
    rsum = val_rsum(cfg, model, val_split, vocab, device)
    writer.add_scalar("val/rsum", rsum, step)
    summary = f"val rsum {rsum:.1f}"
    if model.decoder is not None and captions:
        captions = generate_captions(model, val_split, vocab, cfg.data, device, cfg.look.beam_size,
                                     cfg.train.eval_batch_size, limit=VAL_CAPTION_IMAGES,
                                     **decode_options(cfg.look))
        cider = split_cider_d(captions, val_split, cfg.look.max_len)
        writer.add_scalar("val/cider_d", cider, step)
        writer.add_text("val/captions", "\n\n".join(
            f"{i}: **{captions[i]}** (ref: {val_split.captions[i][0]})" for i in range(min(8, len(captions)))), step)
        summary += f", val CIDEr-D {cider:.3f} (first {len(captions)} images)"
    if model.imagine is not None:
        grid, ratio, _ = split_grid(model, val_split, vocab, cfg, device, GRID_CAPTIONS, GRID_SAMPLES, cfg.train.seed)
        writer.add_image("val/imagined", np.asarray(grid), step, dataformats="HWC")
        writer.add_scalar("val/imagined_diversity_ratio", ratio, step)
        summary += f", imagined diversity {ratio:.2f} of real"
        if ratio < cfg.imagine.collapse_ratio:
            summary += (f" (WARNING: below imagine.collapse_ratio={cfg.imagine.collapse_ratio}: the generator may have "
                        "collapsed to one image; see val/imagined in TensorBoard)")
    return rsum, summary
