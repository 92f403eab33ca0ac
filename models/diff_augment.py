"""Differentiable augmentation for the discriminator (DiffAugment, Zhao et al. 2020, arXiv 2006.10738).

Every image the discriminator sees, real or generated, in its own update and in the generator's, goes
through the same kind of random, differentiable transform, so D cannot memorise a small training set
and G still gets gradients through the transform. Policies:

- ``translation``: shift by up to 1/8 of the side in each direction, zero-filled;
- ``cutout``: zero one square of half the side at a random place.

No colour policy: the captions name colours, and a colour jitter would teach D that a red circle
may be orange. :meth:`DiffAugment.draw` picks the parameters for a batch and :meth:`DiffAugment.apply`
applies them, so the images of one pair (a real image, the same image with a wrong caption, the image
generated from its caption) can share one transform.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from config import DIFF_AUGMENT

POLICIES = DIFF_AUGMENT  # the config keeps the list (imagine.diff_augment is checked against it)
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def parse_policy(text: str) -> tuple[str, ...]:
    """``"translation,cutout"`` -> ``("translation", "cutout")``; empty -> ``()``."""
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [p for p in names if p not in POLICIES]
    if bad:
        raise ValueError(f"unknown DiffAugment policy {bad[0]!r}: one of {', '.join(POLICIES)}")
    return names


class DiffAugment:
    """A DiffAugment policy; ``bool(self)`` is false when it has nothing to do."""

    def __init__(self, policy: Sequence[str] | str = ()):
        self.policy = parse_policy(policy) if isinstance(policy, str) else tuple(policy)

    def __bool__(self) -> bool:
        return bool(self.policy)

    def draw(self, n: int, size: int, device: torch.device = torch.device("cpu"),
             generator: Optional[torch.Generator] = None) -> dict:
        """Random parameters for ``n`` images of side ``size``: integer shifts and cutout corners."""
        params = {}
        if "translation" in self.policy:
            s = max(int(size * TRANSLATION_RATIO + 0.5), 1)
            params["shift"] = torch.randint(-s, s + 1, (n, 2), generator=generator).to(device)
        if "cutout" in self.policy:
            side = max(int(size * CUTOUT_RATIO + 0.5), 1)
            params["cutout"] = torch.randint(0, size - side + 1, (n, 2), generator=generator).to(device)
            params["cutout_side"] = side
        return params

    def apply(self, x: torch.Tensor, params: dict) -> torch.Tensor:
        """``x (n, C, S, S)`` transformed by ``params`` (from :meth:`draw` for ``n`` images of side ``S``)."""
        if "shift" in params:
            x = translate(x, params["shift"])
        if "cutout" in params:
            x = cutout(x, params["cutout"], params["cutout_side"])
        return x

    def __call__(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``x`` with freshly drawn parameters (the identity without a policy)."""
        if not self.policy:
            return x
        return self.apply(x, self.draw(len(x), x.shape[-1], x.device, generator))


def translate(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Each image moved by ``shift[i] = (dy, dx)`` pixels, what comes in is zero: ``out[y, x] = in[y - dy, x - dx]``."""
    n, _, h, w = x.shape
    rows = torch.arange(h, device=x.device)[None, :] - shift[:, :1]  # (n, h) source rows
    cols = torch.arange(w, device=x.device)[None, :] - shift[:, 1:]  # (n, w)
    padded = F.pad(x, (1, 1, 1, 1))  # index 0 and the last are zeros
    rows = (rows.clamp(-1, h) + 1)[:, None, :, None].expand(-1, x.shape[1], -1, w + 2)
    out = padded.gather(2, rows)  # (n, C, h, w + 2)
    cols = (cols.clamp(-1, w) + 1)[:, None, None, :].expand(-1, x.shape[1], h, -1)
    return out.gather(3, cols)


def cutout(x: torch.Tensor, corner: torch.Tensor, side: int) -> torch.Tensor:
    """Each image with the ``side`` x ``side`` square at ``corner[i] = (top, left)`` set to zero."""
    h, w = x.shape[-2:]
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    in_y = (ys >= corner[:, :1]) & (ys < corner[:, :1] + side)  # (n, h)
    in_x = (xs >= corner[:, 1:]) & (xs < corner[:, 1:] + side)  # (n, w)
    keep = ~(in_y[:, :, None] & in_x[:, None, :])  # (n, h, w)
    return x * keep[:, None].to(x.dtype)
