"""Precomputed image features: VSE++/SCAN ``{split}_ims.npy`` + ``{split}_caps.txt``, and HDF5.

npy/txt: ``{split}_ims.npy`` holds one row per image (or one per caption, duplicated, as some
VSE++ files do); region features ``(N, R, D)`` are mean-pooled over regions. ``{split}_caps.txt``
holds one caption per line, caption k belonging to image k // captions_per_image. VSE++ names the
validation split ``dev``; both ``val_*`` and ``dev_*`` are accepted.

HDF5 (written by ``python -m data extract``): group ``/{split}`` with ``images`` float32
``(N, D)`` and ``captions`` (UTF-8 strings, ``N * captions_per_image``, grouped per image).
Rows are read on demand, so sets larger than memory stream from disk.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from .records import DataError, ImageSource, Split


class NpyFeatures(ImageSource):
    """Rows of a memory-mapped ``.npy`` array; ``rows[i]`` is the row of image ``i``."""

    kind = "features"

    def __init__(self, path: str, rows: np.ndarray):
        self.path = path
        self.rows = rows
        self._array: Optional[np.ndarray] = None

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return self._array

    def __len__(self) -> int:
        return len(self.rows)

    def load(self, index: int) -> np.ndarray:
        row = np.asarray(self.array[self.rows[index]], dtype=np.float32)
        return row.mean(axis=0) if row.ndim == 2 else row  # (R, D) regions -> (D,)

    def describe(self, index: int) -> str:
        return f"{self.path} row {self.rows[index]}"

    @property
    def feature_dim(self) -> int:
        return int(self.array.shape[-1])

    def __getstate__(self):  # memory maps are reopened in each DataLoader worker
        return {**self.__dict__, "_array": None}


def _find(folder: str, split: str, suffix: str) -> str:
    names = [split] + (["dev"] if split == "val" else [])
    for name in names:
        path = os.path.join(folder, f"{name}_{suffix}")
        if os.path.isfile(path):
            return path
    tried = " or ".join(os.path.join(folder, f"{n}_{suffix}") for n in names)
    raise DataError(f"precomputed split '{split}': {tried} not found")


def read_caption_lines(path: str) -> tuple[list[str], list[str]]:
    """Captions, one per line, and a problem for each empty line (named by line number)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason})") from None
    problems = [f"{path}: line {n}: empty caption" for n, line in enumerate(lines, 1) if not line.strip()]
    return [line.strip() for line in lines], problems


def group_rows(n_rows: int, n_caps: int, k: int, where: str) -> np.ndarray:
    """Image row of each image: rows are per image (n_caps = k*n_rows) or per caption."""
    if n_caps % k:
        raise DataError(f"{where}: {n_caps} captions is not a multiple of {k} per image")
    if n_caps == k * n_rows:
        return np.arange(n_rows)
    if n_caps == n_rows:
        return np.arange(0, n_rows, k)  # one duplicated row per caption: keep every k-th
    raise DataError(
        f"{where}: {n_rows} image rows do not fit {n_caps} captions "
        f"({k} per image means {n_caps // k} rows, or {n_caps} duplicated rows)"
    )


def load_precomp_split(folder: str, split: str, captions_per_image: int = 5) -> Split:
    """One split of a VSE++/SCAN style precomputed-feature folder."""
    ims_path, caps_path = _find(folder, split, "ims.npy"), _find(folder, split, "caps.txt")
    try:
        array = np.load(ims_path, mmap_mode="r")
    except ValueError as err:
        raise DataError(f"{ims_path}: not a readable .npy array ({err})") from None
    if array.ndim not in (2, 3):
        raise DataError(f"{ims_path}: expected (N, D) or (N, regions, D) features, got {array.shape}")
    lines, problems = read_caption_lines(caps_path)
    if problems:
        raise DataError("\n".join(problems[:20]) + (f"\n... {len(problems)} in all" if len(problems) > 20 else ""))
    k = captions_per_image
    rows = group_rows(len(array), len(lines), k, f"{ims_path} + {caps_path}")
    captions = [lines[i * k : (i + 1) * k] for i in range(len(rows))]
    return Split(split, NpyFeatures(ims_path, rows), captions, source=f"{ims_path} + {caps_path}")


class H5Features(ImageSource):
    """Rows of ``/{split}/images`` in an HDF5 file, opened lazily once per process."""

    kind = "features"

    def __init__(self, path: str, split: str, n: int, dim: int):
        self.path, self.split, self.n, self.dim = path, split, n, dim
        self._file = None
        self._pid = -1

    def _dataset(self):
        import h5py

        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file[self.split]["images"]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __len__(self) -> int:
        return self.n

    def load(self, index: int) -> np.ndarray:
        return np.asarray(self._dataset()[index], dtype=np.float32)

    def describe(self, index: int) -> str:
        return f"{self.path}:/{self.split}/images[{index}]"

    @property
    def feature_dim(self) -> int:
        return self.dim

    def __getstate__(self):  # h5py handles cannot cross processes
        return {**self.__dict__, "_file": None, "_pid": -1}


def load_h5_split(path: str, split: str, captions_per_image: int = 5) -> Split:
    """One split of an HDF5 feature file written by :func:`write_h5_split`."""
    import h5py

    if not os.path.isfile(path):
        raise DataError(f"{path}: HDF5 feature file not found")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise DataError(f"{path}: not a readable HDF5 file ({err})") from None
    with f:
        if split not in f:
            raise DataError(f"{path}: no group '/{split}' (has: {', '.join(f.keys()) or 'nothing'})")
        group = f[split]
        for key in ("images", "captions"):
            if key not in group:
                raise DataError(f"{path}: missing dataset '/{split}/{key}'")
        n, dim = group["images"].shape
        lines = [c.decode("utf-8") if isinstance(c, bytes) else str(c) for c in group["captions"][()]]
    empty = [f"{path}:/{split}/captions[{j}]: empty caption" for j, c in enumerate(lines) if not c.strip()]
    if empty:
        raise DataError("\n".join(empty[:20]))
    k = captions_per_image
    if len(lines) != k * n:
        raise DataError(f"{path}:/{split}: {n} images need {k * n} captions, found {len(lines)}")
    captions = [lines[i * k : (i + 1) * k] for i in range(n)]
    return Split(split, H5Features(path, split, n, dim), captions, source=path)


def write_h5_split(path: str, split: str, features: np.ndarray, captions: Sequence[str]) -> None:
    """Add (or replace) one split in an HDF5 feature file."""
    import h5py

    with h5py.File(path, "a") as f:
        if split in f:
            del f[split]
        group = f.create_group(split)
        group.create_dataset("images", data=np.asarray(features, dtype=np.float32), chunks=True)
        group.create_dataset("captions", data=list(captions), dtype=h5py.string_dtype("utf-8"))
