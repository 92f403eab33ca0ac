"""Train LIM: the matcher and, when switched on, the caption decoder (look).

    python train.py [--config FILE] [key=value ...]
    torchrun --nproc_per_node N train.py [--config FILE] [key=value ...]

Builds the data and vocabulary; each epoch trains the ranking loss plus the decoder's loss
(cross-entropy, then SCST for the last ``look.scst_epochs`` epochs) and the text-to-image GAN (a
discriminator update, then the generator's loss through the text encoder); picks the best epoch on
val rsum; then evaluates it on the test split and writes report.json / report.md, and a grid of
images imagined from test captions, in the run folder.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time
from dataclasses import replace
from typing import Optional, Sequence

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from config import Config, ConfigError, check_environment, from_dict, load_config, to_dict
from config import validate as validate_config
from data import DataError, build_vocab, load_split
from data.atomic import remove_temp_files, write_json_atomic
from data.check import caption_findings, preflight
from data.contrast import TokenSwapper
from data.datasets import PairDataset, collate_pairs, image_transform
from data.labelled import labelled_captions, labelled_ids
from data.vocab import Vocabulary
from evaluation.captioning import generate_captions
from evaluation.report import GRID_CAPTIONS, GRID_SAMPLES, final_report
from evaluation.retrieval import evaluate_retrieval
from evaluation.synthesis import split_grid
from losses.ranking import RankingLoss
from models import ModelError
from models.lim import LIM
from runfolder.checkpoint import (CheckpointError, config_differences, load_checkpoint, rng_state, save_atomic,
                                  set_rng_state)
from runfolder.folder import RunFolder, fresh_folder
from training import distributed
from training.imagine import Critic
from training.look import CaptionReward, split_cider_d
from training.robust import PairLossRecord
from training.schedule_watch import collapse_warning, schedule_changes
from training.stage2 import Stage2Error, run_stage2
from training.steps import NegativeQueue, PairState, joint_step, look_phase, schedule_paths

# Keys that may change when a run is resumed; any other difference means another experiment.
RESUMABLE_KEYS = ("train.resume", "train.epochs", "train.max_steps", "train.device", "train.log_every",
                  "train.eval_batch_size", "data.num_workers")


# Val CIDEr-D each epoch is a progress signal, not the selection metric: a subset keeps it cheap.
VAL_CAPTION_IMAGES = 500


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message says where and why."""


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML preset (default: the built-in Shapes set)")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.epochs=5")
    return parser.parse_args(argv)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


def save_checkpoint(path: str, model, optimizers: dict, scheduler, cfg: Config, vocab: Vocabulary, state: dict,
                    feature_dim: Optional[int], critic: Optional[Critic], pairs: Optional[PairState] = None) -> None:
    raw = model.module if hasattr(model, "module") else model
    record = pairs.record if pairs is not None else None
    save_atomic({
        "model": raw.state_dict(),
        "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
        "critic": None if critic is None else {"model": critic.module.state_dict(),
                                               "optimizer": critic.optimizer.state_dict(), "skipped": critic.skipped},
        "scheduler": scheduler.state_dict(),
        "pair_losses": None if record is None else record.state_dict(),
        "config": to_dict(cfg),
        "vocab": vocab.words,
        "image_feature_dim": feature_dim,
        "rng": rng_state(),
        **state,
    }, path)


def resume_state(folder: RunFolder, cfg: Config, model, optimizers: dict, scheduler, critic: Optional[Critic],
                 pairs: Optional[PairState] = None) -> dict:
    """Load ``last`` into the model and optimizers; refuse a checkpoint from another config.

    A moved run folder resumes (``train.out_dir`` may differ), and so does a run whose stage-2
    settings (``semi.*``) changed: stage 2 always restarts from the end of stage 1 (``last.pt``),
    so resuming a finished run (or a copy of it) with other ``semi.*`` values reruns stage 2 alone."""
    ckpt = load_checkpoint(folder.checkpoint("last"))
    refuse_other_config(ckpt["config"], cfg, folder.checkpoint("last"))
    model.load_state_dict(ckpt["model"], strict=True)
    for name, opt in optimizers.items():
        opt.load_state_dict(ckpt["optimizers"][name])
    scheduler.load_state_dict(ckpt["scheduler"])
    if critic is not None:
        critic.module.load_state_dict(ckpt["critic"]["model"], strict=True)
        critic.optimizer.load_state_dict(ckpt["critic"]["optimizer"])
        critic.skipped = ckpt["critic"]["skipped"]
    if pairs is not None and pairs.record is not None and ckpt.get("pair_losses") is not None:
        pairs.record.load_state_dict(ckpt["pair_losses"])
    set_rng_state(ckpt["rng"])
    state = {k: ckpt[k] for k in ("epoch", "step", "best_rsum", "best_epoch", "seconds")}
    print(f"resuming from {folder.checkpoint('last')}: epoch {state['epoch'] + 1} of {cfg.train.epochs} done, "
          f"step {state['step']}, best val rsum {state['best_rsum']:.1f} at epoch {state['best_epoch'] + 1}")
    recover_best(folder, ckpt, state)
    # Checkpoints from before the val history was kept know only the best epoch's rsum.
    state["val_history"] = list(ckpt.get("val_history") or
                                [state["best_rsum"] if e == state["best_epoch"] else float("nan")
                                 for e in range(state["epoch"] + 1)])
    return state


