"""Images imagined from captions: seeded sampling, labelled PNG grids, and a collapse signal."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from config import Config
from data.atomic import atomic_path
from data.datasets import ImageDataset, collate_images, encode_texts, gan_images, image_transform
from data.records import Split
from data.vocab import Vocabulary
from models.lim import LIM
from models.modes import eval_mode


@torch.no_grad()
def imagine(model: LIM, texts: Sequence[str], vocab: Vocabulary, per_text: int = 1, seed: int = 0,
            device: torch.device = torch.device("cpu"), max_len: int = 0, batch_size: int = 256) -> torch.Tensor:
    """``per_text`` images for each caption, ``(len(texts) * per_text, 3, S, S)`` in [-1, 1], on CPU.

    Rows are grouped by caption (caption k owns rows ``k * per_text ...``). Noise and the
    conditioning's epsilon come from ``seed`` alone, so the same seed gives the same images and
    another seed other ones; the global RNG is left as it was (training is not disturbed).
    """
    if model.imagine is None:
        raise ValueError("this model has no generator (imagine.lambda_t2i=0)")
    texts = [t for t in texts for _ in range(per_text)]
    devices = [device] if device.type == "cuda" else []
    parts = []
    with torch.random.fork_rng(devices=devices), eval_mode(model):
        torch.manual_seed(seed)
        for start in range(0, len(texts), batch_size):
            captions, lengths = encode_texts(texts[start:start + batch_size], vocab, max_len)
            text = model.matcher.encode_captions(captions.to(device), lengths)["grounded"]  # (b, D)
            z = torch.randn(len(text), model.imagine.z_dim, device=device)
            parts.append(model.sampler()(text, z)["fake"].float().cpu())
    return torch.cat(parts)


def diversity(images: torch.Tensor) -> float:
    """Mean per-pixel standard deviation across a batch ``(N, 3, S, S)``: near 0 when all images look alike."""
    return float(images.float().std(dim=0).mean())


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(N, 3, S, S)`` in [-1, 1] -> ``(N, S, S, 3)`` uint8."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def image_grid(images: torch.Tensor, columns: int, labels: Optional[Sequence[str]] = None, scale: int = 2,
               pad: int = 4) -> Image.Image:
    """A PIL grid of ``(N, 3, S, S)`` images in [-1, 1], ``columns`` per row, each row under its label.

    Images are enlarged ``scale`` times (nearest) so that 64 px samples are readable.
    """
    pixels = to_uint8(images)
    n, s = len(pixels), pixels.shape[1] * scale
    rows = (n + columns - 1) // columns
    font = ImageFont.load_default()
    label_h = 14 if labels else 0
    grid = Image.new("RGB", (columns * (s + pad) + pad, rows * (s + pad + label_h) + pad), "white")
    draw = ImageDraw.Draw(grid)
    for k in range(n):
        r, c = divmod(k, columns)
        x, y = pad + c * (s + pad), pad + r * (s + pad + label_h)
        if labels and c == 0:
            text = labels[r] if len(labels[r]) * 6 <= grid.width - 2 * pad else labels[r][:(grid.width - 2 * pad) // 6 - 3] + "..."
            draw.text((x, y), text, fill="black", font=font)
        tile = Image.fromarray(pixels[k]).resize((s, s), Image.NEAREST)
        grid.paste(tile, (x, y + label_h))
    return grid


def save_png(image: Image.Image, path: str) -> None:
    """Write a PNG atomically (a crash never leaves half a file under ``path``)."""
    with atomic_path(path, ".png") as tmp:
        image.save(tmp, format="PNG")


def split_grid(model: LIM, split: Split, vocab: Vocabulary, cfg: Config, device: torch.device, captions: int = 8,
               per_caption: int = 6, seed: int = 0) -> tuple[Image.Image, float, list[str]]:
    """Imagined images for the first caption of the first ``captions`` images of ``split``.

    Returns the labelled grid (each row: the real image, then ``per_caption`` samples), the
    ratio of the samples' :func:`diversity` to the real images' (near 0: the generator has
    collapsed), and the captions used.
    """
    n = min(captions, split.num_images)
    texts = [split.captions[i][0] for i in range(n)]
    fake = imagine(model, texts, vocab, per_caption, seed, device, cfg.data.max_caption_len)  # (n * k, 3, S, S)
    dataset = ImageDataset(split, image_transform(cfg.data, train=False))
    real = gan_images(collate_images([dataset[i] for i in range(n)])[0], cfg.imagine.image_size)  # (n, 3, S, S)
    rows = torch.cat([real[:, None], fake.view(n, per_caption, *fake.shape[1:])], dim=1).flatten(0, 1)
    ratio = diversity(fake) / max(diversity(real), 1e-8)
    return image_grid(rows, per_caption + 1, [f"{i}: {t}" for i, t in enumerate(texts)]), ratio, texts
