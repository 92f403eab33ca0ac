"""Semi-supervised captioning, stage 2: SCST on unlabelled images rewarded by our own frozen matcher.

Stage 1 is ordinary training on the labelled images (``data.labelled_fraction``). Stage 2
(``semi.stage2_epochs > 0``) starts from the end of stage 1 (``last.pt``: the decoder after its
cross-entropy and SCST epochs), freezes the matcher and trains the decoder only:

- on unlabelled images, SCST whose reward is a frozen matcher's judgement of each sampled caption
  (``semi.reward``): ``retrieval`` (default), the log-probability that the caption retrieves its own
  image among the batch's images; ``similarity``, the raw pair score; ``margin``, the pair score minus
  the caption's mean score with the batch's other images; ``clip_s``, a CLIP-S-style
  reference-free score, 2.5 x max(cosine, 0). The judge is our own matcher, or another run's
  (``semi.reward_run``, see ``training/reward_run.py``);
- on a batch of labelled images, SCST with the matcher's reward plus ``semi.cider_weight`` x
  CIDEr-D against their references, and the decoder's cross-entropy on their captions
  (``semi.fluency_weight``), which keeps the language from drifting into word salad that merely
  pleases the matcher.

The advantage is each sample's reward minus the mean of the image's other samples. The frozen
judge's image embeddings are computed once. The result is ``stage2.pt``, rewritten after every
stage-2 epoch with the decoder of the epoch ``semi.pick`` chooses (the last, or the best val
CIDEr-D so far; ``best.pt``, chosen on val rsum, stays the retrieval model); an interrupted or
resumed stage 2 restarts from ``last.pt``. Under torchrun stage 2 runs on the main process only
(it trains the decoder alone, which is cheap).
"""
from __future__ import annotations

import time
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from config import REWARDS, Config, to_dict
from data.datasets import encode_texts
from data.labelled import labelled_ids, unlabelled_ids
from data.records import Split
from data.vocab import Vocabulary
from evaluation.captioning import CLIP_S_WEIGHT, decode_options, distinctiveness, generate_captions
from evaluation.retrieval import encode_split
from losses.caption_xe import caption_xe
from losses.scst import mean_of_others_baseline, self_critical
from runfolder.checkpoint import load_checkpoint, save_atomic
from runfolder.folder import RunFolder, load_trained

from .look import CaptionReward, split_cider_d
from .reward_run import RewardMatcher, load_reward_run, own_reward_matcher

VAL_IMAGES = 500  # stage 2's val CIDEr-D and distinctiveness are progress signals: a subset keeps them cheap


class Stage2Error(RuntimeError):
    """Stage 2 cannot go on (a non-finite loss); the message says where stage 1's model is."""


