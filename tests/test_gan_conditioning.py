"""DiffAugment, DF-GAN-style affine fusion, and a generator that learns which colour it was asked for."""
import pytest
import torch
import torch.nn.functional as F

from config import ConfigError, ImagineConfig, load_config
from models.diff_augment import DiffAugment, cutout, parse_policy, translate
from models.t2i_gan import AffineUpBlock, ConditioningAugmentation, Generator, TextToImage, init_weights
from training.imagine import Critic, generator_terms


def naive_translate(x, shift):
    out = torch.zeros_like(x)
    for i, (dy, dx) in enumerate(shift.tolist()):
        for y in range(x.shape[2]):
            for z in range(x.shape[3]):
                sy, sx = y - dy, z - dx
                if 0 <= sy < x.shape[2] and 0 <= sx < x.shape[3]:
                    out[i, :, y, z] = x[i, :, sy, sx]
    return out


def test_translation_and_cutout_match_a_naive_loop_and_pass_gradients():
    torch.manual_seed(0)
    x = torch.randn(5, 3, 8, 8, requires_grad=True)
    aug = DiffAugment("translation,cutout")
    params = aug.draw(5, 8, generator=torch.Generator().manual_seed(1))
    assert params["shift"].abs().max() <= 1 and params["cutout_side"] == 4
    want = naive_translate(x.detach(), params["shift"])
    assert torch.equal(translate(x.detach(), params["shift"]), want)
    for i, (top, left) in enumerate(params["cutout"].tolist()):
        want[i, :, top:top + 4, left:left + 4] = 0
    got = aug.apply(x, params)
    assert torch.equal(got.detach(), want)
    got.sum().backward()  # differentiable: the kept pixels pass a gradient of one, the cut ones none
    assert x.grad.sum() > 0 and set(x.grad.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(cutout(torch.ones(1, 1, 4, 4), torch.tensor([[1, 1]]), 2)[0, 0],
                       torch.tensor([[1., 1, 1, 1], [1, 0, 0, 1], [1, 0, 0, 1], [1, 1, 1, 1]]))
    assert not DiffAugment("") and DiffAugment("")(x) is x
    with pytest.raises(ValueError, match="color"):
        parse_policy("translation,color")
    with pytest.raises(ConfigError, match="imagine.diff_augment"):
        load_config(None, ["imagine.diff_augment=color"])


class Recorder(torch.nn.Module):
    """A stand-in discriminator that remembers what it was shown."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen = []
        self.judged = 0

    def image(self, images):
        self.seen.append(images.detach().clone())
        return images

    def judge(self, features, cond):
        self.judged += 1
        return features.mean((1, 2, 3)) * self.w + cond.sum(1) * 0

    def forward(self, images, cond):
        return self.judge(self.image(images), cond)


def test_d_sees_one_transform_per_pair_and_g_a_fresh_one():
    torch.manual_seed(0)
    cfg = ImagineConfig(c_dim=4, image_size=32, d_width=4, diff_augment="translation,cutout", d_skip_loss=0)
    critic = Critic(cfg)
    critic.module = Recorder()
    critic.optimizer = torch.optim.SGD(critic.module.parameters(), lr=0.1)
    n = 6
    real = torch.ones(n, 3, 32, 32)
    out = {"fake": torch.full((n, 3, 32, 32), 2.0, requires_grad=True), "mu": torch.randn(n, 4),
           "logvar": torch.zeros(n, 4)}
    critic.step(real, out, torch.arange(n))
    seen_real, seen_fake = critic.module.seen  # the real images pass once, judged with their own and a wrong caption
    assert critic.module.judged == 3
    assert torch.equal(seen_fake, 2 * seen_real)  # the pair's fake went through the same transform
    assert (seen_real == 0).any()  # and it did transform
    critic.module.seen.clear()
    generator_terms(critic, out, cfg)
    assert not torch.equal(critic.module.seen[0], seen_fake)  # G's step draws its own transform


def test_affine_fusion_starts_as_the_identity_and_brings_the_condition_into_every_block():
    torch.manual_seed(0)
    block = AffineUpBlock(4, 3, c_dim=5)
    x = torch.randn(2, 4, 4, 4)
    plain = torch.relu(block.norm(block.conv(block.up(x))))
    assert torch.allclose(block(x, torch.randn(2, 5)), plain)  # zero modulation: c changes nothing yet
    gen = Generator(c_dim=5, z_dim=3, image_size=32, width=4, fusion="affine").eval()
    plain = Generator(c_dim=5, z_dim=3, image_size=32, width=4).eval()
    for g in (gen, plain):
        with torch.no_grad():
            g.fc[0].weight[:, 3:] = 0  # the input layer no longer reads c
    for b in gen.blocks:
        torch.nn.init.normal_(b.beta.weight, 0, 0.5)
    z, c1, c2 = torch.randn(2, 3), torch.randn(2, 5), torch.randn(2, 5)
    assert torch.equal(plain(z, c1), plain(z, c2))
    assert not torch.allclose(gen(z, c1), gen(z, c2))  # c still reaches the picture, through the blocks
    with pytest.raises(ValueError, match="fusion"):
        Generator(fusion="concat")
    t2i = TextToImage(8, c_dim=5, z_dim=3, image_size=32, width=4, fusion="affine")
    assert all(not b.gamma.weight.detach().any() for b in t2i.generator.blocks)  # DCGAN init left them at 0


RED, BLUE = torch.tensor([1.0, -1.0, -1.0]), torch.tensor([-1.0, -1.0, 1.0])


def one_object_images(colours: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``(n, 3, 32, 32)`` in [-1, 1]: a square of the colour at a random place on black."""
    n = len(colours)
    images = torch.full((n, 3, 32, 32), -1.0)
    corners = torch.randint(0, 20, (n, 2), generator=gen)
    for i, (y, x) in enumerate(corners.tolist()):
        images[i, :, y:y + 12, x:x + 12] = colours[i][:, None, None]
    return images


def test_a_tiny_gan_draws_red_when_asked_for_red_and_blue_for_blue():
    """The whole imagine path's G/D losses (matching-aware D, CA, our Critic) on a one-object toy set:
    after 300 steps the colour asked for is the colour drawn."""
    torch.manual_seed(0)
    data = torch.Generator().manual_seed(0)
    cfg = ImagineConfig(c_dim=8, z_dim=8, image_size=32, g_width=8, d_width=8, d_skip_loss=0, kl_weight=0.0, lr=1e-3)
    t2i = TextToImage(2, cfg.c_dim, cfg.z_dim, 32, cfg.g_width)
    critic = Critic(cfg)
    opt = torch.optim.Adam(t2i.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    words = torch.eye(2)  # "red" and "blue" as text features
    for _ in range(300):
        which = torch.randint(0, 2, (16,), generator=data)
        real = one_object_images(torch.stack([RED, BLUE])[which], data)
        out = t2i(words[which], torch.randn(16, cfg.z_dim))
        critic.step(real, out, torch.arange(16))  # 16 distinct images: D's wrong pairs are any other row
        loss = sum(generator_terms(critic, out, cfg).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    t2i.eval()
    with torch.no_grad():
        red = t2i(words[[0] * 32], torch.randn(32, cfg.z_dim), sample=False)["fake"]
        blue = t2i(words[[1] * 32], torch.randn(32, cfg.z_dim), sample=False)["fake"]
    r_minus_b = [float(x[:, 0].mean() - x[:, 2].mean()) for x in (red, blue)]
    assert r_minus_b[0] > r_minus_b[1] + 0.2, r_minus_b
    assert red[:, 0].mean() > blue[:, 0].mean() and blue[:, 2].mean() > red[:, 2].mean()


def test_standardised_text_gives_a_condition_that_stands_out_of_the_noise():
    """Unit-norm text features read raw give a CA mean near zero beside its unit noise; standardised,
    the mean varies across captions by far more, and does not depend on the feature's length."""
    torch.manual_seed(0)
    text = F.normalize(torch.randn(40, 512), dim=1)  # (40, 512) unit vectors, as our encoders give
    raw, std = ConditioningAugmentation(512, 128), ConditioningAugmentation(512, 128, standardise=True)
    raw.apply(init_weights)
    std.load_state_dict(raw.state_dict())
    mu_raw, mu_std = raw(text, sample=False)[1], std(text, sample=False)[1]  # (40, 128) each
    assert mu_std.std(0).mean() > 10 * mu_raw.std(0).mean()
    by_hand = (text - text.mean(1, keepdim=True)) / text.std(1, unbiased=False, keepdim=True)
    assert torch.allclose(mu_std, raw(by_hand, sample=False)[1], atol=1e-5)
    assert torch.allclose(std(7 * text, sample=False)[1], mu_std, atol=1e-5)  # scale-free
    assert TextToImage(512, standardise_text=True).ca.standardise and not TextToImage(512).ca.standardise
