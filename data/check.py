"""``python -m data check``: validate a dataset before training and name every bad entry."""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from config import DataConfig, cache_dir

from .images import FileImages, open_rgb
from .karpathy import parse_karpathy
from .records import DataError, Split, fix_captions_per_image
from .sources import load_split
from .vocab import build_vocab, oov_rate, tokenize

SPLITS = ("train", "val", "test")

# Warn when more than this share of val or test caption tokens would become <unk>.
MAX_OOV = 0.5


@dataclass
class CheckReport:
    """What ``data check`` found: per-split statistics and every problem."""

    stats: dict = field(default_factory=dict)
    vocab_size: int = 0
    oov: dict = field(default_factory=dict)  # split -> share of its caption tokens that become <unk>
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # worth a look, not a reason to stop

    @property
    def ok(self) -> bool:
        return not self.problems


def _karpathy_splits(cfg: DataConfig, problems: list[str]) -> dict[str, Split]:
    if not cfg.json or not cfg.image_root:
        raise DataError("data.name=karpathy needs data.json=FILE and data.image_root=DIR")
    entries, bad = parse_karpathy(os.path.expanduser(cfg.json), os.path.expanduser(cfg.image_root))
    problems += bad
    splits = {}
    for name in SPLITS:
        wanted = {name, "restval"} if (name == "train" and cfg.use_restval) else {name}
        chosen = [e for e in entries if e.split in wanted]
        if not chosen:
            problems.append(f"{cfg.json}: no images in split '{name}'")
            continue
        caps, truncated, padded = fix_captions_per_image([e.captions for e in chosen], cfg.captions_per_image)
        splits[name] = Split(name, FileImages([e.path for e in chosen]), caps, cfg.json, truncated, padded)
    return splits


def _check_images(split: Split, problems: list[str], workers: int = 8) -> None:
    """Open every image (pixels) or read every feature row, recording each failure."""
    source = split.images

    def one(i: int):
        try:
            if isinstance(source, FileImages):
                open_rgb(source.paths[i])
            elif not np.all(np.isfinite(source.load(i))):
                return f"{source.describe(i)}: non-finite feature values"
            else:
                return None
        except DataError as err:
            return str(err)
        return None

    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(one, range(len(source)))
        for msg in tqdm(results, total=len(source), desc=f"check {split.name} images", leave=False):
            if msg:
                problems.append(msg)


def caption_findings(split: Split, vocab, max_len: int) -> tuple[list[str], list[str]]:
    """Captions that tokenise to nothing (problems), and captions mostly ``<unk>`` in ``vocab`` or
    longer than ``max_len`` tokens, which training cuts (warnings); each names a count and a place."""
    empty, unknown, long = [], [], []
    longest = 0
    for i, caps in enumerate(split.captions):
        for j, cap in enumerate(caps):
            tokens = tokenize(cap)
            where = f"{split.images.describe(i)} caption {j + 1}"
            if not tokens:
                empty.append(f"{where}: tokenises to nothing ({cap[:60]!r})")
                continue
            if vocab is not None and sum(t not in vocab.index for t in tokens) * 2 > len(tokens):
                unknown.append(where)
            if len(tokens) > max_len:
                long.append(where)
                longest = max(longest, len(tokens))
    warnings = []
    if unknown:
        warnings.append(f"{split.name}: {len(unknown)} captions are more than half <unk> in the training vocabulary "
                        f"(first: {unknown[0]})")
    if long:
        warnings.append(f"{split.name}: {len(long)} captions are longer than data.max_caption_len={max_len} tokens and "
                        f"are cut to it (longest {longest} tokens; first: {long[0]})")
    return empty, warnings


def preflight(cfg: DataConfig, splits: list[Split]) -> None:
    """Before training: decode every image of the splits a run will touch, so a bad file stops the
    run before its first step rather than midway. A pass is remembered (in the cache folder, keyed
    by every file's path, size and modification time), so a rerun on unchanged data is quick."""
    files = [p for split in splits if isinstance(split.images, FileImages) for p in split.images.paths]
    if not files:
        return
    key = hashlib.sha256()
    for path in files:
        try:
            st = os.stat(path)
            key.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            key.update(f"{path}\0missing\n".encode())
    stamp = os.path.join(cache_dir(cfg), "checked", key.hexdigest()[:32])
    if os.path.exists(stamp):
        return
    problems: list[str] = []
    for split in splits:
        if isinstance(split.images, FileImages):
            _check_images(split, problems)
    if problems:
        shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise DataError(f"{len(problems)} image(s) cannot be used (python -m data check lists them all):\n  {shown}")
    try:
        os.makedirs(os.path.dirname(stamp), exist_ok=True)
        with open(stamp, "w") as f:
            f.write(f"{len(files)} images decoded\n")
    except OSError:
        pass  # an unwritable cache only means the next run checks again


