"""What a person sees in the generator's Shapes pictures, measured without a person.

For every caption "a large <colour> <shape>" (8 colours x 5 shapes) the generator draws a few
images. In each, the foreground is every pixel far from Shapes' background grey; the dominant
colour is the palette colour nearest to most foreground pixels, and the objects are the connected
foreground regions between a minimum and a maximum area. The probe reports how often the named colour dominates and
how often there is exactly one object. Real Shapes images of one object score 100% on both
(tests/test_probe.py), which is what makes the figures mean something.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from data.shapes import BACKGROUND, COLOUR_RGB, COLOURS, SHAPES

from .sampling import imagine, to_uint8

FOREGROUND_DISTANCE = 60.0  # RGB distance from the background above which a pixel is foreground
MIN_OBJECT_AREA = 0.005  # of the image's pixels: smaller regions are specks, not objects
MAX_OBJECT_AREA = 0.5  # a region covering more is a wash of colour, not an object (a large one covers ~10%)


def classify(images: np.ndarray) -> list[tuple[Optional[str], int]]:
    """``(N, H, W, 3)`` uint8 -> per image ``(dominant colour or None, number of objects)``."""
    from scipy import ndimage

    palette = np.array([COLOUR_RGB[c] for c in COLOURS], dtype=np.float32)  # (K, 3)
    background = np.array(BACKGROUND, dtype=np.float32)
    out = []
    for image in images.astype(np.float32):
        mask = np.linalg.norm(image - background, axis=-1) > FOREGROUND_DISTANCE  # (H, W)
        if not mask.any():
            out.append((None, 0))
            continue
        pixels = image[mask]  # (P, 3)
        nearest = np.linalg.norm(pixels[:, None] - palette[None], axis=-1).argmin(1)  # (P,)
        dominant = COLOURS[int(np.bincount(nearest, minlength=len(COLOURS)).argmax())]
        labels, n = ndimage.label(mask)
        areas = np.bincount(labels.ravel())[1:]  # (n,)
        objects = (areas >= MIN_OBJECT_AREA * mask.size) & (areas <= MAX_OBJECT_AREA * mask.size)
        out.append((dominant, int(objects.sum())))
    return out


def prompts() -> list[tuple[str, str, str]]:
    """``(caption, colour, shape)`` for every "a large <colour> <shape>"."""
    return [(f"a large {c} {s}", c, s) for c in COLOURS for s in SHAPES]


def probe_images(images: np.ndarray, colours: list[str]) -> dict:
    """The probe's figures for ``images (N, H, W, 3)`` uint8 meant to show one object of ``colours[i]``."""
    found = classify(images)
    right = [d == c for (d, _), c in zip(found, colours)]
    one = [n == 1 for _, n in found]
    per_colour = {c: round(100 * float(np.mean([r for r, k in zip(right, colours) if k == c])), 1)
                  for c in dict.fromkeys(colours)}
    return {"colour_dominant": round(100 * float(np.mean(right)), 1), "one_object": round(100 * float(np.mean(one)), 1),
            "mean_objects": round(float(np.mean([n for _, n in found])), 2), "colour_dominant_by_colour": per_colour,
            "images": len(found)}


@torch.no_grad()
def probe_generator(model, vocab, cfg, device: torch.device, per_prompt: int = 4, seed: int = 0) -> dict:
    """Draw ``per_prompt`` images for each of the 40 captions and measure them (:func:`probe_images`)."""
    rows = prompts()
    images = imagine(model, [p for p, _, _ in rows], vocab, per_prompt, seed, device, cfg.data.max_caption_len)
    colours = [c for _, c, _ in rows for _ in range(per_prompt)]
    return {**probe_images(to_uint8(images), colours), "captions": len(rows), "per_caption": per_prompt, "seed": seed}
