"""The GAN's optional parts: hinge loss, spectral normalisation, the generator's moving average."""
import json

import pytest
import torch

import train
from config import ImagineConfig, LookConfig, ModelConfig
from losses.gan import discriminator_loss, generator_loss
from models.lim import LIM
from models.t2i_gan import Discriminator, init_weights
from tests.test_train import tiny


def test_hinge_losses():
    real, wrong, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0]), torch.tensor([-0.5, 1.0])
    d = discriminator_loss(real, wrong, fake, "hinge")
    assert d["real"].item() == pytest.approx(0.25)  # mean(relu(1 - [2, .5])) = mean(0, .5)
    assert d["wrong"].item() == pytest.approx(0.5)  # mean(relu(1 + [-2, 0])) = mean(0, 1)
    assert d["fake"].item() == pytest.approx(1.25)  # mean(relu(1 + [-.5, 1])) = mean(.5, 2)
    assert d["total"].item() == pytest.approx(0.25 + 0.5 * (0.5 + 1.25))
    g = generator_loss(fake, torch.zeros(2, 3), torch.zeros(2, 3), 2.0, "hinge")
    assert g["adv"].item() == pytest.approx(-0.25) and g["kl"].item() == pytest.approx(0.0)
    assert discriminator_loss(real, wrong, fake)["real"].item() == pytest.approx(
        torch.nn.functional.softplus(-real).mean().item())  # bce stays the default


def test_spectral_norm_keeps_the_largest_singular_value_near_one():
    torch.manual_seed(0)
    d = Discriminator(cond_dim=8, image_size=32, width=4, proj_dim=8, spectral=True)
    d.apply(init_weights)
    for p in d.parameters():  # make the raw weights large: without SN their norms are far from 1
        p.data.mul_(50)
    d.apply_spectral_norm()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())
    x, c = torch.randn(4, 3, 32, 32), torch.randn(4, 8)
    d.train()
    for _ in range(30):  # power iterations run in training-mode forwards
        d(x, c)
    layers = [m for m in d.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(layers) >= 4
    for m in layers:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2).item()
        assert sigma == pytest.approx(1.0, abs=0.05)
        raw = torch.linalg.matrix_norm(m.parametrizations.weight.original.detach().flatten(1), ord=2).item()
        assert raw > 2


def test_ema_is_the_weighted_average_of_the_weights():
    torch.manual_seed(0)
    model = LIM(ModelConfig(embed_dim=16, word_dim=8, text_hidden=8, small_cnn_width=4), LookConfig(lambda_i2t=0),
                ImagineConfig(image_size=32, c_dim=8, z_dim=8, g_width=4, ema=0.9), vocab_size=20)
    assert model.sampler() is model.imagine_ema
    assert not any(p.requires_grad for p in model.imagine_ema.parameters())
    live = list(model.imagine.parameters())
    start = [p.detach().clone() for p in model.imagine_ema.parameters()]
    values = []
    for k in range(5):
        with torch.no_grad():
            for p in live:
                p.add_(0.1 * (k + 1))
        values.append([p.detach().clone() for p in live])
        model.update_ema()
    for j, ema in enumerate(model.imagine_ema.parameters()):
        expect = 0.9 ** 5 * start[j] + sum(0.1 * 0.9 ** (4 - k) * values[k][j] for k in range(5))
        torch.testing.assert_close(ema, expect, rtol=1e-5, atol=1e-6)
    bn = next(m for m in model.imagine.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn_ema = next(m for m in model.imagine_ema.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn_ema.running_mean.clone()
    bn.running_mean.fill_(3.0)
    bn.num_batches_tracked.fill_(7)
    model.update_ema()
    torch.testing.assert_close(bn_ema.running_mean, 0.9 * before + 0.1 * 3.0)
    assert int(bn_ema.num_batches_tracked) == 7
    # warm-up: at step 0 the decay is min(0.999, 1/10) = 0.1, so the average moves most of the way
    fresh = LIM(ModelConfig(embed_dim=16, word_dim=8, text_hidden=8, small_cnn_width=4), LookConfig(lambda_i2t=0),
                ImagineConfig(image_size=32, c_dim=8, z_dim=8, g_width=4, ema=0.999), vocab_size=20)
    init = [p.detach().clone() for p in fresh.imagine_ema.parameters()]
    with torch.no_grad():
        for p in fresh.imagine.parameters():
            p.add_(1.0)
    fresh.update_ema(step=0)
    for ema, start_value, live in zip(fresh.imagine_ema.parameters(), init, fresh.imagine.parameters()):
        torch.testing.assert_close(ema, 0.1 * start_value + 0.9 * live.detach())
    off = LIM(ModelConfig(embed_dim=16, word_dim=8, text_hidden=8, small_cnn_width=4), LookConfig(lambda_i2t=0),
              ImagineConfig(image_size=32, c_dim=8, z_dim=8, g_width=4, ema=0.0), vocab_size=20)
    assert off.imagine_ema is None and off.sampler() is off.imagine


def test_a_run_with_hinge_sn_and_ema_trains_and_reports_the_probe(tmp_path):
    report = train.main(tiny(tmp_path, **{"train.epochs": 1, "look.scst_epochs": 0, "imagine.adv_loss": "hinge",
                                          "imagine.spectral_norm": True, "imagine.ema": 0.99}))
    probe = report["synthesis"]["probe"]
    assert probe["captions"] == 40 and 0 <= probe["colour_dominant"] <= 100 and 0 <= probe["one_object"] <= 100
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert saved["synthesis"]["probe"] == probe
    assert "colour dominates" in (tmp_path / "run" / "report.md").read_text()
    from runfolder.folder import load_trained

    _, _, model, _ = load_trained(str(tmp_path / "run"))
    live = torch.cat([p.flatten() for p in model.imagine.parameters()])
    ema = torch.cat([p.flatten() for p in model.imagine_ema.parameters()])
    assert not torch.equal(live, ema)  # the average lags the live weights
