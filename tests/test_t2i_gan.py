import pytest
import torch

from losses.gan import discriminator_loss, generator_loss, kl_loss, mismatched_indices
from models.t2i_gan import ConditioningAugmentation, Discriminator, Generator, init_weights, interpolate_conditions

TEXT, C, Z, W = 10, 8, 6, 4  # text feature, condition, noise sizes; base width


def make_gan(size: int = 32, seed: int = 0) -> tuple[ConditioningAugmentation, Generator, Discriminator]:
    torch.manual_seed(seed)
    ca, g, d = ConditioningAugmentation(TEXT, C), Generator(C, Z, size, W), Discriminator(C, size, W, proj_dim=8)
    for m in (ca, g, d):
        m.apply(init_weights)
    return ca, g, d


@pytest.mark.parametrize("size", [32, 64, 128])
def test_shapes_and_range(size):
    ca, g, d = make_gan(size)
    c, mu, logvar = ca(torch.randn(3, TEXT))
    assert c.shape == mu.shape == logvar.shape == (3, C)
    images = g(torch.randn(3, Z), c)
    assert images.shape == (3, 3, size, size)
    assert images.min() >= -1 and images.max() <= 1
    assert d(images, c).shape == (3,)
    g.eval()
    d.eval()
    assert g(torch.randn(1, Z), c[:1]).shape == (1, 3, size, size)  # eval mode works on a batch of one
    assert d(images[:1], c[:1]).shape == (1,)


def test_bad_image_size():
    with pytest.raises(ValueError, match="image_size"):
        Generator(C, Z, 48, W)
    with pytest.raises(ValueError, match="image_size"):
        Discriminator(C, 16, W)


def test_init_weights():
    torch.manual_seed(0)
    g = Generator(C, Z, 64, 16)
    g.apply(init_weights)
    conv = g.blocks[0][1].weight
    assert abs(conv.mean().item()) < 0.005 and abs(conv.std().item() - 0.02) < 0.002
    bn = g.blocks[0][2]
    assert abs(bn.weight.mean().item() - 1) < 0.01 and torch.all(bn.bias == 0)
    assert torch.all(g.to_rgb.bias == 0)


def test_kl_is_nonnegative_and_zero_at_standard_normal():
    torch.testing.assert_close(kl_loss(torch.zeros(4, C), torch.zeros(4, C)), torch.tensor(0.0))
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        mu, logvar = 3 * torch.randn(4, C, generator=g), 3 * torch.randn(4, C, generator=g)
        assert kl_loss(mu, logvar) >= 0
    # By hand: mu = 1, logvar = 0 -> 0.5 per dimension.
    torch.testing.assert_close(kl_loss(torch.ones(2, 3), torch.zeros(2, 3)), torch.tensor(0.5))


def test_ca_has_no_relu_before_split_and_sampling():
    ca, _, _ = make_gan()
    text = 5 * torch.randn(64, TEXT)
    _, mu, logvar = ca(text)
    assert (mu < 0).any() and (logvar < 0).any()
    torch.testing.assert_close(ca(text, sample=False)[0], mu)
    ca.eval()
    c1, c2 = ca(text)[0], ca(text)[0]
    assert not torch.equal(c1, c2)  # still samples in eval mode (documented choice)


def test_generator_loss_reaches_text_through_ca():
    ca, g, d = make_gan()
    text = torch.randn(4, TEXT, requires_grad=True)
    c, mu, logvar = ca(text)
    terms = generator_loss(d(g(torch.randn(4, Z), c), mu.detach()), mu, logvar)
    assert set(terms) == {"adv", "kl", "total"}
    torch.testing.assert_close(terms["total"], terms["adv"] + 2.0 * terms["kl"])
    terms["adv"].backward()  # adversarial term alone: the path is text -> CA -> G -> D
    assert text.grad is not None and text.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in ca.parameters())


