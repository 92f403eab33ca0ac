"""Image-caption similarity measures: ``cosine`` and Vendrov's ``order`` (docs/DESIGN.md section 2).

``order`` is the negated squared order violation of Vendrov et al. (arXiv 1511.06361), with the
caption as the more general side::

    S(i, c) = -sum_d max(0, c_d - i_d) ** 2

It has no matrix-product form, so a naive broadcast would build an ``(n_images, n_captions, D)``
tensor (5K x 25K x 1024 floats is 512 GB). Two implementations avoid that:

- a chunked torch path with a hand-written backward (:class:`_OrderSimilarity`), on any device,
  with autograd, whose ``(chunk, chunk, D)`` temporaries each stay within ``chunk_bytes``;
- a numba kernel for evaluation on CPU that allocates only the output and is two orders of
  magnitude faster than a chunked broadcast (``benchmarks/bench_order_similarity.py``).

:func:`similarity` picks the numba kernels (forward, and a numba backward when a gradient is needed)
for float32/float64 CPU tensors, and the torch path otherwise (CUDA, or numba not installed).
"""
from __future__ import annotations

import math
import os
from typing import Optional

import numpy as np
import torch
from torch.autograd.function import FunctionCtx, once_differentiable

from config import MEASURES

try:
    import numba
except ImportError:  # numba is optional: the torch path computes the same numbers, only slower
    numba = None
else:
    # Under GNU OpenMP (numba's first choice where present) a forked child that runs a parallel
    # kernel is terminated; prefer a fork-safe layer (tbb, else workqueue) unless the user chose one.
    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER = "forksafe"

BACKENDS = ("auto", "torch", "numba")
DEFAULT_CHUNK_BYTES = 64 * 2**20  # temporaries of the torch order path stay below about this


def numba_available() -> bool:
    """Whether the fast CPU order kernel can be used."""
    return numba is not None


def similarity(
    images: torch.Tensor,
    captions: torch.Tensor,
    measure: str = "order",
    *,
    backend: str = "auto",
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> torch.Tensor:
    """Score every image against every caption.

    Args:
        images: ``(n_images, D)`` image embeddings.
        captions: ``(n_captions, D)`` caption embeddings, same dtype and device.
            ``cosine`` expects both l2-normalised; ``order`` expects non-negative embeddings
            (the encoders take the absolute value under that measure).
        measure: ``"order"`` (``-||max(0, c - i)||^2``) or ``"cosine"`` (``i . c``).
        backend: ``"auto"`` uses the numba kernels for ``order`` when the inputs are
            float32/float64 CPU tensors (with a numba backward when a gradient is needed), else
            torch; ``"torch"`` / ``"numba"`` force one (forcing numba raises if it cannot run).
        chunk_bytes: bound on each ``(chunk, chunk, D)`` temporary of the torch ``order`` path,
            forward and backward (a few are alive at once).

    Returns:
        ``(n_images, n_captions)`` scores, higher is more similar, in the inputs' dtype.
    """
    _check_inputs(images, captions, measure, backend)
    if measure == "cosine":
        return images @ captions.T  # (N, M)
    needs_grad = torch.is_grad_enabled() and (images.requires_grad or captions.requires_grad)
    if backend == "numba" and not _numba_supports(images):
        raise ValueError("backend='numba' needs float32/float64 CPU tensors and numba installed")
    if backend in ("auto", "numba") and _numba_supports(images):
        return _OrderSimilarityNumba.apply(images, captions) if needs_grad else order_similarity_numba(images, captions)
    return _OrderSimilarity.apply(images, captions, chunk_bytes)


def _check_inputs(images: torch.Tensor, captions: torch.Tensor, measure: str, backend: str) -> None:
    if measure not in MEASURES:
        raise ValueError(f"measure {measure!r} is not one of {', '.join(MEASURES)}")
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if images.dim() != 2 or captions.dim() != 2:
        raise ValueError(f"images and captions must be 2-D (n, D); got shapes {tuple(images.shape)} "
                         f"and {tuple(captions.shape)}")
    if images.shape[1] != captions.shape[1]:
        raise ValueError(f"images and captions must have the same embedding size; got "
                         f"{images.shape[1]} and {captions.shape[1]}")
    if images.dtype != captions.dtype or images.device != captions.device:
        raise ValueError(f"images and captions must share dtype and device; got {images.dtype} on "
                         f"{images.device} and {captions.dtype} on {captions.device}")


def _numba_supports(x: torch.Tensor) -> bool:
    return numba is not None and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)


