"""The gallery file: one HDF5 file per indexed folder (or caption file), readable with h5py alone.

Layout (``format = "lim-gallery"``, ``version = 1``)::

    /                  attributes: format, version, kind ("images" or "captions"), root (the absolute
                       FOLDER or caption file), run (the run folder), checkpoint (its file),
                       model_sha256 (digest of the matcher's weights), measure ("order" or "cosine"),
                       branch_weights (JSON: {"abstract": w, "grounded": w}), dtype ("float32" or
                       "float16"), created (UTC, ISO 8601)
    /items             (N,) UTF-8 strings: image paths relative to root (POSIX separators), or captions
    /size, /mtime_ns   (N,) int64: each image file's size and modification time when it was encoded
                       (zeros for captions); what re-indexing compares to find changed files
    /vectors/<branch>  (N, D) float32 or float16: the run's embedding of each item, one dataset per
                       branch ("abstract", "grounded"), rows in /items order
    /ann               optional group (approximate search, gallery/ann.py): /ann/index (uint8, a
                       serialised faiss index over the branch-weighted vectors), attributes kind,
                       shortlist, recall_at_10, sample, used

Items are sorted by path (images) or kept in file order (captions). Writes go through a temp file
beside the gallery and a rename, so a crash never leaves a half-written gallery under its name.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from data.atomic import atomic_path

FORMAT, VERSION = "lim-gallery", 1
KINDS = ("images", "captions")
DTYPES = ("float32", "float16")


class GalleryError(ValueError):
    """A gallery that cannot be read, or does not belong to the run that queries it."""


def model_digest(matcher: torch.nn.Module) -> str:
    """SHA-256 over the matcher's weights (names, shapes and bytes, in name order): the same weights
    give the same digest whichever file or folder they were loaded from."""
    h = hashlib.sha256()
    for name, tensor in sorted(matcher.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass
class Gallery:
    """A gallery in memory (the vectors may instead stay on disk: :func:`vector_views`)."""

    kind: str
    root: str
    items: list[str]
    vectors: dict[str, np.ndarray]
    run: str
    checkpoint: str
    model_sha256: str
    measure: str
    branch_weights: dict[str, float]
    size: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    mtime_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    dtype: str = "float32"
    ann: Optional[dict] = None  # {"index": uint8 array, **attributes}

    def __len__(self) -> int:
        return len(self.items)


def rebuild_hint(path: str) -> str:
    return (f"rebuild it with: python demo.py index RUN_DIR FOLDER --out {path} "
            f"(or --captions FILE for a caption gallery)")


def write_gallery(path: str, g: Gallery) -> None:
    """Write ``g`` to ``path`` atomically (temp file + rename)."""
    import h5py

    if g.kind not in KINDS or g.dtype not in DTYPES:
        raise ValueError(f"bad gallery kind {g.kind!r} or dtype {g.dtype!r}")
    n = len(g.items)
    with atomic_path(path, ".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            attrs = {"format": FORMAT, "version": VERSION, "kind": g.kind, "root": g.root, "run": g.run,
                     "checkpoint": g.checkpoint, "model_sha256": g.model_sha256, "measure": g.measure,
                     "branch_weights": json.dumps(g.branch_weights), "dtype": g.dtype,
                     "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
            f.attrs.update(attrs)
            f.create_dataset("items", data=np.array(g.items, dtype=object), dtype=h5py.string_dtype("utf-8"))
            size = g.size if len(g.size) == n else np.zeros(n, np.int64)
            mtime = g.mtime_ns if len(g.mtime_ns) == n else np.zeros(n, np.int64)
            f.create_dataset("size", data=np.asarray(size, np.int64))
            f.create_dataset("mtime_ns", data=np.asarray(mtime, np.int64))
            vec = f.create_group("vectors")
            for branch, v in g.vectors.items():
                if v.shape[0] != n:
                    raise ValueError(f"branch {branch}: {v.shape[0]} vectors for {n} items")
                vec.create_dataset(branch, data=np.asarray(v, dtype=g.dtype))
            if g.ann is not None:
                grp = f.create_group("ann")
                grp.create_dataset("index", data=np.asarray(g.ann["index"], np.uint8))
                grp.attrs.update({k: v for k, v in g.ann.items() if k != "index"})


def _check_header(path: str, f) -> None:
    if f.attrs.get("format") != FORMAT:
        raise GalleryError(f"{path} is not a LIM gallery (no format={FORMAT!r} attribute); {rebuild_hint(path)}")
    version = int(f.attrs.get("version", -1))
    if version != VERSION:
        raise GalleryError(f"{path} is gallery format version {version}; this code reads version {VERSION}; "
                           f"{rebuild_hint(path)}")
    for key in ("items", "size", "mtime_ns", "vectors"):
        if key not in f:
            raise GalleryError(f"{path} has no /{key}: the file is damaged; {rebuild_hint(path)}")


def read_gallery(path: str, vectors: bool = True) -> Gallery:
    """The gallery at ``path``; ``vectors=False`` leaves the vectors on disk (empty dict)."""
    import h5py

    if not os.path.isfile(path):
        raise GalleryError(f"gallery not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            _check_header(path, f)
            a = f.attrs
            items = [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in f["items"][()]]
            vecs = {b: f["vectors"][b][()] for b in f["vectors"]} if vectors else {}
            ann = None
            if "ann" in f:
                ann = {"index": f["ann"]["index"][()], **{k: _plain(v) for k, v in f["ann"].attrs.items()}}
            g = Gallery(kind=str(a["kind"]), root=str(a["root"]), items=items, vectors=vecs, run=str(a["run"]),
                        checkpoint=str(a["checkpoint"]), model_sha256=str(a["model_sha256"]),
                        measure=str(a["measure"]), branch_weights=json.loads(a["branch_weights"]),
                        size=f["size"][()], mtime_ns=f["mtime_ns"][()], dtype=str(a["dtype"]), ann=ann)
            for b in f["vectors"]:
                if f["vectors"][b].shape[0] != len(items):
                    raise GalleryError(f"{path}: /vectors/{b} has {f['vectors'][b].shape[0]} rows for "
                                       f"{len(items)} items: the file is damaged; {rebuild_hint(path)}")
    except GalleryError:
        raise
    except (OSError, KeyError, ValueError) as err:  # truncated, not HDF5, missing attributes
        raise GalleryError(f"cannot read gallery {path} ({str(err)[:200]}): it is truncated or not a "
                           f"gallery; {rebuild_hint(path)}") from None
    return g


def vector_views(f, path: str) -> dict:
    """The open gallery ``f``'s vectors per branch without reading them: a read-only memory map of
    the file where HDF5 stored the dataset contiguously and uncompressed (as :func:`write_gallery`
    does; a scan then reads the page cache directly, with no copy), else the h5py dataset."""
    out = {}
    for branch in f["vectors"]:
        d = f["vectors"][branch]
        offset = d.id.get_offset()
        if offset is not None and d.chunks is None and d.compression is None and d.size:
            out[branch] = np.memmap(path, mode="r", dtype=d.dtype, offset=offset, shape=d.shape)
        else:
            out[branch] = d
    return out


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


def check_owner(g: Gallery, path: str, digest: str, run_dir: str) -> None:
    """Refuse a gallery made with other weights than the querying run's."""
    if g.model_sha256 != digest:
        raise GalleryError(f"{path} was indexed by another model ({g.run}, {os.path.basename(g.checkpoint)}); "
                           f"{run_dir}'s vectors live in another space, so its queries cannot search it: "
                           f"re-index with python demo.py index {run_dir} {g.root} --out {path}")
