"""The GAN alone after the joint epochs (``imagine.solo_steps > 0``).

In the joint epochs the GAN shares each step with the matcher and the decoder (every
``imagine.every`` steps); the matcher it learns to please keeps moving under it. This phase starts
from ``best.pt`` (the model the report, ``evaluate.py`` and ``demo.py`` read), freezes the matcher
(eval mode, no gradients: the text encoder's features are fixed, the image encoder still judges
``gan_match``) and trains the conditioning augmentation, the generator and the discriminator for
``imagine.solo_steps`` more steps on random training pairs, ``imagine.batch_pairs`` per step. The
result is written back into ``best.pt`` (atomically), marked with the steps done, so a resumed run
does not redo it; resuming a finished run with a larger ``imagine.solo_steps`` trains the
difference (``python train.py --config RUN/config.yaml train.out_dir=RUN train.resume=true
imagine.solo_steps=N``). Under torchrun it runs on the main process only. Here the discriminator
sees its images through ``imagine.solo_diff_augment`` (DiffAugment) instead of
``imagine.diff_augment``, and the generator's moving average (``imagine.ema``) restarts from the
live weights.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from config import Config, to_dict
from data.contrast import TokenSwapper
from data.datasets import gan_images
from data.records import Split
from data.vocab import Vocabulary
from evaluation.report import GRID_CAPTIONS, GRID_SAMPLES
from runfolder.checkpoint import load_checkpoint, save_atomic
from runfolder.folder import RunFolder, load_trained
from synthesis.sampling import split_grid

from .imagine import Critic, generator_terms
from .loop import TrainingError, endless_batches


class SoloGan:
    """The frozen matcher's model with its GAN, the discriminator and the generator's Adam, stepped
    on batches of training pairs (``step``)."""

    def __init__(self, cfg: Config, model, ckpt: dict, device: torch.device, vocab: Optional[Vocabulary] = None,
                 first_step: int = 0):
        self.cfg, self.model, self.device = cfg, model.to(device), device
        model.matcher.requires_grad_(False).eval()
        phase = replace(cfg.imagine, diff_augment=cfg.imagine.solo_diff_augment)  # D's augmentation here
        self.critic = Critic(phase, cfg.train.grad_clip, local=True, channels_last=cfg.model.channels_last).to(device)
        if ckpt.get("critic") is not None:
            self.critic.load_state_dict(ckpt["critic"])
        imagine = model.imagine
        self.optimizer = torch.optim.Adam(imagine.parameters(), lr=cfg.imagine.lr,
                                          betas=(cfg.imagine.beta1, cfg.imagine.beta2))
        saved = ckpt.get("optimizers", {}).get("imagine")
        if saved is not None:  # the joint epochs' moments: no restart from a cold Adam
            self.optimizer.load_state_dict(saved)
        self.steps = 0
        self.first_step = first_step  # steps of the phase done before (a continued phase)
        if first_step == 0 and model.imagine_ema is not None:
            # The average restarts from the live generator: the joint epochs' generators served a
            # matcher that kept moving (with the plain decay of 0.999 they would still weigh 45% after
            # 800 steps of this phase; README "The generator").
            model.imagine_ema.load_state_dict(model.imagine.state_dict())
        self.swapper = TokenSwapper(vocab) if cfg.imagine.match_swaps and vocab is not None else None
        self.rng = np.random.default_rng([cfg.train.seed, 31])

    def step(self, batch) -> dict[str, float]:
        """One D update and one G update on ``batch`` (a training loader's ``images, captions,
        lengths, image_ids, caption_ids``); returns the terms as floats."""
        cfg, model = self.cfg, self.model
        images, captions, lengths, image_ids, _ = batch
        images, image_ids = images.to(self.device), image_ids.to(self.device)
        model.imagine.train()
        swapped = None
        with torch.no_grad():
            cap = model.matcher.encode_captions(captions.to(self.device), lengths)
            if self.swapper is not None:
                new, new_lengths, ok = self.swapper(captions, lengths, self.rng)
                swapped = (model.matcher.encode_captions(new.to(self.device), new_lengths), ok)
        z = torch.randn(len(images), model.imagine.z_dim, device=self.device)
        out = model.imagine(cap["grounded"], z, interpolate=cfg.imagine.interpolate)
        out["cap"] = cap
        terms = self.critic.step(gan_images(images, cfg.imagine.image_size), out, image_ids)
        g = generator_terms(self.critic, out, cfg.imagine, model.matcher, image_ids, cfg.data.image_size,
                            swapped=swapped)
        loss = cfg.imagine.lambda_t2i * sum(g.values())
        terms.update({k: float(v.detach()) for k, v in g.items()})
        if not torch.isfinite(loss):
            raise TrainingError(f"GAN alone: non-finite loss at step {self.steps + 1}: {terms}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.imagine.parameters(), cfg.train.grad_clip)
        self.optimizer.step()
        model.update_ema(self.first_step + self.steps)  # warmed up again from the phase's start
        self.steps += 1
        return terms

    def batches(self, split: Split, vocab: Vocabulary, first_epoch: int):
        """Endless training batches of ``imagine.batch_pairs`` pairs, each pass a fresh shuffle
        (epochs numbered from ``first_epoch``, so they differ from the joint epochs' orders)."""
        cfg = self.cfg
        pairs = min(cfg.imagine.batch_pairs or cfg.data.batch_size, cfg.data.batch_size)
        return endless_batches(replace(cfg, data=replace(cfg.data, batch_size=pairs)), split, vocab, first_epoch)


def run_gan_phase(cfg: Config, folder: RunFolder, train_split: Split, val_split: Split, vocab: Vocabulary,
                  device: torch.device, writer=None, step: int = 0) -> dict:
    """Train the GAN alone from ``best.pt`` until it holds ``imagine.solo_steps`` such steps, and write
    it back. Returns ``{"steps", "seconds", "from_epoch"}`` (totals); a ``best.pt`` that already holds
    as many is left as it is."""
    path = folder.checkpoint("best")
    ckpt = load_checkpoint(path)
    done = ckpt.get("gan_solo") or {"steps": 0, "seconds": 0.0}
    todo = cfg.imagine.solo_steps - done["steps"]
    if todo <= 0:
        print(f"GAN alone: {path} already holds {done['steps']} steps of it (imagine.solo_steps="
              f"{cfg.imagine.solo_steps}): nothing to do")
        return done
    model = load_trained(folder.root, "best")[2]
    torch.manual_seed(cfg.train.seed + 7919 + done["steps"])
    solo = SoloGan(cfg, model, ckpt, device, vocab, first_step=done["steps"])
    start = time.time()
    batches = solo.batches(train_split, vocab, cfg.train.epochs + done["steps"])  # a continued phase: other orders
    bar = tqdm(range(todo), desc="GAN alone", disable=writer is None, leave=False)
    for i in bar:
        terms = solo.step(next(batches))
        bar.set_postfix(d=f"{terms['d_loss']:.3f}", match=f"{terms.get('gan_match', float('nan')):.3f}")
        if writer is not None and (i + 1) % cfg.train.log_every == 0:
            for name, value in terms.items():
                writer.add_scalar(f"gan_solo/{name}", value, step + done["steps"] + i + 1)
    seconds = time.time() - start
    result = {"steps": cfg.imagine.solo_steps, "seconds": round(done["seconds"] + seconds, 1),
              "from_epoch": ckpt["best_epoch"] + 1}
    model.eval()
    grid, ratio, _ = split_grid(model, val_split, vocab, cfg, device, GRID_CAPTIONS, GRID_SAMPLES, cfg.train.seed)
    if writer is not None:
        at = step + result["steps"]
        writer.add_image("gan_solo/imagined", np.asarray(grid), at, dataformats="HWC")
        writer.add_scalar("gan_solo/imagined_diversity_ratio", ratio, at)
    optimizers = {**ckpt["optimizers"], "imagine": solo.optimizer.state_dict()}
    save_atomic({**ckpt, "model": model.state_dict(), "optimizers": optimizers, "critic": solo.critic.state_dict(),
                 "config": to_dict(cfg), "gan_solo": result}, path)
    warn = ratio < cfg.imagine.collapse_ratio
    print(f"GAN alone: {todo} steps from epoch {result['from_epoch']}'s model in {seconds:.0f} s, imagined "
          f"diversity {ratio:.2f} of real" + (f" (WARNING: below imagine.collapse_ratio={cfg.imagine.collapse_ratio})"
                                              if warn else "") + f"; written to {path}")
    return result
