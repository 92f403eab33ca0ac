"""Resuming a run: what a checkpoint holds, the order checkpoints are written in, and getting a
killed run back to a state it can finish from (a stale ``best.pt``, temp files of a killed write,
a run stopped in its first epoch)."""
from __future__ import annotations

import os
from typing import Optional

from config import Config, from_dict, load_config, to_dict
from data.atomic import remove_temp_files
from data.vocab import Vocabulary
from runfolder.checkpoint import (CheckpointError, config_differences, load_checkpoint, rng_state, save_atomic,
                                  set_rng_state)
from runfolder.folder import RunFolder, fresh_folder

from . import distributed
from .imagine import Critic
from .steps import PairState

# Keys that may change when a run is resumed; any other difference means another experiment.
RESUMABLE_KEYS = ("train.resume", "train.epochs", "train.max_steps", "train.device", "train.log_every",
                  "train.eval_batch_size", "data.num_workers", "data.cache_mb",
                  "look.fused_top_k", "look.fused_caption_prior", "look.val_caption_every",  # reporting only
                  "imagine.solo_steps",  # the GAN-alone phase after the epochs: more of it on a finished run
                  "loss.polish_steps", "loss.polish_imagined_weight")  # the matcher's polish after it


def save_checkpoint(path: str, model, optimizers: dict, scheduler, cfg: Config, vocab: Vocabulary, state: dict,
                    feature_dim: Optional[int], critic: Optional[Critic], pairs: Optional[PairState] = None) -> None:
    raw = model.module if hasattr(model, "module") else model
    record = pairs.record if pairs is not None else None
    save_atomic({
        "model": raw.state_dict(),
        "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
        "critic": None if critic is None else critic.state_dict(),
        "scheduler": scheduler.state_dict(),
        "pair_losses": None if record is None else record.state_dict(),
        # the contrast captions' swap choices: without it a resumed run would draw other swaps
        "pair_rng": None if pairs is None else pairs.rng.bit_generator.state,
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
        critic.load_state_dict(ckpt["critic"])
    if pairs is not None and pairs.record is not None and ckpt.get("pair_losses") is not None:
        pairs.record.load_state_dict(ckpt["pair_losses"])
    if pairs is not None and ckpt.get("pair_rng") is not None:  # checkpoints from before it was kept have none
        pairs.rng.bit_generator.state = ckpt["pair_rng"]
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
