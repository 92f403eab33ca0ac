"""What a gallery indexes: the image files under a folder, or the lines of a caption file."""
from __future__ import annotations

import os
from dataclasses import dataclass

from data import DataError

# What PIL opens, by extension (a file named otherwise is not looked at).
IMAGE_EXTENSIONS = frozenset((".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
                              ".pbm", ".ico", ".jfif"))


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the folder, POSIX separators
    size: int
    mtime_ns: int


def scan_images(folder: str) -> list[FileEntry]:
    """Every image file under ``folder``, recursively, sorted by relative path. Symbolic links are
    followed, but a folder already visited (a link loop, or two links to one place) is not
    entered again."""
    if not os.path.isdir(folder):
        raise DataError(f"not a folder: {folder}")
    seen, out = set(), []
    for top, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        for name in files:
            if os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            full = os.path.join(top, name)
            try:
                st = os.stat(full)
            except OSError:  # a dangling link
                continue
            rel = os.path.relpath(full, folder).replace(os.sep, "/")
            out.append(FileEntry(rel, st.st_size, st.st_mtime_ns))
    out.sort(key=lambda e: e.path)
    return out


def read_caption_file(path: str) -> list[str]:
    """The non-empty lines of a UTF-8 caption file, one caption each (surrounding spaces dropped)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f]
    except FileNotFoundError:
        raise DataError(f"caption file not found: {path}") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    captions = [line for line in lines if line]
    if not captions:
        raise DataError(f"{path} holds no captions (one per line)")
    return captions