def refuse_other_config(saved: dict, cfg: Config, where: str) -> None:
    """A resumed run must be the same experiment: only :data:`RESUMABLE_KEYS`, ``train.out_dir``
    and ``semi.*`` may differ from the config it started with."""
    saved = to_dict(from_dict(saved))  # keys added to the config since the run started take their defaults
    diffs = [d for d in config_differences(saved, to_dict(cfg))
             if d.split(":")[0] not in RESUMABLE_KEYS + ("train.out_dir",) and not d.startswith("semi.")]
    if diffs:
        raise CheckpointError(f"{where} was trained with another config; resuming would mix two experiments:\n  "
                              + "\n  ".join(diffs))


def recover_best(folder: RunFolder, last: dict, state: dict) -> None:
    """Make ``best.pt`` agree with the best epoch ``last.pt`` records.

    ``last.pt`` is written after ``best.pt``, so a kill between the two leaves a ``best.pt`` one
    epoch ahead, which the resumed epoch rewrites. Runs from before that order could be killed the
    other way round: then the best epoch is the last one and ``last.pt`` holds its weights."""
    if state["best_epoch"] < 0:
        return
    try:
        best_epoch = load_checkpoint(folder.checkpoint("best"))["best_epoch"]
    except CheckpointError:
        best_epoch = None
    if best_epoch == state["best_epoch"]:
        return
    if state["best_epoch"] == state["epoch"]:
        save_atomic(last, folder.checkpoint("best"))
        print(f"{folder.checkpoint('best')} was missing or stale (an interrupted write): rewritten from "
              f"{folder.checkpoint('last')}, which holds the best epoch ({state['best_epoch'] + 1})")
        return
    print(f"WARNING: {folder.checkpoint('best')} does not hold the best epoch {state['best_epoch'] + 1} that "
          f"{folder.checkpoint('last')} records, and no other file does; the best model is chosen anew from the "
          "epochs still to come")
    state["best_rsum"], state["best_epoch"] = -1.0, -1


def prepare_folder(cfg: Config, dist: distributed.Dist) -> RunFolder:
    """The run folder: the same one when resuming, else a fresh one (never overwrite a run)."""
    if cfg.train.resume:
        folder = RunFolder(cfg.train.out_dir)
        if not os.path.exists(folder.checkpoint("last")):
            if not os.path.exists(folder.config):
                raise CheckpointError(f"train.resume=true but {folder.checkpoint('last')} does not exist")
            refuse_other_config(to_dict(load_config(folder.config)), cfg, folder.config)
            if dist.main:
                print(f"no {folder.checkpoint('last')} yet (the run stopped in its first epoch): starting it again "
                      "from the beginning in the same folder")
        if dist.main:
            for name in remove_temp_files(folder.root):
                print(f"removed {name}, left by an interrupted write")
        return folder
    root = distributed.broadcast_object(fresh_folder(cfg.train.out_dir) if dist.main else None)
    if dist.main:
        os.makedirs(root, exist_ok=True)
    return RunFolder(root)


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


def run(cfg: Config) -> dict:
    validate_config(cfg)  # every value, before anything is written (load_config did too; a Config built in code)
    check_environment(cfg)
    dist, device = distributed.setup(cfg.train.device)
    try:
        return _run(cfg, dist, device)
    finally:
        distributed.teardown()


