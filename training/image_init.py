"""``model.image_init``: start this run's image encoder from another run's.

A captioner with few labels learns its words from them but can see the images through an encoder
trained on many more pairs, as the semi-supervised systems this follows read images through CLIP's
image tower. Here the tower is another run's matcher (trained on every pair, or on other data):
its backbone and both embedding heads are copied from its ``best.pt``; with ``model.finetune=false``
the backbone stays as it was trained there. Only weights travel: the run must read the same input
(same encoder settings, input size and similarity measure), or the copy is refused, naming the keys.
"""
from __future__ import annotations

import os
from typing import Optional

from config import Config, value_at
from runfolder.checkpoint import CheckpointError
from runfolder.folder import load_other_run

# Settings that must agree for the weights to mean the same thing here.
MATCHING_KEYS = ("model.image_encoder", "model.small_cnn_width", "model.small_cnn_depth", "model.embed_dim",
                 "model.measure", "data.image_size", "data.resize")


def init_image_encoder(model, cfg: Config, own_run: str, feature_dim: Optional[int], log=print) -> None:
    """Copy ``cfg.model.image_init``'s image encoder into ``model.matcher.image_encoder`` (strictly).

    Raises:
        CheckpointError: the folder is missing, is this run, or was trained with other input settings.
    """
    run_dir = cfg.model.image_init
    theirs, _, other, ckpt = load_other_run(run_dir, own_run, "model.image_init")
    differ = [f"{k}={value_at(theirs, k)!r} there, {value_at(cfg, k)!r} here" for k in MATCHING_KEYS
              if value_at(theirs, k) != value_at(cfg, k)]
    if ckpt.get("image_feature_dim") != feature_dim:
        differ.append(f"image feature width {ckpt.get('image_feature_dim')} there, {feature_dim} here")
    if differ:
        raise CheckpointError(f"model.image_init={run_dir}: its image encoder reads other input: " + "; ".join(differ))
    model.matcher.image_encoder.load_state_dict(other.matcher.image_encoder.state_dict(), strict=True)
    frozen = "frozen" if model.matcher.image_encoder.frozen else "fine-tuned"
    log(f"model.image_init: image encoder from {os.path.join(run_dir, 'best.pt')} (backbone {frozen}, heads trained)")
