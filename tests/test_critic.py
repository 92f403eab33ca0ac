"""The critic's update passes the real images through D's convs once, judged with their own and a
wrong caption: it must be the three-pass matching-aware update (real, wrong, fake) of the paper."""
import copy

import pytest
import torch

from config import ImagineConfig
from losses.gan import discriminator_loss, mismatched_indices
from training.imagine import Critic


@pytest.mark.parametrize("adv_loss", ["bce", "hinge"])
def test_shared_real_pass_equals_three_separate_passes(adv_loss):
    torch.manual_seed(0)
    cfg = ImagineConfig(image_size=32, c_dim=8, d_width=4, adv_loss=adv_loss, d_skip_loss=0.0)
    critic = Critic(cfg)
    naive = copy.deepcopy(critic.module)
    naive_opt = torch.optim.Adam(naive.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    ids = torch.tensor([0, 1, 2, 3, 4, 5])
    for step in range(3):
        real, fake = torch.rand(6, 3, 32, 32) * 2 - 1, torch.rand(6, 3, 32, 32) * 2 - 1
        mu = torch.randn(6, 8)
        torch.manual_seed(10 + step)  # the wrong captions are drawn from torch's generator
        got = critic.step(real, {"mu": mu, "fake": fake}, ids)
        naive.train()
        torch.manual_seed(10 + step)
        wrong = mu[mismatched_indices(ids)]
        want = discriminator_loss(naive(real, mu), naive(real, wrong), naive(fake, mu), adv_loss)
        naive_opt.zero_grad()
        want["total"].backward()
        naive_opt.step()
        for name in ("real", "wrong", "fake"):
            assert got[f"d_{name}"] == pytest.approx(want[name].item(), rel=1e-5, abs=1e-6), (step, name)
        for (name, p), q in zip(critic.module.named_parameters(), naive.parameters()):
            assert torch.allclose(p, q, atol=1e-6), (step, name)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in critic.module.modules())  # the BatchNorm D was tested