def sampled_caption_ids(tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sampled ``tokens (N, L)`` (no ``<start>``, ``<pad>`` after ``<end>``) -> ``<start>``-led ids
    ``(N, L + 1)`` and lengths ``(N,)`` as the text encoder reads them."""
    start = torch.full((tokens.shape[0], 1), Vocabulary.start_id, dtype=tokens.dtype, device=tokens.device)
    return torch.cat([start, tokens], 1), mask.sum(1).long().cpu() + 1


@torch.no_grad()
def matcher_reward(matcher, img: dict, tokens: torch.Tensor, mask: torch.Tensor, mode: str = "retrieval",
                   temperature: float = 0.01, id_map: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``(B, n)`` rewards of ``n`` sampled captions per image (rows ``b*n .. b*n+n-1`` belong to
    image ``b`` of ``img``, per-branch ``(B, D)`` embeddings in ``matcher``'s space).

    ``similarity``: the pair's score. ``retrieval``: ``log softmax_j(s(j, c) / temperature)`` at
    the caption's own image ``j = b``, over the ``B`` images: high only for a caption that fits its
    image better than the others (an order embedding gives a generic caption a high raw score).
    ``margin``: ``s(b, c)`` minus the mean of ``s(j, c)`` over the other images ``j`` of the batch.
    ``clip_s``: ``2.5 max(cos(b, c), 0)``, reference-free. ``id_map`` maps our token ids onto the
    matcher's vocabulary (another run's matcher).
    """
    if mode not in REWARDS:
        raise ValueError(f"reward {mode!r} is not one of {', '.join(REWARDS)}")
    b = next(iter(img.values())).shape[0]
    n = tokens.shape[0] // b
    ids, lengths = sampled_caption_ids(tokens, mask)
    if id_map is not None:
        ids = id_map.to(ids.device)[ids]
    cap = matcher.encode_captions(ids, lengths)
    owner = torch.arange(b, device=tokens.device).repeat_interleave(n)  # (B*n,)
    if mode == "similarity":
        return matcher.paired_similarity({k: v[owner] for k, v in img.items()}, cap).view(b, n)
    if mode == "clip_s":
        return CLIP_S_WEIGHT * matcher.paired_cosine({k: v[owner] for k, v in img.items()}, cap).clamp(min=0).view(b, n)
    scores = matcher.similarity(img, cap)  # (B, B*n)
    cols = torch.arange(b * n, device=tokens.device)
    if mode == "margin":
        own = scores[owner, cols]
        return (own - (scores.sum(0) - own) / max(b - 1, 1)).view(b, n)
    logp = torch.log_softmax(scores / temperature, dim=0)
    return logp[owner, cols].view(b, n)


class LabelledCaptions:
    """Random labelled images with one of their captions each, as padded id tensors."""

    def __init__(self, split: Split, vocab: Vocabulary, max_len: int, rng: np.random.Generator):
        self.split, self.vocab, self.max_len, self.rng = split, vocab, max_len, rng
        self.images = labelled_ids(split)

    def draw(self, n: int) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        ids = self.rng.choice(self.images, size=min(n, len(self.images)), replace=False)
        texts = [self.split.captions[i][self.rng.integers(len(self.split.captions[i]))] for i in ids]
        captions, lengths = encode_texts(texts, self.vocab, self.max_len)
        return ids, captions, lengths


def stage2_step(model, cfg: Config, feats: dict, pool_ids: np.ndarray, labelled: LabelledCaptions,
                cider: CaptionReward, device: torch.device, judge: Optional[RewardMatcher] = None,
                judge_feats: Optional[dict] = None) -> tuple[torch.Tensor, dict]:
    """The loss of one stage-2 step over ``pool_ids`` (unlabelled images) and a labelled batch.

    ``feats`` are our matcher's image embeddings (the decoder reads their grounded branch);
    ``judge`` and ``judge_feats`` score the samples (default: our own matcher and ``feats``)."""
    decoder, semi = model.decoder, cfg.semi
    judge = judge or own_reward_matcher(model, cfg)
    judge_feats = feats if judge_feats is None else judge_feats
    n, temp = cfg.look.scst_samples, cfg.look.temperature

    def reward(ids, tokens, mask):
        img = {k: v[ids].to(device) for k, v in judge_feats.items()}
        return matcher_reward(judge.matcher, img, tokens, mask, semi.reward, semi.temperature, judge.id_map)

    terms = {}
    img = {k: v[pool_ids].to(device) for k, v in feats.items()}
    tokens, logprobs, mask = decoder.sample(img["grounded"], n, temp)
    rewards = semi.similarity_weight * reward(pool_ids, tokens, mask)
    scst = self_critical(logprobs, mask, rewards, mean_of_others_baseline(rewards))
    terms["unlabelled_scst"], terms["_unlabelled_reward"] = scst.loss, scst.reward
    if semi.labelled_batch > 0 and (semi.cider_weight > 0 or semi.fluency_weight > 0):
        ids, captions, lengths = labelled.draw(semi.labelled_batch)
        lab = {k: v[ids].to(device) for k, v in feats.items()}
        if semi.cider_weight > 0:
            tokens, logprobs, mask = decoder.sample(lab["grounded"], n, temp)
            rewards = semi.cider_weight * cider(torch.as_tensor(ids), tokens).to(device)
            if semi.similarity_weight > 0 and len(ids) > 1:
                rewards = rewards + semi.similarity_weight * reward(ids, tokens, mask)
            scst = self_critical(logprobs, mask, rewards, mean_of_others_baseline(rewards))
            terms["labelled_scst"], terms["_labelled_reward"] = scst.loss, scst.reward
        if semi.fluency_weight > 0:
            captions = captions.to(device)
            terms["fluency_xe"] = semi.fluency_weight * caption_xe(decoder(lab["grounded"], captions, lengths),
                                                                   captions, lengths)
    loss = sum(v for k, v in terms.items() if not k.startswith("_"))
    return loss, {k.lstrip("_"): float(v.detach()) for k, v in terms.items()}


def stage2_judge(cfg: Config, folder: RunFolder, model, vocab: Vocabulary, feature_dim: Optional[int],
                 device: torch.device) -> RewardMatcher:
    """Our own frozen matcher, or ``semi.reward_run``'s."""
    if not cfg.semi.reward_run:
        return own_reward_matcher(model, cfg)
    judge = load_reward_run(cfg.semi.reward_run, folder.root, cfg, vocab, feature_dim)
    judge.matcher.to(device)
    return judge


def run_stage2(cfg: Config, folder: RunFolder, train_split: Split, val_split: Split, vocab: Vocabulary,
               device: torch.device, writer=None, step: int = 0) -> dict:
    """Stage 2 from the end of stage 1 (``last.pt``); writes ``stage2.pt`` after each epoch."""
    stage1 = folder.checkpoint("last")
    ckpt = load_checkpoint(stage1)
    model = load_trained(folder.root, "last")[2].to(device)
    for p in model.matcher.parameters():
        p.requires_grad_(False)
    model.matcher.eval()
    judge = stage2_judge(cfg, folder, model, vocab, ckpt.get("image_feature_dim"), device)
    batch = cfg.train.eval_batch_size
    feats = encode_split(model.matcher, train_split, vocab, cfg.data, device, batch, True, False)[0]
    judge_feats = feats if judge.id_map is None else judge.image_features(train_split, vocab, device, batch)
    pool = unlabelled_ids(train_split)
    pool = pool if len(pool) else np.arange(train_split.num_images)  # every image labelled: all of them
    rng = np.random.default_rng([cfg.train.seed, 2])
    labelled = LabelledCaptions(train_split, vocab, cfg.data.max_caption_len, rng)
    cider = CaptionReward(train_split, vocab, cfg.look.max_len, labelled.images)
    optimizer = torch.optim.Adam(model.decoder.parameters(), lr=cfg.semi.lr)
    start = time.time()
    before = validate_stage2(model, cfg, val_split, vocab, device)  # stage 1's decoder: what stage 2 starts from
    history, picked, kept = [{"epoch": 0, **before}], None, None
    print(f"stage 2 starts from val CIDEr-D {before['cider_d']:.3f}, distinct R@1 {before['r1']:.1f} (stage 1's "
          f"decoder, first {VAL_IMAGES} val images)")
    for epoch in range(cfg.semi.stage2_epochs):
        model.decoder.train()
        model.matcher.eval()  # frozen: no dropout in the reward's caption encoding
        judge.matcher.eval()
        order = rng.permutation(pool)
        batches = [order[i:i + cfg.semi.batch_size] for i in range(0, len(order), cfg.semi.batch_size)]
        batches = [b for b in batches if len(b) > 1]  # the retrieval reward needs two images
        bar = tqdm(batches, desc=f"stage 2 epoch {epoch + 1}/{cfg.semi.stage2_epochs}", disable=writer is None,
                   leave=False)
        for ids in bar:
            loss, terms = stage2_step(model, cfg, feats, ids, labelled, cider, device, judge, judge_feats)
            if not torch.isfinite(loss):
                raise Stage2Error(f"stage 2: non-finite loss at epoch {epoch + 1}: {terms}; stage 1's model is "
                                   f"{stage1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.train.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.decoder.parameters(), cfg.train.grad_clip)
            optimizer.step()
            step += 1
            bar.set_postfix(reward=f"{terms['unlabelled_reward']:.3f}")
            if writer is not None and step % cfg.train.log_every == 0:
                for name, value in terms.items():
                    writer.add_scalar(f"stage2/{name}", value, step)
        summary = validate_stage2(model, cfg, val_split, vocab, device)
        history.append({"epoch": epoch + 1, **summary})
        if writer is not None:
            for name, value in summary.items():
                writer.add_scalar(f"stage2/val_{name}", value, step)
        if picked is None or cfg.semi.pick == "last" or summary["cider_d"] > history[picked]["cider_d"]:
            picked, kept = epoch + 1, {k: v.detach().clone() for k, v in model.state_dict().items()}
        save_atomic({**ckpt, "model": kept, "config": to_dict(cfg),  # with this stage 2's settings
                     "stage2": {"epochs": epoch + 1, "picked": picked, "history": history}},
                    folder.checkpoint("stage2"))
        print(f"stage 2 epoch {epoch + 1}: val CIDEr-D {summary['cider_d']:.3f}, distinct R@1 {summary['r1']:.1f} "
              f"(first {VAL_IMAGES} val images); stage2.pt holds epoch {picked} (semi.pick={cfg.semi.pick})")
    return {"epochs": cfg.semi.stage2_epochs, "picked": picked, "seconds": round(time.time() - start, 1),
            "history": history}


def validate_stage2(model, cfg: Config, val_split: Split, vocab: Vocabulary, device: torch.device) -> dict:
    """Val CIDEr-D and distinctiveness of the beam-searched captions of the first val images."""
    captions = generate_captions(model, val_split, vocab, cfg.data, device, cfg.look.beam_size,
                                 cfg.train.eval_batch_size, progress=False, limit=VAL_IMAGES,
                                 **decode_options(cfg.look))
    return {"cider_d": split_cider_d(captions, val_split, cfg.look.max_len),
            "r1": distinctiveness(model.matcher, val_split, captions, vocab, cfg.data, device,
                                  cfg.train.eval_batch_size)["r1"]}