def _length_stats(captions: list[str]) -> dict:
    lengths = np.array([len(tokenize(c)) for c in captions]) if captions else np.zeros(1)
    return {
        "min": int(lengths.min()),
        "mean": round(float(lengths.mean()), 2),
        "median": float(np.median(lengths)),
        "p95": float(np.percentile(lengths, 95)),
        "max": int(lengths.max()),
    }


def check_dataset(cfg: DataConfig, open_images: bool = True) -> CheckReport:
    """Load every split, open every image, and collect statistics and all problems."""
    report = CheckReport()
    if cfg.name == "karpathy":
        splits = _karpathy_splits(cfg, report.problems)
    else:
        splits = {}
        for name in SPLITS:
            try:
                splits[name] = load_split(cfg, name)
            except DataError as err:
                report.problems.append(str(err))
    for name, split in splits.items():
        if open_images:
            _check_images(split, report.problems)
        flat = split.flat_captions()
        report.stats[name] = {
            "images": split.num_images,
            "captions": len(flat),
            "truncated_images": split.truncated,
            "padded_images": split.padded,
            "caption_length": _length_stats(flat),
        }
    vocab = None
    if "train" in splits:
        vocab = build_vocab(splits["train"].flat_captions(), cfg.vocab_threshold)
        report.vocab_size = len(vocab)
        for name in SPLITS:
            if name in splits:
                report.oov[name] = oov_rate(vocab, splits[name].flat_captions())
    for split in splits.values():
        empty, warnings = caption_findings(split, vocab, cfg.max_caption_len)
        report.problems += empty
        report.warnings += warnings
    return report


def format_report(cfg: DataConfig, report: CheckReport) -> str:
    """A Markdown summary followed by every problem."""
    lines = [f"dataset: {cfg.name}", "", "| split | images | captions | len min/mean/median/p95/max | truncated | padded |",
             "|---|---|---|---|---|---|"]
    for name, s in report.stats.items():
        L = s["caption_length"]
        lines.append(
            f"| {name} | {s['images']} | {s['captions']} | {L['min']}/{L['mean']}/{L['median']:g}/{L['p95']:g}/{L['max']} "
            f"| {s['truncated_images']} | {s['padded_images']} |"
        )
    lines.append("")
    lines.append(f"vocabulary (train, threshold {cfg.vocab_threshold}): {report.vocab_size} words")
    if report.oov:
        lines.append(f"vocabulary coverage at data.vocab_threshold={cfg.vocab_threshold} (share of caption tokens "
                     "in the vocabulary): " + ", ".join(f"{name} {100 * (1 - rate):.2f}%"
                                                        for name, rate in report.oov.items()))
    for name, rate in report.oov.items():
        lines.append(f"OOV rate {name}: {100 * rate:.2f}% of tokens")
    for name in ("val", "test"):
        if report.oov.get(name, 0.0) > MAX_OOV:
            lines.append(f"WARNING: {100 * report.oov[name]:.1f}% of {name} caption tokens would become <unk> "
                         f"(more than {100 * MAX_OOV:.0f}%): the train captions share few words with {name}, or "
                         f"data.vocab_threshold={cfg.vocab_threshold} is too high for this train set; try a lower "
                         "data.vocab_threshold or check that the splits come from one dataset")
    if any(s["truncated_images"] or s["padded_images"] for s in report.stats.values()):
        lines.append(
            f"note: captions are truncated/padded (repeating the image's own) to exactly "
            f"{cfg.captions_per_image} per image, as the retrieval protocol expects"
        )
    lines += [f"WARNING: {w}" for w in report.warnings]
    if report.problems:
        lines.append("")
        lines.append(f"{len(report.problems)} problem(s):")
        lines += [f"  {p}" for p in report.problems]
    else:
        lines.append("no problems found")
    return "\n".join(lines)
