"""configs/vse0.yaml and configs/vsepp.yaml: the VSE baselines on a Karpathy-format set."""
import os

import pytest

from config import load_config

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")
DATA = ["data.json=set.json", "data.image_root=images"]


def preset(name: str):
    return load_config(os.path.join(CONFIGS, f"{name}.yaml"), DATA)


@pytest.mark.parametrize("name", ["vse0", "vsepp"])
def test_matcher_alone_with_the_data_of_custom(name):
    cfg, custom = preset(name), preset("custom")
    assert cfg.data == custom.data and cfg.data.json == "set.json" and cfg.data.image_root == "images"
    assert cfg.model.image_encoder == custom.model.image_encoder == "small_cnn"
    assert cfg.model.measure == "cosine" and cfg.loss.margin == 0.2
    assert cfg.look.lambda_i2t == 0 and cfg.imagine.lambda_t2i == 0
    assert cfg.train.one_caption_per_image is False and cfg.train.out_dir == f"runs/{name}"


def test_vse0_sums_the_hinges():
    assert preset("vse0").loss.max_violation is False


def test_vsepp_ramps_to_the_hardest_negative_after_a_warm_up():
    loss = preset("vsepp").loss
    assert loss.max_violation is True and loss.warmup_epochs > 0 and loss.hard_ramp_epochs > 0
    assert loss.warmup_epochs + loss.hard_ramp_epochs < preset("vsepp").train.epochs


def test_custom_preset_trains_on_every_caption_with_a_ramp():
    import numpy as np

    from data.records import ArrayImages, Split
    from training.loop import epoch_caption_indices

    cfg = preset("custom")
    assert cfg.train.one_caption_per_image is False
    split = Split("train", ArrayImages(np.zeros((6, 4, 4, 3), np.uint8), name="toy"),
                  [[f"caption {i} {j}" for j in range(5)] for i in range(6)], "toy")
    epoch = epoch_caption_indices(split, cfg.train.one_caption_per_image, 0, cfg.train.seed)
    assert sorted(epoch.tolist()) == list(range(30))  # an epoch is every caption of every image, once
    assert cfg.loss.max_violation and cfg.loss.hard_ramp_epochs > 0 and cfg.loss.warmup_epochs > 0
    assert cfg.look.rerank_captions and cfg.look.beam_size > 3
