"""model.channels_last: the convs' memory layout changes speed, not the model.

The same weights in the channels-last and in the plain NCHW layout give the same embeddings,
decoder logits, generated images, discriminator scores and gradients (up to float rounding), and a
state dict saved from either layout loads strictly into the other.
"""
import io

import torch

from config import ImagineConfig, LookConfig, ModelConfig
from models.lim import LIM
from training.imagine import Critic

GAN = ImagineConfig(image_size=32, c_dim=8, z_dim=6, g_width=4, d_width=4, batch_pairs=0)


def pair(depth: int = 2):
    """Two LIMs with the same weights, channels-last and plain."""
    models = {}
    for last in (True, False):
        torch.manual_seed(0)
        cfg = ModelConfig(embed_dim=16, word_dim=8, text_hidden=8, small_cnn_width=4, small_cnn_depth=depth,
                          channels_last=last)
        models[last] = LIM(cfg, LookConfig(hidden=12, word_dim=8), GAN, vocab_size=20)
    return models[True], models[False]


def batch(b: int = 5):
    g = torch.Generator().manual_seed(1)
    images = torch.randn(b, 3, 32, 32, generator=g)
    captions = torch.randint(4, 20, (b, 6), generator=g)
    return images, captions, torch.full((b,), 6)


def conv_weights(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p for p in module.parameters() if p.dim() == 4]


def test_only_the_layout_differs():
    last, plain = pair()
    assert conv_weights(last) and all(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
                                      for p in conv_weights(last))
    assert all(p.is_contiguous() for p in conv_weights(plain))
    for (name, a), (_, b) in zip(last.state_dict().items(), plain.state_dict().items()):
        assert torch.equal(a, b), name


def test_same_outputs_and_gradients():
    last, plain = pair()
    images, captions, lengths = batch()
    outs = []
    for model in (last, plain):
        torch.manual_seed(3)  # the generator's noise
        out = model(images, captions, lengths, look="xe", imagine=3)
        loss = out["img"]["grounded"].square().sum() + out["logits"].square().mean() + out["fake"].square().mean()
        loss.backward()
        outs.append(out)
    a, b = outs
    for branch in ("abstract", "grounded"):
        torch.testing.assert_close(a["img"][branch], b["img"][branch], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(a["logits"], b["logits"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(a["fake"], b["fake"], atol=1e-5, rtol=1e-4)
    for (name, p), q in zip(last.named_parameters(), plain.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-3, msg=name)
            assert p.grad.is_contiguous(memory_format=torch.channels_last) or p.dim() != 4, name


def test_state_dicts_load_across_layouts():
    last, plain = pair(depth=1)
    images, captions, lengths = batch()
    buffer = io.BytesIO()
    torch.save(last.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(5)
    fresh = LIM(ModelConfig(embed_dim=16, word_dim=8, text_hidden=8, small_cnn_width=4, small_cnn_depth=1,
                            channels_last=False), LookConfig(hidden=12, word_dim=8), GAN, vocab_size=20)
    fresh.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    assert all(p.is_contiguous() for p in conv_weights(fresh))  # the receiving model keeps its layout
    last.eval(), fresh.eval()
    torch.testing.assert_close(last.matcher(images, captions, lengths)[0]["grounded"],
                               fresh.matcher(images, captions, lengths)[0]["grounded"], atol=1e-5, rtol=1e-4)
    plain.load_state_dict(last.state_dict(), strict=True)
    last.load_state_dict(plain.state_dict(), strict=True)
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in conv_weights(last))


def test_critic_layout():
    torch.manual_seed(0)
    last = Critic(GAN, channels_last=True)
    plain = Critic(GAN)
    plain.module.load_state_dict(last.module.state_dict(), strict=True)
    weights = conv_weights(last.module)
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    cond = torch.randn(4, GAN.c_dim, generator=torch.Generator().manual_seed(3))
    last.module.eval(), plain.module.eval()
    torch.testing.assert_close(last.module(images, cond), plain.module(images, cond), atol=1e-5, rtol=1e-4)