def test_every_parameter_gets_a_gradient():
    ca, g, d = make_gan()
    text, ids = torch.randn(4, TEXT), torch.tensor([0, 0, 1, 2])
    real = torch.rand(4, 3, 32, 32) * 2 - 1
    c, mu, logvar = ca(text)
    fake = g(torch.randn(4, Z), c)
    wrong = mismatched_indices(ids, torch.Generator().manual_seed(0))
    d_terms = discriminator_loss(d(real, mu.detach()), d(real, mu.detach()[wrong]), d(fake.detach(), mu.detach()))
    d_terms["total"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in d.parameters())
    assert all(p.grad is None for p in (*g.parameters(), *ca.parameters()))  # D's step leaves G alone
    d.zero_grad()
    generator_loss(d(fake, mu.detach()), mu, logvar)["total"].backward()
    for p in (*g.parameters(), *ca.parameters()):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_discriminator_loss_terms():
    ones, zeros = torch.full((3,), 20.0), torch.full((3,), -20.0)
    assert discriminator_loss(ones, zeros, zeros)["total"] < 1e-6
    terms = discriminator_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3))
    log2 = torch.log(torch.tensor(2.0))
    for k in ("real", "wrong", "fake"):
        torch.testing.assert_close(terms[k], log2)
    torch.testing.assert_close(terms["total"], 2 * log2)  # real + 0.5 * (wrong + fake)


def test_mismatched_indices_never_pairs_same_image():
    g = torch.Generator().manual_seed(0)
    for trial in range(300):
        b = int(torch.randint(2, 12, (1,), generator=g))
        ids = torch.randint(0, int(torch.randint(2, 5, (1,), generator=g)), (b,), generator=g)
        if (ids == ids[0]).all():
            ids[-1] = ids[0] + 1
        idx = mismatched_indices(ids, g)
        assert idx.shape == (b,) and idx.dtype == torch.long
        assert (ids[idx] != ids).all()
    ids = torch.tensor([7, 7, 7, 7, 3])  # four rows must all pick row 4; row 4 any of 0..3
    for _ in range(20):
        assert mismatched_indices(ids, g)[:4].tolist() == [4, 4, 4, 4]
    # Uniform among the allowed rows, and deterministic given the generator.
    counts = torch.bincount(torch.stack([mismatched_indices(torch.arange(4), g)[0] for _ in range(600)]), minlength=4)
    assert counts[0] == 0 and counts[1:].min() > 150
    a = mismatched_indices(torch.arange(6), torch.Generator().manual_seed(5))
    assert torch.equal(a, mismatched_indices(torch.arange(6), torch.Generator().manual_seed(5)))


def test_mismatched_indices_errors_when_impossible():
    with pytest.raises(ValueError, match="distinct image ids"):
        mismatched_indices(torch.tensor([3, 3, 3]))
    with pytest.raises(ValueError, match="distinct image ids"):
        mismatched_indices(torch.tensor([1]))
    with pytest.raises(ValueError, match=r"\(B,\)"):
        mismatched_indices(torch.zeros(2, 2, dtype=torch.long))


def test_interpolate_conditions():
    c = torch.arange(5.0)[:, None].expand(5, 3)
    mixed = interpolate_conditions(c, 0.5, torch.Generator().manual_seed(0))
    assert mixed.shape == c.shape and not torch.equal(mixed, c)  # every row met another row
    torch.testing.assert_close(interpolate_conditions(c, 1.0), c)
    with pytest.raises(ValueError, match="2 rows"):
        interpolate_conditions(c[:1])


def test_discriminator_learns_with_generator_fixed():
    ca, g, d = make_gan()
    gen = torch.Generator().manual_seed(1)
    text, ids = torch.randn(8, TEXT, generator=gen), torch.arange(8) // 2  # two captions per image
    real = (torch.rand(8, 3, 32, 32, generator=gen) * 2 - 1)
    with torch.no_grad():
        c, mu, _ = ca(text)
        fake = g(torch.randn(8, Z, generator=gen), c)
    wrong = mismatched_indices(ids, gen)
    opt = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    losses = []
    for _ in range(30):
        terms = discriminator_loss(d(real, mu), d(real, mu[wrong]), d(fake, mu))
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
        losses.append(terms["total"].item())
    assert losses[-1] < 0.8 * losses[0]  # 1.44 -> 0.98 here: real and fake fall, wrong needs longer
    assert terms["fake"] < 0.5 * discriminator_loss(torch.zeros(1), torch.zeros(1), torch.zeros(1))["fake"]
