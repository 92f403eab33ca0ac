"""``demo.py export``: a gallery as plain files for other tools."""
from __future__ import annotations

import json
import os

import numpy as np

from data import DataError
from data.atomic import atomic_path, write_json_atomic, write_text_atomic

from .store import read_gallery

EXPORT_FORMATS = ("npy",)


def export_gallery(gallery: str, out_dir: str, fmt: str = "npy") -> list[str]:
    """Write ``<branch>.npy`` (float32, one row per item), ``items.txt`` (one path or caption per
    line, rows in the same order; newlines in a caption become spaces) and ``meta.json`` (the
    gallery's attributes) into ``out_dir``; returns the files written."""
    if fmt not in EXPORT_FORMATS:
        raise DataError(f"--format must be one of {EXPORT_FORMATS}, got {fmt!r}")
    g = read_gallery(gallery)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for branch, v in g.vectors.items():
        path = os.path.join(out_dir, f"{branch}.npy")
        with atomic_path(path, ".npy") as tmp:
            np.save(tmp, np.asarray(v, dtype=np.float32))
        written.append(path)
    items = os.path.join(out_dir, "items.txt")
    write_text_atomic(items, "".join(" ".join(i.splitlines()) + "\n" for i in g.items))
    meta = os.path.join(out_dir, "meta.json")
    write_json_atomic(meta, {"gallery": os.path.abspath(gallery), "kind": g.kind, "root": g.root, "run": g.run,
                             "checkpoint": g.checkpoint, "model_sha256": g.model_sha256, "measure": g.measure,
                             "branch_weights": g.branch_weights, "count": len(g),
                             "files": {b: f"{b}.npy" for b in g.vectors} | {"items": "items.txt"}})
    return written + [items, meta]


def describe(gallery: str) -> str:
    """One line about a gallery (what ``index`` prints at the end)."""
    g = read_gallery(gallery, vectors=False)
    ann = "" if not g.ann else f", {g.ann['kind']} shortlist recall@10 {g.ann['recall_at_10']:.3f}"
    return (f"{gallery}: {len(g)} {g.kind}, {g.measure} vectors ({json.dumps(g.branch_weights)}), {g.dtype}{ann}")