def build_optimizers(cfg: Config, model: LIM) -> tuple[dict, torch.optim.lr_scheduler.StepLR]:
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
    step_size = cfg.train.lr_decay_epochs or 10**9
    scheduler = torch.optim.lr_scheduler.StepLR(optimizers["match"], step_size=step_size, gamma=cfg.train.lr_decay)
    return optimizers, scheduler


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
    updates = schedule_paths(cfg, phase, critic is not None)
    for i, batch in enumerate(bar):
        hard_weight = loss_fn.hard_weight_at(epoch + i / len(loader))  # ramps per step, not per epoch
        terms, loss_total = {}, 0.0
        for paths in updates:  # one update (joint), or one per path in the paper's order (sequential)
            loss, update_terms = joint_step(ddp, batch, device, cfg, loss_fn, hard_weight, phase, reward, critic, paths,
                                            pair_state)
            terms.update(update_terms)
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
            loss_total += loss.item()
        state["step"] += 1
        pairs += len(batch[0]) * distributed.torch_world_size()
        last = loss_total
        bar.set_postfix(loss=f"{last:.3f}")
        if writer and state["step"] % cfg.train.log_every == 0:
            writer.add_scalar("train/loss", last, state["step"])
            for name, value in terms.items():
                writer.add_scalar(f"train/{name}", value, state["step"])
            writer.add_scalar("train/lr", optimizers["match"].param_groups[0]["lr"], state["step"])
            writer.add_scalar("train/hard_weight", hard_weight, state["step"])
        if cfg.train.max_steps and state["step"] >= cfg.train.max_steps:
            break
    return {"loss": last, "pairs": pairs, "phase": phase}


def validate(cfg: Config, model: LIM, val_split, vocab: Vocabulary, device, writer, step: int) -> tuple[float, str]:
    """Val rsum (model selection); with a decoder, val CIDEr-D and sample captions to TensorBoard;
    with a generator, a grid imagined from val captions with fixed noise, and the collapse check."""
    val = evaluate_retrieval(model.matcher, val_split, vocab, cfg.data, device, "auto", cfg.train.eval_batch_size)
    rsum = val["protocols"][val["primary"]]["rsum"]
    writer.add_scalar("val/rsum", rsum, step)
    summary = f"val rsum {rsum:.1f}"
    if model.decoder is not None:
        captions = generate_captions(model, val_split, vocab, cfg.data, device, cfg.look.beam_size,
                                     cfg.train.eval_batch_size, limit=VAL_CAPTION_IMAGES,
                                     rerank=cfg.look.rerank_captions)
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


