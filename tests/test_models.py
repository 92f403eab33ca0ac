import pytest
import torch

from config import ModelConfig
from models import ImageEncoder, Matcher, ModelError, TextEncoder


def small_cfg(**kw) -> ModelConfig:
    base = dict(embed_dim=16, word_dim=8, text_hidden=12, small_cnn_width=4)
    base.update(kw)
    return ModelConfig(**base)


def _check_embeddings(out: dict, batch: int, dim: int, measure: str) -> None:
    assert set(out) == {"abstract", "grounded"}
    for v in out.values():
        assert v.shape == (batch, dim)
        torch.testing.assert_close(v.norm(dim=1), torch.ones(batch), atol=1e-5, rtol=0)
        if measure == "order":
            assert (v >= 0).all()


def _assert_all_grads(module: torch.nn.Module) -> None:
    missing = [n for n, p in module.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not missing, missing


@pytest.mark.parametrize("arch,size", [("small_cnn", 32), ("small_cnn", 64), ("resnet18", 32), ("resnet50", 32),
                                       ("resnet152", 32), ("vgg19", 32)])
def test_image_encoder_forward_backward(arch, size):
    torch.manual_seed(0)
    enc = ImageEncoder(small_cfg(image_encoder=arch))
    out = enc(torch.randn(2, 3, size, size))
    _check_embeddings(out, 2, 16, "order")
    (out["abstract"].sum() + out["grounded"].sum()).backward()
    if arch == "small_cnn":
        _assert_all_grads(enc)
    else:  # BatchNorm/dropout corners aside, heads and the first conv must learn
        assert enc.abstract.weight.grad is not None and enc.grounded.weight.grad is not None
        first = next(p for p in enc.backbone.parameters())
        assert first.grad is not None and first.grad.abs().sum() > 0


def test_precomp_projector_and_cosine():
    enc = ImageEncoder(small_cfg(image_encoder="precomp", measure="cosine"), feature_dim=10)
    out = enc(torch.randn(3, 10))
    _check_embeddings(out, 3, 16, "cosine")
    assert (out["abstract"] < 0).any()  # no abs under cosine
    with pytest.raises(ModelError, match="precomputed"):
        ImageEncoder(small_cfg(image_encoder="precomp"))
    with pytest.raises(ModelError, match="not one of"):
        ImageEncoder(small_cfg(image_encoder="resnet9000"))


def test_frozen_backbone_gets_no_grad_and_stays_in_eval():
    enc = ImageEncoder(small_cfg(image_encoder="resnet18", finetune=False)).train()
    assert not enc.backbone.training and enc.abstract.training
    out = enc(torch.randn(2, 3, 32, 32))
    out["abstract"].sum().backward()
    assert all(p.grad is None for p in enc.backbone.parameters())
    assert enc.abstract.weight.grad is not None


def test_cnn_weights_from_local_file_only(tmp_path):
    import torchvision

    src = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(src.state_dict(), path)
    enc = ImageEncoder(small_cfg(image_encoder="resnet18", cnn_weights=str(path)))
    torch.testing.assert_close(enc.backbone.conv1.weight, src.conv1.weight)
    with pytest.raises(ModelError, match="does not fit resnet34"):
        ImageEncoder(small_cfg(image_encoder="resnet34", cnn_weights=str(path)))
    with pytest.raises(ModelError, match="not found"):
        ImageEncoder(small_cfg(image_encoder="resnet18", cnn_weights=str(tmp_path / "none.pth")))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ModelError, match="junk.pth"):
        ImageEncoder(small_cfg(image_encoder="resnet18", cnn_weights=str(tmp_path / "junk.pth")))


@pytest.mark.parametrize("measure", ["order", "cosine"])
def test_text_encoder_padding_invariance_and_grads(measure):
    torch.manual_seed(0)
    enc = TextEncoder(small_cfg(measure=measure), vocab_size=20)
    caps = torch.tensor([[1, 5, 6, 2, 0, 0], [1, 7, 8, 9, 10, 2]])
    lengths = torch.tensor([4, 6])
    out = enc(caps, lengths)
    _check_embeddings(out, 2, 16, measure)
    alone = enc(caps[:1, :4], lengths[:1])  # the padding must not change the first caption's embedding
    for k in out:
        torch.testing.assert_close(out[k][:1], alone[k], atol=1e-5, rtol=1e-5)
    (out["abstract"].sum() + out["grounded"].sum()).backward()
    grads = {n: p.grad for n, p in enc.named_parameters()}
    assert all(g is not None for g in grads.values())
    assert grads["words.weight"][0].abs().sum() == 0  # <pad> gets no gradient


def test_matcher_similarity_is_weighted_sum_of_branches():
    torch.manual_seed(0)
    m = Matcher(small_cfg(abstract_weight=0.3, grounded_weight=0.7), vocab_size=20)
    img, cap = m(torch.randn(3, 3, 32, 32), torch.randint(3, 20, (4, 5)), torch.tensor([5, 4, 3, 5]))
    s = m.similarity(img, cap)
    assert s.shape == (3, 4)

    def order(i, c):
        return -(c[None] - i[:, None]).clamp(min=0).pow(2).sum(-1)

    want = 0.3 * order(img["abstract"], cap["abstract"]) + 0.7 * order(img["grounded"], cap["grounded"])
    torch.testing.assert_close(s, want)


def test_small_cnn_depth_adds_stride_one_convs():
    from models.image_encoder import SmallCNN

    shallow, deep = SmallCNN(4, depth=1), SmallCNN(4, depth=2)
    convs = lambda m: [c for c in m.features if isinstance(c, torch.nn.Conv2d)]  # noqa: E731
    assert len(convs(shallow)) == 4 and len(convs(deep)) == 8
    assert [c.stride[0] for c in convs(deep)] == [2, 1] * 4
    x = torch.randn(2, 3, 64, 64)
    assert deep(x).shape == shallow(x).shape == (2, 32 * 16)
    enc = ImageEncoder(small_cfg(small_cnn_depth=2))
    out = enc(x)
    (out["abstract"].sum() + out["grounded"].sum()).backward()
    _assert_all_grads(enc)
    with pytest.raises(ModelError, match="small_cnn_depth"):
        SmallCNN(4, depth=0)
