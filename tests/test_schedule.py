"""train.schedule: one joint update, or the paper's sequential per-path updates (D+G, decoder, ranking)."""
import pytest
import torch

import train
from config import Config, ConfigError, ImagineConfig, LookConfig, ModelConfig
from data.datasets import normalize_uint8
from losses.ranking import RankingLoss
from models.lim import LIM
from tests.test_train import tiny
from training.imagine import Critic
from training.steps import joint_step, schedule_paths


def test_schedule_paths_follow_the_papers_order_and_skip_switched_off_paths():
    joint, seq = Config(), Config()
    seq.train.schedule = "sequential"
    assert schedule_paths(joint, "xe", True) == [("imagine", "look", "rank")]
    assert schedule_paths(seq, "xe", True) == [("imagine",), ("look",), ("rank",)]
    assert schedule_paths(seq, "off", True) == [("imagine",), ("rank",)]
    assert schedule_paths(seq, "scst", False) == [("look",), ("rank",)]


def setup(seed=0):
    torch.manual_seed(seed)
    cfg = Config()
    cfg.model = ModelConfig(embed_dim=16, word_dim=8, text_hidden=8, small_cnn_width=4)
    cfg.look = LookConfig(hidden=16, word_dim=8, max_len=8)
    cfg.imagine = ImagineConfig(image_size=32, c_dim=8, z_dim=6, g_width=4, d_width=4, batch_pairs=0)
    cfg.data.image_size = 32
    model = LIM(cfg.model, cfg.look, cfg.imagine, vocab_size=20)
    g = torch.Generator().manual_seed(1)
    pixels = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=g)
    captions = torch.randint(4, 20, (6, 5), generator=g)
    captions[:, 0], captions[:, -1] = 1, 2  # <start> ... <end>
    batch = (normalize_uint8(pixels), captions, torch.full((6,), 5), torch.arange(6), None)
    return cfg, model, batch, Critic(cfg.imagine)


def reached(model: LIM, paths: tuple) -> dict:
    cfg, _, batch, critic = setup()
    model.zero_grad(set_to_none=True)
    loss, _ = joint_step(model, batch, torch.device("cpu"), cfg, RankingLoss("order", 0.05), False, "xe", None,
                         critic, paths)
    loss.backward()

    def grad(module):
        return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)

    return {name: grad(m) for name, m in (("image", model.matcher.image_encoder), ("text", model.matcher.text_encoder),
                                          ("decoder", model.decoder), ("generator", model.imagine))}


def test_each_sequential_update_reaches_only_its_own_path():
    _, model, _, _ = setup()
    g = reached(model, ("imagine",))
    assert g["text"] > 0 and g["generator"] > 0 and g["image"] == 0 and g["decoder"] == 0
    d = reached(model, ("look",))
    assert d["image"] > 0 and d["decoder"] > 0 and d["text"] == 0 and d["generator"] == 0
    r = reached(model, ("rank",))
    assert r["image"] > 0 and r["text"] > 0 and r["decoder"] == 0 and r["generator"] == 0
    j = reached(model, ("imagine", "look", "rank"))
    assert min(j.values()) > 0


def test_sequential_schedule_trains_and_a_bad_schedule_is_named(tmp_path):
    report = train.main(tiny(tmp_path, **{"train.epochs": 1, "look.scst_epochs": 0, "train.schedule": "sequential"}))
    assert report["retrieval"]["embedding"]["rsum"] > 0 and "synthesis" in report and "captioning" in report
    with pytest.raises(ConfigError, match="train.schedule='both' is not accepted: it must be one of joint, sequential"):
        train.main(tiny(tmp_path, out="bad", **{"train.schedule": "both"}))


@pytest.mark.parametrize("schedule", ["joint", "sequential"])
def test_the_gan_joins_every_kth_step_and_the_rest_train_matcher_and_decoder(tmp_path, monkeypatch, schedule):
    import training.loop
    calls = []
    real_step = training.loop.joint_step

    def spy(model, batch, device, cfg, loss_fn, hard_weight, phase, reward, critic, paths, pairs):
        calls.append(tuple(paths))
        return real_step(model, batch, device, cfg, loss_fn, hard_weight, phase, reward, critic, paths, pairs)

    monkeypatch.setattr(training.loop, "joint_step", spy)
    # 2 epochs of 3 steps: steps 0 and 3 with the GAN, the four others without it
    train.main(tiny(tmp_path, **{"look.scst_epochs": 0, "imagine.every": 3, "train.schedule": schedule}))
    if schedule == "joint":
        gan, rest = [("imagine", "look", "rank")], [("look", "rank")]
    else:
        gan, rest = [("imagine",), ("look",), ("rank",)], [("look",), ("rank",)]
    assert calls == gan + rest + rest + gan + rest + rest
    with pytest.raises(ConfigError, match="imagine.every"):
        train.main(tiny(tmp_path, out="bad", **{"imagine.every": 0}))
