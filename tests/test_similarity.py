"""Similarity measures against naive per-pair loops; fast paths against each other."""
import pytest
import torch

from models.similarity import numba_available, similarity

needs_numba = pytest.mark.skipif(not numba_available(), reason="numba is not installed")


def embeddings(n: int, d: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    """Non-negative unit rows, as the encoders produce under the order measure."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype).abs()
    return x / x.norm(dim=1, keepdim=True)


def naive(images: torch.Tensor, captions: torch.Tensor, measure: str) -> torch.Tensor:
    out = torch.empty(len(images), len(captions), dtype=images.dtype)
    for i, im in enumerate(images):
        for j, cap in enumerate(captions):
            out[i, j] = im @ cap if measure == "cosine" else -((cap - im).clamp(min=0) ** 2).sum()
    return out


def broadcast_order(images: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
    return -(captions[None] - images[:, None]).clamp(min=0).pow(2).sum(-1)


@pytest.mark.parametrize("measure", ["order", "cosine"])
@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_matches_per_pair_loop(measure, backend):
    im, cap = embeddings(7, 13, 0), embeddings(11, 13, 1)
    got = similarity(im, cap, measure, backend=backend)
    assert got.shape == (7, 11) and got.dtype == torch.float64
    torch.testing.assert_close(got, naive(im, cap, measure), rtol=0, atol=1e-12)


def test_order_is_asymmetric_and_zero_when_image_dominates():
    cap = torch.tensor([[0.2, 0.1, 0.0]])
    im = torch.tensor([[0.5, 0.3, 0.1]])  # image >= caption everywhere: no violation
    assert similarity(im, cap, "order").item() == 0.0
    assert similarity(cap, im, "order").item() == pytest.approx(-(0.3**2 + 0.2**2 + 0.1**2))


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numba_equals_torch(dtype):
    im, cap = embeddings(70, 300, 2, dtype), embeddings(130, 300, 3, dtype)
    fast = similarity(im, cap, "order", backend="numba")
    slow = similarity(im, cap, "order", backend="torch")
    assert fast.dtype == dtype
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-5 if dtype == torch.float32 else 1e-12)


@needs_numba
def test_numba_handles_non_contiguous_and_empty_inputs():
    im, cap = embeddings(9, 5, 4), embeddings(6, 5, 5)
    got = similarity(im.T.contiguous().T, cap[::2], "order", backend="numba")
    torch.testing.assert_close(got, naive(im, cap[::2], "order"), rtol=0, atol=1e-12)
    assert similarity(im[:0], cap, "order", backend="numba").shape == (0, 6)


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numba_gradient_equals_autograd_of_broadcast(dtype):
    im, cap = embeddings(13, 40, 6, dtype).requires_grad_(), embeddings(17, 40, 7, dtype).requires_grad_()
    upstream = torch.randn(13, 17, generator=torch.Generator().manual_seed(5), dtype=dtype)
    upstream[0, :] = 0  # zero upstream entries are skipped by the kernel
    got = similarity(im, cap, "order", backend="numba")
    g_im, g_cap = torch.autograd.grad((got * upstream).sum(), (im, cap))
    r_im, r_cap = torch.autograd.grad((broadcast_order(im, cap) * upstream).sum(), (im, cap))
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(g_im, r_im, rtol=0, atol=tol)
    torch.testing.assert_close(g_cap, r_cap, rtol=0, atol=tol)
    cap.requires_grad_(False)  # gradient for one input only
    (g_only,) = torch.autograd.grad((similarity(im, cap, "order", backend="numba") * upstream).sum(), (im,))
    torch.testing.assert_close(g_only, r_im, rtol=0, atol=tol)


def test_auto_keeps_autograd_when_needed():
    im, cap = embeddings(4, 6, 8).requires_grad_(), embeddings(5, 6, 9)
    assert similarity(im, cap, "order").grad_fn is not None
    with torch.no_grad():
        assert similarity(im, cap, "order").grad_fn is None


@pytest.mark.parametrize("chunk_bytes", [1, 3 * 8 * 8, 2**26])
def test_order_gradient_equals_autograd_of_broadcast(chunk_bytes):
    im, cap = embeddings(6, 8, 10).requires_grad_(), embeddings(9, 8, 11).requires_grad_()
    upstream = torch.randn(6, 9, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    got = similarity(im, cap, "order", backend="torch", chunk_bytes=chunk_bytes)
    g_im, g_cap = torch.autograd.grad((got * upstream).sum(), (im, cap))
    ref = broadcast_order(im, cap)
    r_im, r_cap = torch.autograd.grad((ref * upstream).sum(), (im, cap))
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(g_im, r_im, rtol=0, atol=1e-12)
    torch.testing.assert_close(g_cap, r_cap, rtol=0, atol=1e-12)


def test_order_gradcheck_with_one_side_requiring_grad():
    im, cap = embeddings(3, 4, 13), embeddings(5, 4, 14).requires_grad_()
    assert torch.autograd.gradcheck(lambda c: similarity(im, c, "order", chunk_bytes=40), (cap,))
    assert torch.autograd.gradcheck(lambda i: similarity(i, cap.detach(), "order", chunk_bytes=40),
                                    (im.clone().requires_grad_(),))


@pytest.mark.parametrize("chunk_bytes", [1, 5 * 7 * 4, 12345])
def test_chunking_does_not_change_results(chunk_bytes):
    im, cap = embeddings(17, 7, 15, torch.float32), embeddings(23, 7, 16, torch.float32)
    whole = similarity(im, cap, "order", backend="torch", chunk_bytes=2**30)
    chunked = similarity(im, cap, "order", backend="torch", chunk_bytes=chunk_bytes)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-6)


@pytest.mark.parametrize("images, captions, message", [
    (torch.zeros(3), torch.zeros(2, 3), "2-D"),
    (torch.zeros(2, 3), torch.zeros(2, 4), "same embedding size"),
    (torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.float64), "dtype"),
])
def test_bad_inputs_raise(images, captions, message):
    with pytest.raises(ValueError, match=message):
        similarity(images, captions, "order")


def test_unknown_measure_or_backend_raises():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="measure"):
        similarity(x, x, "euclidean")
    with pytest.raises(ValueError, match="backend"):
        similarity(x, x, "order", backend="cuda")
