"""``demo.py index``: encode a folder's images (or a caption file) once, with a trained run.

Re-indexing the same folder into the same gallery encodes only new or changed files (path, size and
modification time differ) and drops deleted ones. While it works, the encoded part is saved every
``save_every`` seconds to ``GALLERY.partial`` (atomically, like the gallery); a killed run leaves the
previous gallery as it was, and the next run takes up what the partial file holds.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from data import DataError
from data.atomic import ensure_writable
from data.datasets import encode_texts, image_transform
from data.images import open_rgb
from models.modes import eval_mode
from runfolder.checkpoint import CheckpointError
from runfolder.folder import RunFolder, load_trained

from .ann import DEFAULT_SHORTLIST, MIN_RECALL, ann_record, build_index, tune
from .files import IMAGE_EXTENSIONS, FileEntry, read_caption_file, scan_images
from .store import DTYPES, Gallery, GalleryError, model_digest, read_gallery, write_gallery


class _ImageFiles(Dataset):
    """Transformed images of ``entries`` under ``root``; an unreadable one gives its error text instead."""

    def __init__(self, root: str, entries: list[FileEntry], transform):
        self.root, self.entries, self.transform = root, entries, transform

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int):
        path = os.path.join(self.root, self.entries[i].path)
        try:
            return i, self.transform(open_rgb(path)), None
        except (DataError, OSError) as err:
            return i, None, str(err) if isinstance(err, DataError) else f"{path}: {err}"


def _collate(batch):
    return batch


@dataclass
class IndexResult:
    gallery: Gallery
    encoded: int  # items encoded this time
    reused: int  # items taken from the previous gallery or a partial one
    skipped: list[str]  # unreadable files, with the reason


def _previous(out: str, digest: str, root: str, kind: str) -> dict[tuple, tuple[Gallery, int]]:
    """Rows worth keeping from ``out`` and ``out.partial``, keyed by ``(path, size, mtime_ns)``:
    only from the same model, kind and root (anything else is encoded again)."""
    cache: dict[tuple, tuple[Gallery, int]] = {}
    for path in (out, out + ".partial"):
        if not os.path.exists(path):
            continue
        try:
            g = read_gallery(path)
        except GalleryError as err:
            print(f"note: not reusing {path}: {err}", file=sys.stderr)
            continue
        if g.model_sha256 != digest or g.kind != kind or os.path.abspath(g.root) != root:
            print(f"note: {path} was made by another model or from another folder: everything is encoded again",
                  file=sys.stderr)
            continue
        for j, item in enumerate(g.items):
            cache[(item, int(g.size[j]), int(g.mtime_ns[j]))] = (g, j)
    return cache


class _Rows:
    """The gallery being filled: one float32 array per branch, and which rows hold a vector."""

    def __init__(self, entries: list[FileEntry], meta: dict):
        self.entries, self.meta = entries, meta
        self.arrays: dict[str, np.ndarray] = {}
        self.have = np.zeros(len(entries), dtype=bool)

    def put(self, j: int, vectors: dict[str, np.ndarray]) -> None:
        for b, v in vectors.items():
            if b not in self.arrays:
                self.arrays[b] = np.zeros((len(self.entries), len(v)), dtype=np.float32)
            self.arrays[b][j] = v
        self.have[j] = True

    def gallery(self) -> Gallery:
        keep = np.flatnonzero(self.have)
        return Gallery(items=[self.entries[j].path for j in keep],
                       vectors={b: a[keep] for b, a in self.arrays.items()},
                       size=np.array([self.entries[j].size for j in keep], np.int64),
                       mtime_ns=np.array([self.entries[j].mtime_ns for j in keep], np.int64), **self.meta)


def index_folder(run_dir: str, folder: Optional[str], out: str, captions: Optional[str] = None,
                 checkpoint: str = "best", batch_size: int = 64, workers: int = 0, device: str = "cpu",
                 dtype: str = "float32", ann: Optional[str] = None, shortlist: int = DEFAULT_SHORTLIST,
                 save_every: float = 60.0, progress: bool = True) -> IndexResult:
    """Index the images under ``folder`` (or the lines of ``captions``) into the gallery ``out``."""
    if (folder is None) == (captions is None):
        raise DataError("give a FOLDER of images or --captions FILE, not both")
    if batch_size < 1 or workers < 0:
        raise DataError(f"--batch-size must be >= 1 and --workers >= 0, got {batch_size} and {workers}")
    if dtype not in DTYPES:
        raise DataError(f"--dtype must be one of {DTYPES}, got {dtype!r}")
    cfg, vocab, model, _ = load_trained(run_dir, checkpoint)
    kind = "images" if captions is None else "captions"
    if kind == "images" and cfg.model.image_encoder == "precomp":
        raise CheckpointError(f"{run_dir} was trained on precomputed features, so it cannot read image files; "
                              "index a caption file (--captions) or train with an image encoder")
    if kind == "images":
        entries = scan_images(folder)
        if not entries:
            raise DataError(f"no image files under {folder} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
        root = os.path.abspath(folder)
    else:
        entries = [FileEntry(c, 0, 0) for c in read_caption_file(captions)]
        root = os.path.abspath(captions)
    ensure_writable(out)
    dev = torch.device(device)
    matcher = model.matcher.to(dev)
    digest = model_digest(matcher)
    rows = _Rows(entries, dict(kind=kind, root=root, run=os.path.abspath(run_dir),
                               checkpoint=os.path.abspath(RunFolder(run_dir).checkpoint(checkpoint)),
                               model_sha256=digest, measure=cfg.model.measure,
                               branch_weights=dict(matcher.branch_weights), dtype=dtype))
    cache = _previous(out, digest, root, kind) if kind == "images" else {}
    todo = []
    for j, e in enumerate(entries):
        hit = cache.get((e.path, e.size, e.mtime_ns))
        if hit is None:
            todo.append(j)
        else:
            rows.put(j, {b: v[hit[1]] for b, v in hit[0].vectors.items()})
    del cache
    reused = int(rows.have.sum())
    skipped: list[str] = []
    last_save = time.monotonic()
    bar = tqdm(total=len(entries), initial=reused, desc=f"index {kind}", unit=kind[:-1], disable=not progress)
    with torch.no_grad(), eval_mode(matcher):
        for done, errors, encode in _batches(kind, entries, todo, cfg, vocab, batch_size, workers, root):
            for err in errors:
                skipped.append(err)
                print(f"skipped: {err}", file=sys.stderr)
            if done:
                emb = {b: v.float().cpu().numpy() for b, v in encode(matcher, dev).items()}
                for n, j in enumerate(done):
                    rows.put(j, {b: v[n] for b, v in emb.items()})
            bar.update(len(done) + len(errors))
            if save_every >= 0 and time.monotonic() - last_save > save_every and rows.have.any():
                write_gallery(out + ".partial", rows.gallery())
                last_save = time.monotonic()
    bar.close()
    if not rows.have.any():
        raise DataError(f"none of the {len(entries)} image files under {folder} could be read")
    gallery = rows.gallery()
    if ann:
        gallery.ann = _ann_for(gallery, cfg, vocab, model, dev, ann, shortlist, progress)
    write_gallery(out, gallery)
    if os.path.exists(out + ".partial"):
        os.remove(out + ".partial")
    return IndexResult(gallery, int(rows.have.sum()) - reused, reused, skipped)


def _batches(kind, entries, todo, cfg, vocab, batch_size, workers, root):
    """Yield ``(rows, errors, encode(matcher, device))`` per batch: the entry rows it encodes, the
    unreadable files' messages, and the function that embeds the batch."""
    if kind == "captions":
        for lo in range(0, len(todo), batch_size):
            part = todo[lo:lo + batch_size]
            ids, lengths = encode_texts([entries[j].path for j in part], vocab, cfg.data.max_caption_len)
            yield part, [], (lambda m, d, ids=ids, lengths=lengths: m.encode_captions(ids.to(d), lengths))
        return
    dataset = _ImageFiles(root, [entries[j] for j in todo], image_transform(cfg.data, train=False))
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=_collate)
    for batch in loader:
        good = [(todo[i], x) for i, x, err in batch if err is None]
        errors = [err for _, _, err in batch if err is not None]
        x = torch.stack([t for _, t in good]) if good else None
        yield [j for j, _ in good], errors, (lambda m, d, x=x: m.encode_images(x.to(d)))


