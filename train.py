"""Train LIM: the matcher and, when switched on, the caption decoder (look).

    python train.py [--config FILE] [key=value ...]
    torchrun --nproc_per_node N train.py [--config FILE] [key=value ...]

Builds the data and vocabulary; each epoch trains the ranking loss plus the decoder's loss
(cross-entropy, then SCST for the last ``look.scst_epochs`` epochs) and the text-to-image GAN (a
discriminator update, then the generator's loss through the text encoder); picks the best epoch on
val rsum; trains the GAN alone on that epoch's frozen matcher for ``imagine.solo_steps`` steps
(training/gan_phase.py); then evaluates it on the test split and writes report.json / report.md, and a grid of
images imagined from test captions, in the run folder.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time
from typing import Optional, Sequence

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter

from config import Config, ConfigError, check_environment, load_config
from config import validate as validate_config
from data import DataError, load_split
from data.atomic import write_json_atomic
from data.check import caption_findings, preflight
from data.contrast import TokenSwapper
from data.datasets import cache_resized
from data.labelled import labelled_ids
from evaluation.report import final_report
from models import ModelError
from models.lim import LIM
from runfolder.checkpoint import CheckpointError
from training import distributed
from training.gan_phase import run_gan_phase
from training.image_init import init_image_encoder
from training.imagine import Critic
from training.look import CaptionReward
from training.loop import (TrainingError, build_optimizers, build_vocabulary, caption_epoch, fit_batch_to_data,
                           make_loader, ranking_loss, start_weighting, train_epoch, validate)
from training.polish import run_polish
from training.resume import prepare_folder, resume_state, save_checkpoint
from training.robust import PairLossRecord
from training.schedule_watch import collapse_warning, schedule_changes
from training.stage2 import Stage2Error, run_stage2
from training.steps import NegativeQueue, PairState, look_phase


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML preset (default: the built-in Shapes set)")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.epochs=5")
    return parser.parse_args(argv)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run(cfg: Config) -> dict:
    validate_config(cfg)  # every value, before anything is written (load_config did too; a Config built in code)
    check_environment(cfg)
    dist, device = distributed.setup(cfg.train.device)
    try:
        return _run(cfg, dist, device)
    finally:
        distributed.teardown()


def _run(cfg: Config, dist: distributed.Dist, device: torch.device) -> dict:
    seed_everything(cfg.train.seed + dist.rank)
    # The data first, every image decoded: a bad file stops the run before its folder is made.
    train_split, val_split = load_split(cfg.data, "train"), load_split(cfg.data, "val")
    preflight(cfg.data, [train_split, val_split, load_split(cfg.data, "test")])
    cfg = fit_batch_to_data(cfg, train_split, dist)
    train_split = cache_resized(train_split, cfg.data, print if dist.main else lambda _: None)
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
    resuming = cfg.train.resume and os.path.exists(folder.checkpoint("last"))
    if cfg.model.image_init and not resuming:  # on resume, last.pt holds these weights
        init_image_encoder(model, cfg, folder.root, feature_dim, print if dist.main else lambda _: None)
    optimizers, scheduler = build_optimizers(cfg, model)
    critic = Critic(cfg.imagine, cfg.train.grad_clip, channels_last=cfg.model.channels_last).to(device) \
        if model.imagine is not None else None
    pairs = PairState(record=PairLossRecord(train_split.num_captions) if cfg.robust.enabled else None,
                      queue=NegativeQueue(cfg.loss.mined_negatives) if cfg.loss.mined_negatives > 0 else None,
                      rng=np.random.default_rng([cfg.train.seed, dist.rank, 17]))
    state = {"epoch": -1, "step": 0, "best_rsum": -1.0, "best_epoch": -1, "seconds": 0.0, "val_history": []}
    if resuming:
        state = resume_state(folder, cfg, model, optimizers, scheduler, critic, pairs)
    # A sequential update uses only part of the model (the G update never reaches the image encoder).
    ddp = DistributedDataParallel(model, find_unused_parameters=cfg.train.schedule == "sequential") \
        if dist.enabled else model
    loss_fn = ranking_loss(cfg)
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
        swaps_wanted = cfg.loss.contrast_weight > 0 or cfg.loss.imagined_weight > 0 or \
            (cfg.imagine.match_swaps and model.imagine is not None)
        contrast_on = swaps_wanted and epoch >= cfg.loss.contrast_start_epoch
        pairs.swapper = (pairs.swapper or TokenSwapper(vocab)) if contrast_on else None
        summary = train_epoch(cfg, ddp, optimizers, loss_fn, loader, device, epoch, state, writer, folder, reward,
                              critic, pairs)
        scheduler.step()
        seconds = time.time() - start
        state["seconds"] += seconds
        state["epoch"] = epoch
        if dist.main:
            rsum, text = validate(cfg, model, val_split, vocab, device, writer, state["step"],
                                  caption_epoch(cfg, epoch, state["step"]))
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

    if dist.main and cfg.imagine.solo_steps > 0 and cfg.imagine.lambda_t2i > 0 and state["best_epoch"] >= 0:
        run_gan_phase(cfg, folder, train_split, val_split, vocab, device, writer, state["step"])
    distributed.barrier()
    if dist.main and cfg.loss.polish_steps > 0 and state["best_epoch"] >= 0:
        run_polish(cfg, folder, train_split, val_split, vocab, device, writer, state["step"])
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
