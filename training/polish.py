"""The matcher's last steps, with negatives imagined by the finished generator (``loss.polish_steps > 0``).

Imagined negatives drawn during the joint epochs (``loss.imagined_weight``) come from a generator
that has had a few hundred updates: easy negatives, told from real images by how they look, not by
the swapped word. This phase runs after the GAN-alone phase (training/gan_phase.py), when the
generator is as good as the run makes it. From ``best.pt``, with the generator and the decoder frozen
(the generator's averaged copy draws when there is one), the matcher trains ``loss.polish_steps``
more steps: the ranking loss with its hardest negatives, the contrast captions
(``loss.contrast_weight``) and the imagined negatives weighted ``loss.polish_imagined_weight`` (0: the
same steps without them, the control), at the learning rate of the last epoch, its Adam moments
carried on from the checkpoint. The modality adversary, mined negatives and robust weighting sit
these steps out. The result is written back into ``best.pt`` (atomically), marked with the steps
done, with the val rsum before and after. The text encoder moves, so the generator reads
slightly other conditions afterwards (the report grades it after the phase).
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch
from tqdm import tqdm

from config import Config, to_dict
from data.contrast import TokenSwapper
from data.records import Split
from data.vocab import Vocabulary
from runfolder.checkpoint import load_checkpoint, save_atomic
from runfolder.folder import RunFolder, load_trained

from .loop import TrainingError, endless_batches, lr_factor, ranking_loss, val_rsum
from .steps import PairState, joint_step


def polish_config(cfg: Config) -> Config:
    """The config the phase's steps run under: imagined negatives at the polish weight on every row."""
    loss = replace(cfg.loss, imagined_weight=cfg.loss.polish_imagined_weight, imagined_pairs=cfg.data.batch_size,
                   contrast_start_epoch=0, mined_negatives=0)
    return replace(cfg, loss=loss, model=replace(cfg.model, invariant_weight=0.0))


def run_polish(cfg: Config, folder: RunFolder, train_split: Split, val_split: Split, vocab: Vocabulary,
               device: torch.device, writer=None, step: int = 0) -> dict:
    """Train the matcher of ``best.pt`` until it holds ``loss.polish_steps`` such steps, and write it
    back. Returns ``{"steps", "seconds", "imagined_weight", "val_rsum_before", "val_rsum_after"}``."""
    path = folder.checkpoint("best")
    ckpt = load_checkpoint(path)
    done = ckpt.get("polish") or {"steps": 0, "seconds": 0.0}
    todo = cfg.loss.polish_steps - done["steps"]
    if todo <= 0:
        print(f"polish: {path} already holds {done['steps']} steps of it (loss.polish_steps={cfg.loss.polish_steps})")
        return done
    model = load_trained(folder.root, "best")[2].to(device)
    pcfg = polish_config(cfg)
    torch.manual_seed(cfg.train.seed + 104729 + done["steps"])
    before = done.get("val_rsum_before")
    if before is None:
        before = val_rsum(cfg, model, val_split, vocab, device)
    for part in (model.decoder, model.imagine, model.imagine_ema):
        if part is not None:
            part.requires_grad_(False).eval()
    matcher = model.matcher
    params = [p for p in matcher.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.train.lr)
    if "match" in ckpt.get("optimizers", {}):
        optimizer.load_state_dict(ckpt["optimizers"]["match"])
    for group in optimizer.param_groups:
        group["lr"] = cfg.train.lr * lr_factor(cfg, cfg.train.epochs - 1)
    loss_fn = ranking_loss(cfg)
    hard_weight = loss_fn.hard_weight_at(cfg.train.epochs)
    pairs = PairState(swapper=TokenSwapper(vocab) if pcfg.loss.contrast_weight > 0 or pcfg.loss.imagined_weight > 0
                      else None, rng=np.random.default_rng([cfg.train.seed, 29, done["steps"]]))
    batches = endless_batches(cfg, train_split, vocab, 2 * cfg.train.epochs + 1000 + done["steps"])
    start = time.time()
    matcher.train()
    bar = tqdm(range(todo), desc="polish", disable=writer is None, leave=False)
    for i in bar:
        loss, terms = joint_step(model, next(batches), device, pcfg, loss_fn, hard_weight, "off", None, None,
                                 ("rank",), pairs)
        if not torch.isfinite(loss):
            raise TrainingError(f"polish: non-finite loss at step {done['steps'] + i + 1}: {terms}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
        optimizer.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", imagined=f"{terms.get('imagined_violations', float('nan')):.2f}")
        if writer is not None and (i + 1) % cfg.train.log_every == 0:
            for name, value in terms.items():
                writer.add_scalar(f"polish/{name}", value, step + done["steps"] + i + 1)
    seconds = time.time() - start
    model.eval()
    after = val_rsum(cfg, model, val_split, vocab, device)
    result = {"steps": cfg.loss.polish_steps, "seconds": round(done["seconds"] + seconds, 1),
              "imagined_weight": cfg.loss.polish_imagined_weight, "val_rsum_before": round(before, 2),
              "val_rsum_after": round(after, 2)}
    optimizers = {**ckpt["optimizers"], "match": optimizer.state_dict()}
    save_atomic({**ckpt, "model": model.state_dict(), "optimizers": optimizers, "config": to_dict(cfg),
                 "polish": result}, path)
    print(f"polish: {todo} matcher steps (imagined negatives weighted {cfg.loss.polish_imagined_weight:g}) in "
          f"{seconds:.0f} s, val rsum {before:.1f} -> {after:.1f}; written to {path}")
    return result
