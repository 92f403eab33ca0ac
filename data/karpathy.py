"""Karpathy-split JSON (dataset_coco.json, dataset_flickr30k.json, dataset_flickr8k.json, custom).

Schema: ``{"images": [{"filepath"?: str, "filename": str, "split": "train|val|test|restval",
"sentences": [{"raw": str, "tokens"?: [str]}]}]}``; image ``i`` lives at
``image_root/filepath/filename`` (Flickr sets have no ``filepath``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache

from .images import FileImages
from .records import DataError, Split, fix_captions_per_image

KARPATHY_SPLITS = ("train", "val", "test", "restval")


@dataclass
class KarpathyEntry:
    path: str
    split: str
    captions: list[str]


def _read_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: dataset JSON not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder; data.json must name the JSON file") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason})") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: line {err.lineno}, column {err.colno}: invalid JSON: {err.msg}") from None


def _caption(sentence, where: str, problems: list[str]) -> str | None:
    if not isinstance(sentence, dict):
        problems.append(f"{where}: expected an object with 'raw', got {type(sentence).__name__}")
        return None
    raw = sentence.get("raw")
    if raw is None and isinstance(sentence.get("tokens"), list):
        raw = " ".join(str(t) for t in sentence["tokens"])
    if raw is None:
        problems.append(f"{where}: missing field 'raw'")
        return None
    if not isinstance(raw, str) or not raw.strip():
        problems.append(f"{where}: empty caption")
        return None
    return raw.strip()


@lru_cache(maxsize=4)
def _parse_cached(json_path: str, image_root: str, mtime: float):
    return _parse(json_path, image_root)


def _parse(json_path: str, image_root: str) -> tuple[list[KarpathyEntry], list[str]]:
    """All entries that parse, and a problem line for every one that does not."""
    data = _read_json(json_path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{json_path}: expected a top-level object with an 'images' list")
    entries, problems = [], []
    for i, img in enumerate(data["images"]):
        where = f"{json_path}: images[{i}]"
        if not isinstance(img, dict):
            problems.append(f"{where}: expected an object, got {type(img).__name__}")
            continue
        name = img.get("filename")
        if isinstance(name, str) and name:
            where += f" ({name})"
        bad = len(problems)
        if not isinstance(name, str) or not name:
            problems.append(f"{where}: missing field 'filename'")
        split = img.get("split")
        if split is None:
            problems.append(f"{where}: missing field 'split'")
        elif split not in KARPATHY_SPLITS:
            problems.append(f"{where}: split '{split}' is not one of {', '.join(KARPATHY_SPLITS)}")
        sentences = img.get("sentences")
        captions = []
        if not isinstance(sentences, list):
            problems.append(f"{where}: missing field 'sentences'")
        elif not sentences:
            problems.append(f"{where}: 'sentences' is empty")
        else:
            for j, s in enumerate(sentences):
                cap = _caption(s, f"{where}: sentences[{j}]", problems)
                if cap is not None:
                    captions.append(cap)
        if len(problems) == bad:
            path = os.path.join(image_root, img.get("filepath") or "", name)
            entries.append(KarpathyEntry(path, split, captions))
    return entries, problems


def parse_karpathy(json_path: str, image_root: str) -> tuple[list[KarpathyEntry], list[str]]:
    """Parse a Karpathy JSON: ``(entries, problems)``; cached per file version."""
    try:
        mtime = os.path.getmtime(json_path)
    except OSError:
        mtime = -1.0
    return _parse_cached(os.path.abspath(json_path), image_root, mtime)


def load_karpathy_split(
    json_path: str, image_root: str, split: str, use_restval: bool = False, captions_per_image: int = 5
) -> Split:
    """One split of a Karpathy JSON; any malformed entry is an error listing all of them."""
    if split not in ("train", "val", "test"):
        raise DataError(f"unknown split '{split}' (train, val or test)")
    entries, problems = parse_karpathy(json_path, image_root)
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise DataError(
            f"{json_path}: {len(problems)} bad entries (run `python -m data check` for all):\n"
            f"  {shown}{more}"
        )
    wanted = {split, "restval"} if (split == "train" and use_restval) else {split}
    chosen = [e for e in entries if e.split in wanted]
    if not chosen:
        raise DataError(f"{json_path}: no images in split '{split}'")
    captions, truncated, padded = fix_captions_per_image([e.captions for e in chosen], captions_per_image)
    return Split(
        name=split,
        images=FileImages([e.path for e in chosen]),
        captions=captions,
        source=json_path,
        truncated=truncated,
        padded=padded,
    )
