"""Another run's frozen matcher as a judge of this run's captions (stage 2's reward, or a grade).

It reads the images with its own image encoder at its own input size, so its embedding size may
differ from ours; what must agree is the kind of input: pixels for both, or precomputed features
of one width. Captions reach it as text, through its own vocabulary.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

import torch

from config import Config, DataConfig
from data.records import Split
from data.vocab import Vocabulary
from runfolder.checkpoint import CheckpointError
from runfolder.folder import load_other_run

from .captioning import distinctiveness, reference_free_score
from .retrieval import encode_split


@dataclass
class Grader:
    """A frozen matcher, its vocabulary, the data settings it reads our images with, and its folder."""

    matcher: torch.nn.Module
    vocab: Vocabulary
    data_cfg: DataConfig
    source: str


def _input_kind(cfg: Config, feature_dim: Optional[int]) -> str:
    if cfg.model.image_encoder == "precomp":
        return f"precomputed features of width {feature_dim}"
    return "pixels"


def load_grader(run_dir: str, own_run: str, cfg: Config, feature_dim: Optional[int], key: str) -> Grader:
    """The frozen matcher of ``run_dir`` (named by config ``key`` in errors) for a run with ``cfg``
    in folder ``own_run`` (``feature_dim``: its precomputed feature width, or None).

    Raises:
        CheckpointError: the folder is missing or is this run, or it reads another kind of image input.
    """
    rcfg, vocab, model, ckpt = load_other_run(run_dir, own_run, key)
    theirs, ours = _input_kind(rcfg, ckpt.get("image_feature_dim")), _input_kind(cfg, feature_dim)
    if theirs != ours:
        raise CheckpointError(f"{key}={run_dir} reads {theirs} (embedding size {rcfg.model.embed_dim}), this run "
                              f"reads {ours}: its matcher cannot score these images")
    matcher = model.matcher.eval()
    for p in matcher.parameters():
        p.requires_grad_(False)
    # Our records, at its own input size and resize.
    data_cfg = replace(cfg.data, image_size=rcfg.data.image_size, resize=rcfg.data.resize)
    return Grader(matcher, vocab, data_cfg, run_dir)


def grader_images(grader: Grader, split: Split, device: torch.device, batch: int = 256) -> dict:
    """The split's image embeddings in the grader's space (for several :func:`grade` calls)."""
    grader.matcher.to(device)
    return encode_split(grader.matcher, split, grader.vocab, grader.data_cfg, device, batch, False, False)[0]


def grade(grader: Grader, split: Split, captions: Sequence[str], device: torch.device, batch: int = 256,
          img: Optional[dict] = None) -> dict:
    """Distinctiveness (``r1``, ``r5``) and the reference-free score (``clip_s``) of one caption
    per image of ``split`` in the grader's embedding (``img``: :func:`grader_images`, when at hand)."""
    img = grader_images(grader, split, device, batch) if img is None else img
    out = distinctiveness(grader.matcher, split, captions, grader.vocab, grader.data_cfg, device, batch, img)
    out["clip_s"] = reference_free_score(grader.matcher, split, captions, grader.vocab, grader.data_cfg, device,
                                         batch, img)
    return out
