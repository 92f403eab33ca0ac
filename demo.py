"""Demos on a trained run.

    python demo.py caption RUN_DIR IMAGE [IMAGE ...] [--beam 3] [--checkpoint best]
    python demo.py imagine RUN_DIR "TEXT" [-n 8] [--seed 0] --out grid.png [--checkpoint best]

``caption`` prints one caption per image file (any format and mode PIL reads). ``imagine`` draws
``n`` images from a caption with the run's text-to-image GAN and writes them as one PNG grid; the
seed fixes the noise, so another seed gives other images.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

import torch

from data import DataError
from data.datasets import image_transform
from data.images import open_rgb
from data.vocab import tokenize
from engine.checkpoint import CheckpointError
from engine.run import load_trained
from engine.synthesis import image_grid, imagine, save_png
from models import ModelError


def caption_images(run_dir: str, paths: Sequence[str], beam: Optional[int] = None, checkpoint: str = "best",
                   device: str = "cpu") -> list[tuple[str, str]]:
    """``(path, caption)`` per image; unreadable images are named in a :class:`DataError`."""
    cfg, vocab, model, _ = load_trained(run_dir, checkpoint)
    if model.decoder is None:
        raise CheckpointError(f"{run_dir} has no caption decoder: it was trained with look.lambda_i2t=0; "
                              "train with look.lambda_i2t=1 (the default) to caption images")
    if cfg.model.image_encoder == "precomp":
        raise CheckpointError(f"{run_dir} was trained on precomputed features, so it cannot read image files; "
                              "train with an image encoder (small_cnn, resnet*) to caption files")
    transform = image_transform(cfg.data, train=False)
    images, errors = [], []
    for path in paths:
        try:
            images.append(transform(open_rgb(path)))
        except DataError as err:
            errors.append(str(err))
    if errors:
        raise DataError("\n".join(errors))
    model.to(device)
    with torch.no_grad():
        feats = model.matcher.encode_images(torch.stack(images).to(device))["grounded"]
        tokens = model.decoder.beam_search(feats, beam or cfg.look.beam_size)
    return [(p, vocab.decode(row)) for p, row in zip(paths, tokens.cpu().tolist())]


def imagine_grid(run_dir: str, text: str, n: int = 8, seed: int = 0, out: str = "imagined.png",
                 checkpoint: str = "best", device: str = "cpu") -> str:
    """Write ``n`` images imagined from ``text`` as a PNG grid at ``out``; returns ``out``."""
    cfg, vocab, model, _ = load_trained(run_dir, checkpoint)
    if model.imagine is None:
        raise CheckpointError(f"{run_dir} has no text-to-image generator: it was trained with imagine.lambda_t2i=0; "
                              "train with imagine.lambda_t2i=1 (the default) to imagine images")
    if not text.strip():
        raise DataError("the text to imagine from is empty")
    if n < 1:
        raise DataError(f"-n must be at least 1, got {n}")
    unknown = sorted({w for w in tokenize(text) if w not in vocab.index})
    if unknown:
        print(f"note: not in the run's vocabulary (read as <unk>): {', '.join(unknown)}", file=sys.stderr)
    model.to(device)
    images = imagine(model, [text], vocab, n, seed, torch.device(device), cfg.data.max_caption_len)
    columns = min(n, 8)
    save_png(image_grid(images, columns, [text] + [""] * ((n - 1) // columns)), out)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    cap = sub.add_parser("caption", help="caption image files")
    cap.add_argument("run_dir")
    cap.add_argument("images", nargs="+")
    cap.add_argument("--beam", type=int, help="beam size (default: the run's look.beam_size)")
    cap.add_argument("--checkpoint", default="best")
    cap.add_argument("--device", default="cpu")
    ima = sub.add_parser("imagine", help="draw images from a caption")
    ima.add_argument("run_dir")
    ima.add_argument("text")
    ima.add_argument("-n", type=int, default=8, help="images to draw (default 8)")
    ima.add_argument("--seed", type=int, default=0, help="noise seed: another seed gives other images")
    ima.add_argument("--out", required=True, help="PNG file to write")
    ima.add_argument("--checkpoint", default="best")
    ima.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    try:
        if args.command == "imagine":
            print(imagine_grid(args.run_dir, args.text, args.n, args.seed, args.out, args.checkpoint, args.device))
            return 0
        for path, caption in caption_images(args.run_dir, args.images, args.beam, args.checkpoint, args.device):
            print(f"{path}\t{caption}")
    except (CheckpointError, DataError, ModelError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