def _run(cfg: Config, dist: distributed.Dist, device: torch.device) -> dict:
    seed_everything(cfg.train.seed + dist.rank)
    # The data first, every image decoded: a bad file stops the run before its folder is made.
    train_split, val_split = load_split(cfg.data, "train"), load_split(cfg.data, "val")
    preflight(cfg.data, [train_split, val_split, load_split(cfg.data, "test")])
    cfg = fit_batch_to_data(cfg, train_split, dist)
    if dist.main:
        for warning in caption_findings(train_split, None, cfg.data.max_caption_len)[1]:
            print(f"note: {warning}")
    folder = prepare_folder(cfg, dist)
    vocab = build_vocabulary(cfg, folder, train_split, dist)
    feature_dim = train_split.images.feature_dim if train_split.images.kind == "features" else None
    if dist.main:
        folder.write_config(cfg)
        if "wrong_pairs" in train_split.extra:
            write_json_atomic(folder.path("wrong_pairs"), train_split.extra["wrong_pairs"])
        if "labelled" in train_split.extra:
            write_json_atomic(folder.path("labelled_images"), train_split.extra["labelled"])
        labelled = "" if "labelled" not in train_split.extra else \
            f" ({len(labelled_ids(train_split))} of them labelled: data.labelled_fraction={cfg.data.labelled_fraction})"
        print(f"run folder: {folder.root}\ntrain: {train_split.num_images} images{labelled}, {train_split.num_captions} "
              f"captions; val: {val_split.num_images} images; vocabulary: {len(vocab)} words; device: {device}")

    model = LIM(cfg.model, cfg.look, cfg.imagine, len(vocab), feature_dim).to(device)
    optimizers, scheduler = build_optimizers(cfg, model)
    critic = Critic(cfg.imagine, cfg.train.grad_clip).to(device) if model.imagine is not None else None
    pairs = PairState(record=PairLossRecord(train_split.num_captions) if cfg.robust.enabled else None,
                      queue=NegativeQueue(cfg.loss.mined_negatives) if cfg.loss.mined_negatives > 0 else None,
                      rng=np.random.default_rng([cfg.train.seed, dist.rank, 17]))
    state = {"epoch": -1, "step": 0, "best_rsum": -1.0, "best_epoch": -1, "seconds": 0.0, "val_history": []}
    if cfg.train.resume and os.path.exists(folder.checkpoint("last")):
        state = resume_state(folder, cfg, model, optimizers, scheduler, critic, pairs)
    # A sequential update uses only part of the model (the G update never reaches the image encoder).
    ddp = DistributedDataParallel(model, find_unused_parameters=cfg.train.schedule == "sequential") \
        if dist.enabled else model
    loss_fn = RankingLoss(cfg.model.measure, cfg.loss.margin, cfg.loss.max_violation, cfg.loss.warmup_epochs,
                          cfg.loss.hard_ramp_epochs, cfg.loss.mean_negatives)
    changes = schedule_changes(cfg)
    scst = cfg.look.lambda_i2t > 0 and cfg.look.scst_epochs > 0
    reward = CaptionReward(train_split, vocab, cfg.look.max_len, labelled_ids(train_split)) if scst else None
    writer = SummaryWriter(folder.tensorboard) if dist.main else None

    for epoch in range(state["epoch"] + 1, cfg.train.epochs):
        if cfg.train.max_steps and state["step"] >= cfg.train.max_steps:
            break
        start = time.time()
        ddp.train()
        loader = make_loader(cfg, train_split, vocab, epoch, dist)
        start_weighting(cfg, pairs, epoch, writer, state["step"])
        pairs.progress = epoch / max(cfg.train.epochs - 1, 1)
        contrast_on = (cfg.loss.contrast_weight > 0 or cfg.loss.imagined_weight > 0) \
            and epoch >= cfg.loss.contrast_start_epoch
        pairs.swapper = (pairs.swapper or TokenSwapper(vocab)) if contrast_on else None
        summary = train_epoch(cfg, ddp, optimizers, loss_fn, loader, device, epoch, state, writer, folder, reward,
                              critic, pairs)
        scheduler.step()
        seconds = time.time() - start
        state["seconds"] += seconds
        state["epoch"] = epoch
        if dist.main:
            rsum, text = validate(cfg, model, val_split, vocab, device, writer, state["step"])
            state["val_history"] = state["val_history"][:epoch] + [rsum]
            writer.add_scalar("train/pairs_per_second", summary["pairs"] / max(seconds, 1e-9), state["step"])
            # last.pt is the commit point, written last: a kill before it is in place redoes this
            # epoch on resume (identically), a kill after it loses nothing.
            targets = []
            if summary["phase"] == "xe" and look_phase(cfg, epoch + 1) == "scst":
                targets.append("xe")  # the decoder as cross-entropy left it
            if rsum > state["best_rsum"]:
                state["best_rsum"], state["best_epoch"] = rsum, epoch
                targets.append("best")
            targets.append("last")
            for which in targets:
                save_checkpoint(folder.checkpoint(which), ddp, optimizers, scheduler, cfg, vocab, state, feature_dim,
                                critic, pairs)
            print(f"epoch {epoch + 1} ({summary['phase']}): loss {summary['loss']:.3f}, {text} "
                  f"(best rsum {state['best_rsum']:.1f} at epoch {state['best_epoch'] + 1}), "
                  f"{summary['pairs'] / max(seconds, 1e-9):.0f} pairs/s")
            warning = collapse_warning(state["val_history"], changes)
            if warning:
                print(warning)
                writer.add_text("train/collapse_warning", warning, state["step"])
        distributed.barrier()

    if dist.main and cfg.semi.stage2_epochs > 0:
        run_stage2(cfg, folder, train_split, val_split, vocab, device, writer, state["step"])
    distributed.barrier()
    report = {}
    if dist.main:
        report = final_report(cfg, folder, device, state, writer)
        writer.close()
    distributed.barrier()
    return report


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Parse arguments, train, and return the test report (what report.json holds)."""
    args = parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    return run(cfg)


if __name__ == "__main__":
    try:
        main()
    except (ConfigError, DataError, ModelError, CheckpointError, TrainingError, Stage2Error) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
