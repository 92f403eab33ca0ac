"""The imagine path wired into training: real-image conversion, D's update, G's terms, sampling, grids, demo."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

import demo
import train
from config import ImagineConfig, LookConfig, ModelConfig
from data.datasets import gan_images, normalize_uint8
from models.lim import LIM
from runfolder.checkpoint import save_atomic
from runfolder.folder import load_trained
from synthesis.sampling import diversity, image_grid, imagine, save_png
from tests.test_train import tiny
from training.imagine import Critic, generator_terms
from training.loop import TrainingError

GAN = ImagineConfig(image_size=32, c_dim=8, z_dim=6, g_width=4, d_width=4, batch_pairs=0)


def small_lim(seed: int = 0, imagine_cfg: ImagineConfig = GAN) -> LIM:
    torch.manual_seed(seed)
    model = ModelConfig(embed_dim=16, word_dim=8, text_hidden=8, small_cnn_width=4)
    return LIM(model, LookConfig(lambda_i2t=0), imagine_cfg, vocab_size=20)


def batch(b: int = 6, size: int = 32):
    g = torch.Generator().manual_seed(1)
    pixels = torch.randint(0, 256, (b, 3, size, size), dtype=torch.uint8, generator=g)
    captions = torch.randint(4, 20, (b, 5), generator=g)
    return pixels, normalize_uint8(pixels), captions, torch.full((b,), 5), torch.arange(b)


def test_gan_images_inverts_the_encoder_normalisation():
    pixels, images, *_ = batch()
    torch.testing.assert_close(gan_images(images, 32), pixels.float() / 127.5 - 1, atol=1e-5, rtol=0)
    small = gan_images(images, 16)
    assert small.shape == (6, 3, 16, 16) and small.min() >= -1 and small.max() <= 1


def test_lim_imagines_the_first_n_captions():
    model = small_lim()
    _, images, captions, lengths, _ = batch()
    out = model(images, captions, lengths, imagine=4, interpolate=True)
    assert out["fake"].shape == (4, 3, 32, 32) and out["mu"].shape == out["logvar"].shape == (4, 8)
    assert out["fake_int"].shape == (4, 3, 32, 32) and out["mu_int"].shape == (4, 8)
    assert out["fake"].abs().max() <= 1
    with pytest.raises(ValueError, match="imagine.lambda_t2i=0"):
        small_lim(imagine_cfg=ImagineConfig(lambda_t2i=0))(images, captions, lengths, imagine=2)


def test_precomputed_features_cannot_train_the_gan():
    from config import ConfigError, load_config

    with pytest.raises(ConfigError, match="imagine.lambda_t2i=0"):
        load_config(None, ["model.image_encoder=precomp", "data.name=precomp", "data.precomp_dir=x"])


def test_generator_terms_reach_the_text_encoder_but_not_d_or_the_image_encoder():
    model, critic = small_lim(), Critic(GAN)
    _, images, captions, lengths, _ = batch()
    out = model(images, captions, lengths, imagine=6)
    terms = generator_terms(critic, out, GAN)
    assert set(terms) == {"gan_g", "gan_kl"} and terms["gan_kl"] >= 0
    (terms["gan_g"] + terms["gan_kl"]).backward()
    text = model.matcher.text_encoder
    grounded_head = [p for n, p in text.named_parameters() if "grounded" in n]
    assert grounded_head and all(p.grad is not None and p.grad.abs().sum() > 0 for p in grounded_head)
    assert all(p.grad is not None for p in model.imagine.parameters())
    assert all(p.grad is None for p in critic.module.parameters())  # D is frozen in G's loss
    assert all(p.grad is None for p in model.matcher.image_encoder.parameters())
    assert all(p.requires_grad for p in critic.module.parameters())  # ... and unfrozen afterwards


def test_critic_step_updates_d_only_and_skips_when_it_has_won():
    model = small_lim()
    pixels, images, captions, lengths, ids = batch()
    out = model(images, captions, lengths, imagine=6)
    real = gan_images(images, 32)
    critic = Critic(GAN)
    before = [p.detach().clone() for p in critic.module.parameters()]
    terms = critic.step(real, out, ids)
    assert {"d_real", "d_wrong", "d_fake", "d_loss", "d_skipped"} <= set(terms) and terms["d_skipped"] == 0
    assert any(not torch.equal(a, p) for a, p in zip(before, critic.module.parameters()))
    assert all(p.grad is None for p in model.parameters())  # fake and condition were detached

    winner = Critic(ImagineConfig(**{**GAN.__dict__, "d_skip_loss": 100.0}))
    before = [p.detach().clone() for p in winner.module.parameters()]
    assert winner.step(real, out, ids)["d_skipped"] == 1 and winner.skipped == 1
    assert all(torch.equal(a, p) for a, p in zip(before, winner.module.parameters()))


def test_d_loss_falls_on_a_fixed_batch_in_the_training_step():
    model = small_lim()
    _, images, captions, lengths, ids = batch(8)
    with torch.no_grad():
        out = model(images, captions, lengths, imagine=8)
    out["mu"] = torch.randn(8, GAN.c_dim, generator=torch.Generator().manual_seed(2))  # distinct captions
    real = gan_images(images, 32)
    critic = Critic(ImagineConfig(**{**GAN.__dict__, "lr": 1e-3}))
    terms = [critic.step(real, out, ids) for _ in range(40)]
    assert terms[-1]["d_loss"] < 0.5 * terms[0]["d_loss"]
    assert terms[-1]["d_wrong"] < terms[0]["d_wrong"]  # it learns which caption goes with which image


def test_imagine_is_seeded_and_leaves_the_global_rng_alone():
    from data.vocab import Vocabulary
    vocab = Vocabulary(["<pad>", "<start>", "<end>", "<unk>"] + [f"w{i}" for i in range(16)])
    model = small_lim()
    state = torch.get_rng_state()
    a = imagine(model, ["w1 w2", "w3"], vocab, per_text=3, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    assert a.shape == (6, 3, 32, 32)
    assert torch.equal(a, imagine(model, ["w1 w2", "w3"], vocab, per_text=3, seed=5))
    assert not torch.allclose(a, imagine(model, ["w1 w2", "w3"], vocab, per_text=3, seed=6))
    assert model.training  # restored


def test_image_grid_and_png(tmp_path):
    images = torch.linspace(-1, 1, 5 * 3 * 8 * 8).view(5, 3, 8, 8)
    grid = image_grid(images, columns=2, labels=["a", "b", "c"], scale=2, pad=4)
    assert grid.size == (2 * 20 + 4, 3 * (16 + 4 + 14) + 4)
    save_png(grid, str(tmp_path / "g.png"))
    assert Image.open(tmp_path / "g.png").format == "PNG" and os.listdir(tmp_path) == ["g.png"]
    assert diversity(torch.zeros(4, 3, 8, 8)) == 0 and diversity(images) > 0


def test_training_writes_a_grid_and_synthesis_section(tmp_path):
    report = train.main(tiny(tmp_path, **{"train.epochs": 1}))
    grid = tmp_path / "run" / report["synthesis"]["grid"]
    assert Image.open(grid).format == "PNG"
    assert len(report["synthesis"]["grid_captions"]) == 8
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert set(ckpt["optimizers"]) == {"match", "look", "imagine"} and ckpt["critic"]["model"]


def test_demo_imagine_writes_png_and_seeds_differ(tmp_path, capsys):
    train.main(tiny(tmp_path, **{"train.epochs": 1}))
    run = str(tmp_path / "run")
    # A generator trained for 3 steps draws near-constant grey (its N(0, 0.02) output layer); amplify
    # that layer so the noise shows in 8-bit pixels, and sample from the amplified checkpoint.
    ckpt = torch.load(os.path.join(run, "best.pt"), weights_only=True)
    ckpt["model"]["imagine.generator.to_rgb.weight"] *= 200
    save_atomic(ckpt, os.path.join(run, "amplified.pt"))
    for seed in (0, 1):
        assert demo.main(["imagine", run, "a red circle", "-n", "3", "--seed", str(seed), "--checkpoint",
                          os.path.join(run, "amplified.pt"), "--out", str(tmp_path / f"s{seed}.png")]) == 0
    a, b = (np.asarray(Image.open(tmp_path / f"s{s}.png")) for s in (0, 1))
    assert a.shape == b.shape and a.shape[1] == 4 + 3 * (2 * 32 + 4) and not np.array_equal(a, b)
    assert demo.main(["imagine", run, "a zebra", "--out", str(tmp_path / "z.png")]) == 0
    assert "zebra" in capsys.readouterr().err  # an unknown word is reported, not fatal

    train.main(tiny(tmp_path, out="plain", **{"train.epochs": 1, "imagine.lambda_t2i": 0}))
    assert demo.main(["imagine", str(tmp_path / "plain"), "a red circle", "--out", str(tmp_path / "x.png")]) == 2
    assert "imagine.lambda_t2i=0" in capsys.readouterr().err and not (tmp_path / "x.png").exists()


def test_checkpoint_restores_the_generator_strictly(tmp_path):
    train.main(tiny(tmp_path, **{"train.epochs": 1}))
    _, _, model, _ = load_trained(str(tmp_path / "run"))
    assert model.imagine is not None and model.imagine.image_size == 32


def test_match_term_trains_the_generator_through_a_frozen_image_encoder():
    model, critic = small_lim(), Critic(GAN)
    model.train()
    _, images, captions, lengths, ids = batch()
    out = model(images, captions, lengths, imagine=4)
    encoder = model.matcher.image_encoder
    stats = {k: v.clone() for k, v in encoder.state_dict().items() if "running" in k}
    terms = generator_terms(critic, out, GAN, model.matcher, ids, encoder_size=32)
    assert set(terms) == {"gan_g", "gan_kl", "gan_match"} and terms["gan_match"] > 0
    terms["gan_match"].backward()
    assert all(p.grad is None for p in encoder.parameters())  # fake images never train the encoder ...
    assert all(torch.equal(v, encoder.state_dict()[k]) for k, v in stats.items())  # ... nor its BatchNorm
    assert encoder.training  # its mode is restored
    assert all(p.grad is not None for p in model.imagine.generator.parameters())
    off = generator_terms(critic, out, ImagineConfig(**{**GAN.__dict__, "match_weight": 0.0}), model.matcher, ids, 32)
    assert "gan_match" not in off


def test_a_non_finite_discriminator_loss_stops_training_without_updating_d(tmp_path, monkeypatch):
    import training.imagine
    real_loss = training.imagine.discriminator_loss

    def nan_loss(*args):
        terms = real_loss(*args)
        return {**terms, "total": terms["total"] * float("nan")}

    monkeypatch.setattr(training.imagine, "discriminator_loss", nan_loss)
    with pytest.raises(TrainingError, match="non-finite loss at epoch 1.*'d_loss': nan"):
        train.main(tiny(tmp_path))


def test_gan_terms_reach_tensorboard_when_the_gan_skips_the_logged_steps(tmp_path):
    """With the GAN on every other step and a log every second step, every logged step is one the
    GAN skipped: its terms are logged as of its last step, not dropped."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tests.test_train import tiny

    train.main(tiny(tmp_path, **{"train.epochs": 1, "look.lambda_i2t": 0, "imagine.every": 2, "train.log_every": 2}))
    events = EventAccumulator(str(tmp_path / "run" / "tb"))
    events.Reload()
    logged = events.Tags()["scalars"]
    assert {"train/gan_g", "train/gan_match", "train/d_loss"} <= set(logged), logged
    assert len(events.Scalars("train/gan_g")) == len(events.Scalars("train/loss")) >= 1
