"""Torch datasets over a :class:`Split`, image transforms and the padding collate."""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as T

from config import DataConfig

from .records import ArrayImages, ImageSource, Split
from .vocab import Vocabulary

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageTransform:
    """PIL RGB -> normalised float tensor (3, S, S); S = ``cfg.image_size``.

    Resize the shorter side to ``cfg.resize`` (default S), then a random crop (train, when
    ``augment``) or a centre crop; flips only when ``flip`` is set. In-memory arrays that are
    already S x S and need no augmentation skip PIL: they travel as uint8 and the collate
    normalises the whole batch at once (several times faster for Shapes).
    """

    def __init__(self, cfg: DataConfig, train: bool):
        self.size = cfg.image_size
        self.random = train and cfg.augment
        self.resize = T.Resize(cfg.resize or self.size)
        # The random (or centre) crop and the flip: on PIL images or on uint8 tensors alike, drawing
        # the same random numbers either way.
        self.cut = [(T.RandomCrop if self.random else T.CenterCrop)(self.size)]
        if self.random and cfg.flip:
            self.cut.append(T.RandomHorizontalFlip())
        self.pil = T.Compose([self.resize, *self.cut, T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
        self.needs_pil = bool(cfg.resize and cfg.resize != self.size)

    def __call__(self, img) -> torch.Tensor:
        return self.pil(img)

    def cut_resized(self, array: np.ndarray) -> torch.Tensor:
        """An already resized uint8 ``(H, W, 3)`` array -> uint8 ``(3, S, S)``, cropped (and flipped) as
        :meth:`__call__` would; the collate normalises it."""
        image = torch.from_numpy(array).permute(2, 0, 1)
        for step in self.cut:
            image = step(image)
        return image.contiguous()

    def passes_through(self, shape: tuple) -> bool:
        """Whether an (H, W, 3) uint8 array can skip PIL and be normalised in the collate."""
        return not self.random and not self.needs_pil and shape[:2] == (self.size, self.size)


def image_transform(cfg: DataConfig, train: bool) -> ImageTransform:
    return ImageTransform(cfg, train)


def normalize_uint8(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` uint8 -> normalised float, as ``ImageTransform`` would have made it."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


def _stack_images(images) -> torch.Tensor:
    batch = torch.stack(images)
    return normalize_uint8(batch) if batch.dtype == torch.uint8 else batch


def denormalize(images: torch.Tensor) -> torch.Tensor:
    """Inverse of the normalisation, clamped to [0, 1] (for saving image grids)."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(-1, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(-1, 1, 1)
    return (images * std + mean).clamp(0, 1)


class ResizedImages(ImageSource):
    """A pixel source's images decoded once and resized as ``transform`` resizes them, held as uint8
    ``(H, W, 3)`` arrays (:func:`cache_resized`); ``transform`` then only crops and flips them."""

    def __init__(self, source: ImageSource, transform: ImageTransform, arrays: list[np.ndarray]):
        self.source, self.transform, self.arrays = source, transform, arrays

    def __len__(self) -> int:
        return len(self.arrays)

    def load(self, index: int) -> Image.Image:
        return Image.fromarray(self.arrays[index], mode="RGB")  # resizing it again changes nothing

    def describe(self, index: int) -> str:
        return self.source.describe(index)


def cache_resized(split: Split, cfg: DataConfig, log: Callable[[str], None] = print) -> Split:
    """``split`` with its image files decoded and resized once into memory (training's random crops
    then cost a slice), when they fit in ``cfg.cache_mb``; otherwise (or for in-memory arrays and
    features) ``split`` itself. The size is estimated from the first image."""
    source = split.images
    if cfg.cache_mb <= 0 or source.kind != "pixels" or isinstance(source, (ArrayImages, ResizedImages)) \
            or not len(source):
        return split
    transform = image_transform(cfg, train=True)
    first = np.array(transform.resize(source.load(0)))
    megabytes = first.nbytes * len(source) / 2 ** 20
    if megabytes > cfg.cache_mb:
        log(f"note: the {split.name} images would take about {megabytes:,.0f} MB decoded, over data.cache_mb="
            f"{cfg.cache_mb}: decoding them from their files every epoch")
        return split
    arrays = [first] + [np.array(transform.resize(source.load(i))) for i in range(1, len(source))]
    return replace(split, images=ResizedImages(source, transform, arrays))


def _image_tensor(split: Split, index: int, transform: Optional[Callable]) -> torch.Tensor:
    source = split.images
    if isinstance(source, ResizedImages) and isinstance(transform, ImageTransform) \
            and transform.resize.size == source.transform.resize.size:
        return transform.cut_resized(source.arrays[index])  # uint8 (3, S, S)
    if isinstance(source, ArrayImages) and isinstance(transform, ImageTransform):
        if transform.passes_through(source.array.shape[1:]):
            return torch.from_numpy(np.ascontiguousarray(source.array[index].transpose(2, 0, 1)))  # uint8 (3, S, S)
    item = source.load(index)
    if isinstance(item, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(item, dtype=np.float32))  # (D,)
    return transform(item)  # (3, S, S)


class PairDataset(Dataset):
    """One item per caption: ``(image, caption_ids, image_index, caption_index)``.

    Caption ``j`` of the flat list belongs to image ``j // captions_per_image``, the protocol's
    order; an optional ``caption_indices`` restricts the items to a subset of captions.
    """

    def __init__(
        self,
        split: Split,
        vocab: Vocabulary,
        transform: Optional[Callable] = None,
        max_len: int = 0,
        caption_indices: Optional[Sequence[int]] = None,
    ):
        self.split, self.vocab, self.transform, self.max_len = split, vocab, transform, max_len
        self.flat = split.flat_captions()
        self.owner = np.repeat(np.arange(split.num_images), [len(c) for c in split.captions])
        self.indices = np.arange(len(self.flat)) if caption_indices is None else np.asarray(caption_indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int):
        j = int(self.indices[item])
        i = int(self.owner[j])
        ids = torch.tensor(self.vocab.encode(self.flat[j], self.max_len), dtype=torch.long)
        return _image_tensor(self.split, i, self.transform), ids, i, j


class ImageDataset(Dataset):
    """One item per image: ``(image, image_index)`` (for encoding a gallery once)."""

    def __init__(self, split: Split, transform: Optional[Callable] = None):
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return self.split.num_images

    def __getitem__(self, i: int):
        return _image_tensor(self.split, i, self.transform), i


class CaptionDataset(Dataset):
    """One item per caption: ``(caption_ids, caption_index)`` in protocol order."""

    def __init__(self, split: Split, vocab: Vocabulary, max_len: int = 0):
        self.flat, self.vocab, self.max_len = split.flat_captions(), vocab, max_len

    def __len__(self) -> int:
        return len(self.flat)

    def __getitem__(self, j: int):
        return torch.tensor(self.vocab.encode(self.flat[j], self.max_len), dtype=torch.long), j


def pad_captions(captions: Sequence[torch.Tensor], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id sequences: ``(B, T_max)`` ids and ``(B,)`` lengths."""
    lengths = torch.tensor([len(c) for c in captions], dtype=torch.long)
    out = torch.full((len(captions), int(lengths.max())), pad_id, dtype=torch.long)
    for row, c in enumerate(captions):
        out[row, : len(c)] = c
    return out, lengths


def encode_texts(texts: Sequence[str], vocab: Vocabulary, max_len: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Captions as the text encoder reads them: ``<start>``-led padded ids ``(B, T)`` and lengths ``(B,)``
    (at most ``max_len`` words each; 0: no limit)."""
    return pad_captions([torch.tensor(vocab.encode(t, max_len), dtype=torch.long) for t in texts])


def collate_pairs(batch):
    """``images (B, ...)``, ``captions (B, T)``, ``lengths (B,)``, ``image_ids (B,)``, ``caption_ids (B,)``."""
    images, caps, image_ids, caption_ids = zip(*batch)
    captions, lengths = pad_captions(caps)
    return (
        _stack_images(images),
        captions,
        lengths,
        torch.tensor(image_ids, dtype=torch.long),
        torch.tensor(caption_ids, dtype=torch.long),
    )


def collate_images(batch):
    images, ids = zip(*batch)
    return _stack_images(images), torch.tensor(ids, dtype=torch.long)


def collate_captions(batch):
    caps, ids = zip(*batch)
    captions, lengths = pad_captions(caps)
    return captions, lengths, torch.tensor(ids, dtype=torch.long)


def gan_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """ImageNet-normalised encoder input ``(B, 3, H, W)`` -> ``(B, 3, size, size)`` in [-1, 1]."""
    x = denormalize(images) * 2 - 1
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(-1, 1)


def encoder_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Generated ``(B, 3, S, S)`` in [-1, 1] -> ImageNet-normalised ``(B, 3, size, size)``, as encoders read images."""
    x = (images + 1) / 2
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std
