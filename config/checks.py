"""Every config value checked in one place, before a run writes anything.

``validate(cfg)`` (called by ``load_config``) raises a :class:`ConfigError` naming the key, the
value and what is accepted: ranges, choices, the sizes the models accept and every cross-key
rule. ``check_environment(cfg)`` (called by train.py) adds what depends on the machine: the device
exists and ``train.out_dir`` can be written. A typo costs an ``error:`` line, not a traceback and a
half-made run folder.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, Callable

from .tree import (BACKBONES, DATASET_KINDS, DIFF_AUGMENT, GAN_FUSIONS, GAN_IMAGE_SIZES, GAN_LOSSES, LR_SCHEDULES,
                   MEASURES, REWARDS, SCHEDULES, SCST_BASELINES, STAGE2_PICKS, Config, ConfigError)

# (dotted key, test, what is accepted): one row per plain range or choice.
_POSITIVE = "> 0"
_NATURAL = ">= 0"
_COUNT = ">= 1"
_AT_LEAST_1 = (lambda v: v >= 1, _COUNT)
_AT_LEAST_0 = (lambda v: v >= 0, _NATURAL)
_ABOVE_0 = (lambda v: v > 0, _POSITIVE)
_AUGMENT_POLICIES = (lambda v: all(p.strip() in DIFF_AUGMENT for p in v.split(",")) if v.strip() else True,
                     "empty or a comma-separated list of " + ", ".join(DIFF_AUGMENT)
                     + " (no colour policy: captions name colours)")


_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "data.name": (lambda v: v in DATASET_KINDS, "one of " + ", ".join(DATASET_KINDS)),
    "data.batch_size": (lambda v: v >= 2, ">= 2 (the ranking loss needs negatives)"),
    "data.captions_per_image": _AT_LEAST_1,
    "data.vocab_threshold": _AT_LEAST_1,
    "data.max_caption_len": _AT_LEAST_1,
    "data.num_workers": _AT_LEAST_0,
    "data.cache_mb": _AT_LEAST_0,
    "data.wrong_fraction": (lambda v: 0 <= v < 1, "0 <= value < 1"),
    "data.labelled_fraction": (lambda v: 0 < v <= 1, "0 < value <= 1"),
    "data.shapes.n_train": _AT_LEAST_1,
    "data.shapes.n_val": _AT_LEAST_1,
    "data.shapes.n_test": _AT_LEAST_1,
    "data.shapes.max_objects": _AT_LEAST_1,
    "model.image_encoder": (lambda v: v in BACKBONES, "one of " + ", ".join(BACKBONES)),
    "model.small_cnn_width": _AT_LEAST_1,
    "model.small_cnn_depth": _AT_LEAST_1,
    "model.embed_dim": _AT_LEAST_1,
    "model.word_dropout": (lambda v: 0 <= v < 1, "0 <= value < 1"),
    "model.word_dim": _AT_LEAST_1,
    "model.text_hidden": _AT_LEAST_1,
    "model.text_layers": _AT_LEAST_1,
    "model.measure": (lambda v: v in MEASURES, "one of " + ", ".join(MEASURES)),
    "model.abstract_weight": _AT_LEAST_0,
    "model.grounded_weight": _AT_LEAST_0,
    "model.invariant_weight": _AT_LEAST_0,
    "model.invariant_hidden": _AT_LEAST_1,
    "loss.margin": _AT_LEAST_0,
    "loss.warmup_epochs": _AT_LEAST_0,
    "loss.hard_ramp_epochs": _AT_LEAST_0,
    "loss.hard_weight_max": (lambda v: 0 < v <= 1, "0 < value <= 1"),
    "loss.mined_negatives": _AT_LEAST_0,
    "loss.contrast_weight": _AT_LEAST_0,
    "loss.contrast_start_epoch": _AT_LEAST_0,
    "loss.imagined_weight": _AT_LEAST_0,
    "loss.imagined_pairs": _AT_LEAST_1,
    "loss.polish_steps": _AT_LEAST_0,
    "loss.polish_imagined_weight": _AT_LEAST_0,
    "look.lambda_i2t": (lambda v: v >= 0, _NATURAL + " (0 switches the decoder off)"),
    "look.word_dim": _AT_LEAST_1,
    "look.hidden": _AT_LEAST_1,
    "look.dropout": (lambda v: 0 <= v < 1, "0 <= value < 1"),
    "look.max_len": _AT_LEAST_1,
    "look.lr": _ABOVE_0,
    "look.scst_epochs": _AT_LEAST_0,
    "look.scst_lr": _ABOVE_0,
    "look.scst_samples": _AT_LEAST_1,
    "look.scst_baseline": (lambda v: v in SCST_BASELINES, "one of " + ", ".join(SCST_BASELINES)),
    "look.temperature": _ABOVE_0,
    "look.beam_size": _AT_LEAST_1,
    "look.rerank_samples": _AT_LEAST_0,
    "look.rerank_temperature": _ABOVE_0,
    "look.rerank_fluency_weight": _AT_LEAST_0,
    "look.val_caption_every": _AT_LEAST_0,
    "look.fused_top_k": (lambda v: v >= 0, _NATURAL + " (0: off)"),
    "imagine.lambda_t2i": (lambda v: v >= 0, _NATURAL + " (0 switches the GAN off)"),
    "imagine.image_size": (lambda v: v in GAN_IMAGE_SIZES, "one of " + ", ".join(map(str, GAN_IMAGE_SIZES))),
    "imagine.c_dim": _AT_LEAST_1,
    "imagine.z_dim": _AT_LEAST_1,
    "imagine.g_width": _AT_LEAST_1,
    "imagine.d_width": _AT_LEAST_1,
    "imagine.kl_weight": _AT_LEAST_0,
    "imagine.match_weight": _AT_LEAST_0,
    "imagine.match_pairs": (lambda v: v >= 0, _NATURAL + " (0: all pairs)"),
    "imagine.lr": _ABOVE_0,
    "imagine.beta1": (lambda v: 0 <= v < 1, "0 <= value < 1"),
    "imagine.beta2": (lambda v: 0 <= v < 1, "0 <= value < 1"),
    "imagine.batch_pairs": (lambda v: v >= 0, _NATURAL + " (0: the whole batch)"),
    "imagine.d_skip_loss": _AT_LEAST_0,
    "imagine.adv_loss": (lambda v: v in GAN_LOSSES, "one of " + ", ".join(GAN_LOSSES)),
    "imagine.fusion": (lambda v: v in GAN_FUSIONS, "one of " + ", ".join(GAN_FUSIONS)),
    "imagine.diff_augment": _AUGMENT_POLICIES,
    "imagine.solo_diff_augment": _AUGMENT_POLICIES,
    "imagine.every": _AT_LEAST_1,
    "imagine.solo_steps": _AT_LEAST_0,
    "imagine.ema": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "imagine.collapse_ratio": _AT_LEAST_0,
    "robust.warmup_epochs": _AT_LEAST_0,
    "semi.stage2_epochs": _AT_LEAST_0,
    "semi.reward": (lambda v: v in REWARDS, "one of " + ", ".join(REWARDS)),
    "semi.pick": (lambda v: v in STAGE2_PICKS, "one of " + ", ".join(STAGE2_PICKS)),
    "semi.temperature": _ABOVE_0,
    "semi.lr": _ABOVE_0,
    "semi.batch_size": (lambda v: v >= 2, ">= 2 (the retrieval reward needs two images)"),
    "semi.labelled_batch": _AT_LEAST_0,
    "train.epochs": _AT_LEAST_1,
    "train.lr": _ABOVE_0,
    "train.lr_decay_epochs": (lambda v: v >= 0, _NATURAL + " (0: never)"),
    "train.lr_decay": (lambda v: 0 < v <= 1, "0 < value <= 1"),
    "train.lr_schedule": (lambda v: v in LR_SCHEDULES, "one of " + ", ".join(LR_SCHEDULES)),
    "train.grad_clip": (lambda v: v >= 0, _NATURAL + " (0: off)"),
    "train.eval_batch_size": _AT_LEAST_1,
    "train.log_every": _AT_LEAST_1,
    "train.max_steps": (lambda v: v >= 0, _NATURAL + " (0: no limit)"),
    "train.schedule": (lambda v: v in SCHEDULES, "one of " + ", ".join(SCHEDULES)),
}


def value_at(cfg: Config, key: str) -> Any:
    """The value of a dotted key (``model.embed_dim``) in ``cfg``."""
    node = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _fail(key: str, value: Any, accepted: str) -> ConfigError:
    return ConfigError(f"{key}={value!r} is not accepted: it must be {accepted}")


def _check_sizes(cfg: Config) -> None:
    size, resize = cfg.data.image_size, cfg.data.resize
    if cfg.model.image_encoder == "small_cnn" and not (16 <= size <= 1024 and size % 16 == 0):
        raise _fail("data.image_size", size, "a multiple of 16 from 16 to 1024 (the small CNN halves it four times)")
    if cfg.model.image_encoder not in ("small_cnn", "precomp") and not 32 <= size <= 1024:
        raise _fail("data.image_size", size, f"from 32 to 1024 for model.image_encoder={cfg.model.image_encoder}")
    if resize != 0 and resize < size:
        raise _fail("data.resize", resize, f"0 (no crop margin) or >= data.image_size ({size})")
    if cfg.model.abstract_weight == 0 and cfg.model.grounded_weight == 0:
        raise ConfigError("model.abstract_weight and model.grounded_weight are both 0: at least one branch must score "
                          "pairs")


def _check_device(device: str) -> None:
    import torch

    if device in ("auto", "cpu"):
        return
    accepted = "auto, cpu" + (", cuda, cuda:0 .. cuda:{}".format(torch.cuda.device_count() - 1)
                              if torch.cuda.is_available() else " (this machine has no CUDA device)")
    kind, _, index = device.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise _fail("train.device", device, accepted)
    if not torch.cuda.is_available() or (index and int(index) >= torch.cuda.device_count()):
        raise _fail("train.device", device, accepted)


def _check_out_dir(out_dir: str) -> None:
    """The nearest existing folder on the way to ``out_dir`` must take a new file."""
    if not out_dir:
        raise _fail("train.out_dir", out_dir, "a folder path")
    probe = os.path.abspath(out_dir)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise ConfigError(f"train.out_dir={out_dir!r}: {probe} is a file, not a folder")
    try:
        fd, path = tempfile.mkstemp(dir=probe, prefix=".lim-write-test-")
        os.close(fd)
        os.remove(path)
    except OSError as err:
        raise ConfigError(f"train.out_dir={out_dir!r}: cannot create a file in {probe} "
                          f"({err.strerror or err})") from None


def _check_cross_keys(cfg: Config) -> None:
    if cfg.imagine.lambda_t2i > 0 and cfg.model.image_encoder == "precomp":
        raise ConfigError("imagine.lambda_t2i > 0 needs images to discriminate, but model.image_encoder=precomp sees "
                          "only precomputed features: set imagine.lambda_t2i=0")
    if cfg.loss.imagined_weight > 0 and cfg.imagine.lambda_t2i <= 0:
        raise ConfigError("loss.imagined_weight > 0 needs the text-to-image GAN to imagine the negatives, but it is "
                          "switched off (imagine.lambda_t2i=0); train with imagine.lambda_t2i=1")
    if cfg.loss.polish_steps > 0 and cfg.loss.polish_imagined_weight > 0 and cfg.imagine.lambda_t2i <= 0:
        raise ConfigError("loss.polish_steps > 0 with loss.polish_imagined_weight > 0 needs the text-to-image GAN to "
                          "imagine the negatives (imagine.lambda_t2i=0): set loss.polish_imagined_weight=0 for the "
                          "steps without them")
    if cfg.semi.stage2_epochs > 0 and cfg.look.lambda_i2t <= 0:
        raise ConfigError("semi.stage2_epochs > 0 trains the caption decoder, but it is switched off "
                          "(look.lambda_i2t=0); train with look.lambda_i2t=1")
    if cfg.semi.stage2_epochs > 0 and cfg.look.scst_samples < 2:
        raise ConfigError("stage 2's baseline is the mean of an image's other samples: look.scst_samples must be "
                          f">= 2, got {cfg.look.scst_samples}")
    reward_run, evaluator_run = cfg.semi.reward_run, cfg.semi.evaluator_run
    if evaluator_run and reward_run and os.path.realpath(evaluator_run) == os.path.realpath(reward_run):
        raise ConfigError(f"semi.evaluator_run and semi.reward_run are the same run ({reward_run}): the grade of "
                          "the captions must come from a matcher that was not their reward")


def validate(cfg: Config) -> None:
    """Raise :class:`ConfigError` for the first value a run cannot use."""
    for key, (test, accepted) in _RULES.items():
        value = value_at(cfg, key)
        if key == "imagine.image_size" and cfg.imagine.lambda_t2i <= 0:
            continue
        if not test(value):
            raise _fail(key, value, accepted)
    _check_sizes(cfg)
    _check_cross_keys(cfg)


def check_environment(cfg: Config) -> None:
    """What depends on this machine: the device and a writable ``train.out_dir``."""
    _check_device(cfg.train.device)
    _check_out_dir(cfg.train.out_dir)
