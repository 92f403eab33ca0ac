"""Image files on disk: open any PIL mode as RGB, with errors that name the file."""
from __future__ import annotations

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from .records import DataError, ImageSource


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; transparent pixels are composited onto white."""
    if img.mode == "RGB":
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit and float greys: convert("RGB") would clip everything above 255 to white.
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(arr.astype(np.uint8), mode="L").convert("RGB")
    return img.convert("RGB")


# Images above this many pixels are refused (PIL's decompression-bomb guard, at its default of
# about 89 megapixels, made an error instead of a warning): a 15000x15000 PNG of a few kilobytes
# would need gigabytes to decode. Shrink such images first.
MAX_IMAGE_PIXELS = 89_478_485


def open_rgb(path: str) -> Image.Image:
    """Open and fully decode an image (so truncation is caught here), as RGB."""
    try:
        with Image.open(path) as img:
            width, height = img.size
            if width * height > MAX_IMAGE_PIXELS:
                raise DataError(f"{path}: image too large ({width}x{height} = {width * height:,} pixels; the limit is "
                                f"{MAX_IMAGE_PIXELS:,}, against decompression bombs): shrink it")
            img.load()
            return to_rgb(img)
    except FileNotFoundError:
        raise DataError(f"{path}: image file is missing") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not an image file") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not a readable image") from None
    except Image.DecompressionBombError:
        raise DataError(f"{path}: image too large (over twice the limit of {MAX_IMAGE_PIXELS:,} pixels, against "
                        "decompression bombs): shrink it") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: unreadable or truncated image ({err})") from None


class FileImages(ImageSource):
    """Images stored as files, one path per image."""

    kind = "pixels"

    def __init__(self, paths: list[str]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> Image.Image:
        return open_rgb(self.paths[index])

    def describe(self, index: int) -> str:
        return self.paths[index]

    def exists(self, index: int) -> bool:
        return os.path.isfile(self.paths[index])