def _chunks(n_images: int, n_captions: int, row_bytes: int, chunk_bytes: int) -> tuple[int, int]:
    """(images per chunk, captions per chunk) so one ``(ci, cc, D)`` temporary fits in chunk_bytes.

    Chunks are taken over images first; captions are split only when a single image row against
    every caption is already over budget (e.g. one image against a 25K-caption gallery).
    """
    per_caption = max(1, chunk_bytes // max(1, row_bytes))  # captions that fit against one image
    cc = max(1, min(n_captions, per_caption))
    ci = max(1, min(n_images, chunk_bytes // max(1, cc * row_bytes)))
    return ci, cc


class _OrderSimilarity(torch.autograd.Function):
    """Chunked order similarity whose backward recomputes the violations chunk by chunk.

    Autograd through a chunked broadcast would keep every chunk's ``(ci, cc, D)`` intermediates
    alive until backward, i.e. the whole ``(N, M, D)`` tensor; here only the inputs are saved.
    With ``R = max(0, c - i)``: ``dS/di = 2 R`` and ``dS/dc = -2 R``.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, images: torch.Tensor, captions: torch.Tensor, chunk_bytes: int) -> torch.Tensor:
        n, m = images.shape[0], captions.shape[0]
        ci, cc = _chunks(n, m, images.shape[1] * images.element_size(), chunk_bytes)
        out = images.new_empty((n, m))  # (N, M)
        for a in range(0, n, ci):
            for b in range(0, m, cc):
                viol = captions[None, b:b + cc] - images[a:a + ci, None]  # (ci, cc, D)
                out[a:a + ci, b:b + cc] = viol.clamp_(min=0).square_().sum(-1).neg_()
        ctx.save_for_backward(images, captions)
        ctx.chunks = (ci, cc)
        return out

    @staticmethod
    @once_differentiable
    def backward(
        ctx: FunctionCtx, grad_out: torch.Tensor
    ) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor], None]:
        images, captions = ctx.saved_tensors
        ci, cc = ctx.chunks
        need_i, need_c = ctx.needs_input_grad[:2]
        grad_i = torch.zeros_like(images) if need_i else None  # (N, D)
        grad_c = torch.zeros_like(captions) if need_c else None  # (M, D)
        for a in range(0, images.shape[0], ci):
            for b in range(0, captions.shape[0], cc):
                viol = (captions[None, b:b + cc] - images[a:a + ci, None]).clamp_(min=0)  # (ci, cc, D)
                g = grad_out[a:a + ci, b:b + cc]  # (ci, cc)
                if need_i:
                    grad_i[a:a + ci] += 2 * torch.bmm(g[:, None, :], viol).squeeze(1)  # (ci, D)
                if need_c:
                    grad_c[b:b + cc] -= 2 * torch.einsum("ij,ijd->jd", g, viol)  # (cc, D)
        return grad_i, grad_c, None


class _OrderSimilarityNumba(torch.autograd.Function):
    """Order similarity on CPU with numba kernels forward and backward (training batches).

    Same gradient as :class:`_OrderSimilarity`, with no temporaries beyond the outputs: about 5x
    faster than the torch path on a 128 x 128 x 512 batch.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, images: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(images, captions)
        return order_similarity_numba(images, captions)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_out: torch.Tensor) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        images, captions = ctx.saved_tensors
        im = np.ascontiguousarray(images.detach().numpy())  # (N, D)
        cap = np.ascontiguousarray(captions.detach().numpy())  # (M, D)
        g = np.ascontiguousarray(grad_out.detach().numpy().astype(im.dtype, copy=False))  # (N, M)
        need_i, need_c = ctx.needs_input_grad[:2]
        grad_i = torch.from_numpy(_order_grad_images(im, cap, g)) if need_i else None
        grad_c = torch.from_numpy(_order_grad_captions(im, cap, g)) if need_c else None
        return grad_i, grad_c


def order_similarity_numba(images: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
    """Order similarity of CPU float32/float64 tensors with the numba kernel (no autograd).

    Extra memory is the ``(N, M)`` output only (plus contiguous copies of non-contiguous inputs).
    """
    return torch.from_numpy(order_similarity_array(images.detach().numpy(), captions.detach().numpy()))


def order_similarity_array(images: np.ndarray, captions: np.ndarray) -> np.ndarray:
    """:func:`order_similarity_numba` on numpy arrays (read-only ones too, such as memory maps)."""
    if numba is None:
        raise RuntimeError("numba is not installed (pip install numba)")
    im = np.ascontiguousarray(images)  # (N, D)
    cap = np.ascontiguousarray(captions)  # (M, D)
    out = np.empty((im.shape[0], cap.shape[0]), dtype=im.dtype)  # (N, M)
    if out.size:
        # Caption tiles of ~128 KB stay in L2 while a tile of images streams over them; image tiles
        # are the parallel unit, small enough to give every thread several.
        cap_tile = max(1, (128 * 1024) // max(1, cap.shape[1] * cap.itemsize))
        threads = numba.get_num_threads()
        im_tile = max(1, min(64, math.ceil(im.shape[0] / (4 * threads))))
        _order_kernel(im, cap, out, im_tile, cap_tile)
    return out


if numba is not None:

    @numba.njit(fastmath=True, cache=True)
    def _order_tile(images, captions, out, i0, i1, cap_tile):
        """Rows ``i0:i1`` of the output, caption tile by caption tile."""
        # The inner loop runs over d, contiguous in both rows, so LLVM vectorises it (max + fma).
        m, d = captions.shape
        zero = out.dtype.type(0)
        for c0 in range(0, m, cap_tile):
            c1 = min(c0 + cap_tile, m)
            for i in range(i0, i1):
                for c in range(c0, c1):
                    acc = zero
                    for k in range(d):
                        v = max(captions[c, k] - images[i, k], zero)
                        acc += v * v
                    out[i, c] = -acc

    @numba.njit(parallel=True, cache=True)
    def _order_kernel(images, captions, out, im_tile, cap_tile):
        """Fill ``out`` (N, M) with the order similarity, image tiles in parallel."""
        # The tile is its own function: inlined into the prange body it was not vectorised.
        n = images.shape[0]
        for t in numba.prange((n + im_tile - 1) // im_tile):
            i0 = t * im_tile
            _order_tile(images, captions, out, i0, min(i0 + im_tile, n), cap_tile)

    @numba.njit(parallel=True, fastmath=True, cache=True)
    def _order_grad_rows(rows, others, weights):
        """``out[r] = 2 sum_o weights[r, o] max(0, others[o] - rows[r])``, rows in parallel."""
        n, d = rows.shape
        out = np.zeros_like(rows)  # (R, D)
        for r in numba.prange(n):
            for o in range(others.shape[0]):
                g = 2 * weights[r, o]
                if g != 0:
                    for k in range(d):
                        v = others[o, k] - rows[r, k]
                        if v > 0:
                            out[r, k] += g * v
        return out


def _order_grad_images(images: np.ndarray, captions: np.ndarray, grad_out: np.ndarray) -> np.ndarray:
    """``dL/di[i] = 2 sum_c g[i, c] max(0, c - i)``: ``(N, D)``."""
    return _order_grad_rows(images, captions, grad_out)


def _order_grad_captions(images: np.ndarray, captions: np.ndarray, grad_out: np.ndarray) -> np.ndarray:
    """``dL/dc[c] = -2 sum_i g[i, c] max(0, c - i)``: ``(M, D)``.

    ``max(0, c - i) = max(0, (-i) - (-c))``, so it is the image kernel on negated, swapped inputs.
    """
    return -_order_grad_rows(-captions, -images, np.ascontiguousarray(grad_out.T))


def paired_similarity(images: torch.Tensor, captions: torch.Tensor, measure: str = "order") -> torch.Tensor:
    """``(P,)`` scores of aligned rows, ``s(images[p], captions[p])``: the diagonal of
    :func:`similarity` without the ``P x P`` matrix."""
    if images.shape != captions.shape or images.dim() != 2:
        raise ValueError(f"need two (P, D) tensors of one shape, got {tuple(images.shape)} and {tuple(captions.shape)}")
    if measure == "order":
        return -(captions - images).clamp(min=0).pow(2).sum(dim=1)
    if measure == "cosine":
        return (images * captions).sum(dim=1)
    raise ValueError(f"measure {measure!r} is not one of {', '.join(MEASURES)}")
