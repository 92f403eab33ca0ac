"""Does the model tell a caption from its one-word swaps? Per word class (colour, shape, size, relation).

Image queries: for each test image ``i`` and caption ``c`` of it, and up to ``per_class`` swaps
``c'`` of each class, correct when ``s(i, c) > s(i, c')``. Caption queries: for the same triples,
when some other test image ``j`` has ``c'`` among its captions and not ``c`` (it shows the swapped
thing), correct when ``s(i, c) > s(j, c)``. Captions with no word of a class are counted, not errors.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from data.contrast import SHAPES_CLASSES, swaps
from data.datasets import encode_texts
from data.records import Split
from data.vocab import Vocabulary
from models.modes import eval_mode

from .retrieval import encode_split


def _pair_scores(matcher, img: dict, cap: dict, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``s(img[rows[p]], cap[cols[p]])`` for every ``p``."""
    return matcher.paired_similarity({k: v[rows] for k, v in img.items()}, {k: v[cols] for k, v in cap.items()})


@torch.no_grad()
def swap_accuracy(model, split: Split, vocab: Vocabulary, cfg, device: torch.device, per_class: int = 3,
                  seed: int = 0, classes: dict = SHAPES_CLASSES, progress: bool = False) -> dict:
    """``{class: {"image_query": %, "caption_query": %, "swaps": n, "caption_pairs": n,
    "captions_without": n}}`` on ``split``."""
    matcher = model.matcher
    with eval_mode(matcher):
        img, cap = encode_split(matcher, split, vocab, cfg.data, device, cfg.train.eval_batch_size, progress)
        flat = split.flat_captions()
        k = split.num_captions // max(split.num_images, 1)
        owners = defaultdict(set)  # caption text -> images that have it
        for j, text in enumerate(flat):
            owners[text.lower()].add(j // k)
        rng = np.random.default_rng(seed)
        triples = []  # (image, caption index, swapped text, class)
        without = defaultdict(int)
        for j, text in enumerate(flat):
            by_class = defaultdict(list)
            for name, new in swaps(text, classes):
                by_class[name].append(new)
            for name in classes:
                options = by_class.get(name, [])
                if not options:
                    without[name] += 1
                    continue
                for t in rng.permutation(len(options))[:per_class]:
                    triples.append((j // k, j, options[int(t)], name))
        texts = sorted({t for _, _, t, _ in triples})
        row_of = {t: n for n, t in enumerate(texts)}
        parts: dict = defaultdict(list)
        for start in range(0, len(texts), cfg.train.eval_batch_size):
            part = texts[start:start + cfg.train.eval_batch_size]
            ids, lengths = encode_texts(part, vocab, cfg.data.max_caption_len)
            for b, v in matcher.encode_captions(ids.to(device), lengths).items():
                parts[b].append(v.float().cpu())
        swapped = {b: torch.cat(v) for b, v in parts.items()}  # (T, D) per branch
        result = {}
        for name in classes:
            mine = [t for t in triples if t[3] == name]
            entry = {"swaps": len(mine), "captions_without": without[name]}
            if mine:
                rows = torch.tensor([t[0] for t in mine])
                cols = torch.tensor([t[1] for t in mine])
                pos_s = _pair_scores(matcher, img, cap, rows, cols)
                neg_s = _pair_scores(matcher, img, swapped, rows, torch.tensor([row_of[t[2]] for t in mine]))
                entry["image_query"] = round(100 * float((pos_s > neg_s).float().mean()), 2)
                others = []
                for n, (i, j, new, _) in enumerate(mine):
                    shown = owners.get(new, set()) - {i} - owners[flat[j].lower()]
                    if shown:
                        others.append((n, min(shown)))
                entry["caption_pairs"] = len(others)
                if others:
                    idx = torch.tensor([n for n, _ in others])
                    other_s = _pair_scores(matcher, img, cap, torch.tensor([j for _, j in others]), cols[idx])
                    entry["caption_query"] = round(100 * float((pos_s[idx] > other_s).float().mean()), 2)
            result[name] = entry
        return result


@torch.no_grad()
def binding_queries(model, split: Split, vocab: Vocabulary, cfg, device: torch.device,
                    img: dict | None = None) -> dict | None:
    """Attribute binding on Shapes: each caption "a large <colour> <shape>" (8 colours x 5 shapes)
    queries the split's images; a hit when the top image holds an object of that colour *and*
    shape (any size). ``{"top1": %, "queries": 40, "misses": [(caption, top image's objects)...]}``,
    or ``None`` for a split without scene records (anything but Shapes). ``img``: the split's image
    embeddings when the caller has them already (``encode_split``), else encoded here."""
    from data.shapes import COLOURS, SHAPES

    scenes = split.extra.get("scenes")
    if not scenes:
        return None
    matcher = model.matcher
    with eval_mode(matcher):
        if img is None:
            img, _ = encode_split(matcher, split, vocab, cfg.data, device, cfg.train.eval_batch_size, False)
        queries = [(c, s) for c in COLOURS for s in SHAPES]
        texts = [f"a large {c} {s}" for c, s in queries]
        ids, lengths = encode_texts(texts, vocab, cfg.data.max_caption_len)
        cap = {b: v.float().cpu() for b, v in matcher.encode_captions(ids.to(device), lengths).items()}
        top = matcher.similarity(img, cap).argmax(dim=0)  # (40,) best image per caption query
        misses = []
        for (colour, shape), text, i in zip(queries, texts, top.tolist()):
            objects = scenes[i]["objects"]
            if not any(o["colour"] == colour and o["shape"] == shape for o in objects):
                misses.append((text, ", ".join(f"{o['size']} {o['colour']} {o['shape']}" for o in objects)))
        return {"top1": round(100 * (1 - len(misses) / len(queries)), 1), "queries": len(queries), "misses": misses}
