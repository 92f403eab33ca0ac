"""Source-agnostic records: one split of an image-caption dataset.

Every dataset kind (Shapes, Karpathy JSON, precomputed npy/txt, HDF5) is turned into a
:class:`Split`: an :class:`ImageSource` (pixels or feature vectors, read lazily) plus the raw
caption strings of each image. Everything downstream (vocabulary, torch datasets, checks,
evaluation) works on this one shape.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

import numpy as np
from PIL import Image


class DataError(ValueError):
    """A problem with the user's data; the message names the file, line or key."""


class ImageSource:
    """Random access to the images of one split.

    ``kind`` is ``"pixels"`` (``load`` returns an RGB ``PIL.Image``) or ``"features"``
    (``load`` returns a float32 vector).
    """

    kind: str = "pixels"

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> Union[Image.Image, np.ndarray]:
        raise NotImplementedError

    def describe(self, index: int) -> str:
        """Human-readable location of image ``index`` (a path, or file and row)."""
        return f"image {index}"

    @property
    def feature_dim(self) -> int:
        raise TypeError("pixel sources have no feature dimension")


class ArrayImages(ImageSource):
    """Images held in memory as a uint8 array ``(N, H, W, 3)`` (the built-in Shapes set)."""

    def __init__(self, array: np.ndarray, name: str = "array"):
        if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
            raise ValueError(f"expected uint8 (N, H, W, 3), got {array.dtype} {array.shape}")
        self.array = array
        self.name = name

    def __len__(self) -> int:
        return len(self.array)

    def load(self, index: int) -> Image.Image:
        return Image.fromarray(self.array[index], mode="RGB")

    def describe(self, index: int) -> str:
        return f"{self.name}[{index}]"


@dataclass
class Split:
    """One split: ``captions[i]`` holds the raw caption strings of image ``i``."""

    name: str
    images: ImageSource
    captions: list[list[str]]
    source: str = ""
    # Counts from normalising to a fixed number of captions per image (see fix_captions_per_image).
    truncated: int = 0
    padded: int = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.images) != len(self.captions):
            raise DataError(
                f"{self.source or self.name}: {len(self.images)} images but captions for "
                f"{len(self.captions)} images"
            )

    @property
    def num_images(self) -> int:
        return len(self.captions)

    @property
    def num_captions(self) -> int:
        return sum(len(c) for c in self.captions)

    def flat_captions(self) -> list[str]:
        """All captions in protocol order: caption k belongs to image k // captions_per_image."""
        return [c for caps in self.captions for c in caps]


def fix_captions_per_image(captions: list[list[str]], k: int) -> tuple[list[list[str]], int, int]:
    """Truncate or pad each image's captions to exactly ``k``, as the retrieval protocol expects.

    Padding repeats the image's own captions cyclically (COCO has a few images with 6-7
    captions and none with fewer than 5; custom sets may). Returns ``(fixed, n_truncated,
    n_padded)`` counted in images. An image with no caption at all is an error of the caller.
    """
    fixed, truncated, padded = [], 0, 0
    for caps in captions:
        if len(caps) > k:
            truncated += 1
            caps = caps[:k]
        elif len(caps) < k:
            padded += 1
            caps = [caps[j % len(caps)] for j in range(k)]
        fixed.append(list(caps))
    return fixed, truncated, padded