def _ann_for(gallery: Gallery, cfg, vocab, model, dev, kind: str, shortlist: int, progress: bool) -> dict:
    """Build the faiss index and measure its recall@10 against the exact scan on sample queries."""
    index = build_index(gallery.vectors, gallery.branch_weights, gallery.measure, kind)
    sample, note = _recall_queries(gallery, cfg, vocab, model, dev)
    shortlist = min(shortlist, len(gallery))
    effort, recall = tune(index, sample, gallery.vectors, gallery.branch_weights, gallery.measure, gallery.kind,
                          shortlist)
    if progress:
        verdict = "used" if recall >= MIN_RECALL else f"NOT used (below {MIN_RECALL}): queries scan exactly"
        print(f"approximate index ({kind}, effort {effort}): recall@10 {recall:.3f} against the exact scan on {note}; "
              f"{verdict}", file=sys.stderr)
    return ann_record(index, kind, shortlist, effort, recall, note)


SAMPLE_QUERIES = 200


def _recall_queries(gallery: Gallery, cfg, vocab, model, dev) -> tuple[dict[str, np.ndarray], str]:
    """Queries for the recall check: the run's val captions (image gallery) or val images (caption
    gallery) when its data is readable here, else gallery items themselves."""
    from data.sources import load_split
    from evaluation.retrieval import encode_split

    try:
        val = load_split(cfg.data, "val")
        img, cap = encode_split(model.matcher, val, vocab, cfg.data, dev, cfg.train.eval_batch_size, progress=False,
                                with_captions=gallery.kind == "images")
        side = cap if gallery.kind == "images" else img
        n = len(next(iter(side.values())))
        pick = np.random.default_rng(0).choice(n, min(n, SAMPLE_QUERIES), replace=False)
        what = "captions" if gallery.kind == "images" else "images"
        return {b: v.numpy()[pick] for b, v in side.items()}, f"{len(pick)} of the run's val {what}"
    except (DataError, OSError, ValueError):
        n = len(gallery)
        pick = np.random.default_rng(0).choice(n, min(n, SAMPLE_QUERIES), replace=False)
        note = f"{len(pick)} gallery items as queries (the run's val data is not readable here)"
        return {b: v[pick] for b, v in gallery.vectors.items()}, note
