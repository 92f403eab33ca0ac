"""Which pairs of a split are wrong? Rank every (image, caption) pair by suspicion, with no labels.

    python audit.py RUN_DIR [--split train] [--out DIR] [--top 50] [--checkpoint best] [--no-caption-prior]

Writes ``DIR/audit_{split}.csv`` (one row per pair, most suspect first: image, caption, the
combined suspicion (mean rank percentile of the signals), fused score, clean probability, ranking
loss, the loss training last recorded (robust runs), the discriminator's logit for runs with a
GAN, and the suspect flag at the fused score's threshold fitted on val), ``DIR/audit_{split}.html`` (the top suspects with
thumbnails; a missing image is named on the page) and ``DIR/audit_{split}.json`` (notes and, when
the run was trained on injected wrong pairs, the AUROC and average precision of every signal at
finding them). DIR defaults to RUN_DIR. The fused score takes each caption's prior out (its mean
likelihood over 10 val images: about 4x the decoder work of the pairs themselves); ``--no-caption-prior``
skips that on a large collection.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

import numpy as np
import torch

from data import DataError, load_split
from data.atomic import ensure_writable, write_json_atomic, write_text_atomic
from evaluation.audit_signals import audit_split, detection_summary, known_wrong, suspects_html, write_csv
from models import ModelError
from runfolder.checkpoint import CheckpointError
from runfolder.folder import load_trained
from training.distributed import setup


def audit(run_dir: str, split: str = "train", out: Optional[str] = None, top: int = 50, checkpoint: str = "best",
          device: str = "auto", progress: bool = True, caption_prior: bool = True) -> dict:
    """Audit ``split`` of ``run_dir``; returns the summary written to ``audit_{split}.json``."""
    cfg, vocab, model, _ = load_trained(run_dir, checkpoint)
    cfg.look.fused_caption_prior = cfg.look.fused_caption_prior and caption_prior
    out = out or run_dir
    ensure_writable(os.path.join(out, f"audit_{split}.json"))  # before the work, not after it
    _, dev = setup(device)
    model.to(dev).eval()
    data = load_split(cfg.data, split)
    val = load_split(cfg.data, "val")
    result = audit_split(run_dir, model, cfg, vocab, data, val, dev, progress)
    signals = result["signals"]
    order = np.argsort(-np.nan_to_num(signals["suspicion"], nan=-1.0), kind="stable")  # most suspect first
    wrong = known_wrong(data)
    summary = {"run": run_dir, "split": split, "pairs": int(len(order)), "notes": result["notes"],
               "flagged": int(np.nansum(signals["suspect"])) if "suspect" in signals else None,
               "missing_images": result["missing"]}
    if wrong is not None:
        summary["injected_wrong"] = int(wrong.sum())
        summary["detection"] = detection_summary(signals, wrong)
    base = os.path.join(out, f"audit_{split}")
    write_csv(base + ".csv", data, signals, order, wrong)
    write_text_atomic(base + ".html", suspects_html(data, signals, order, top, f"Most suspect pairs of {split}",
                                                    summary.get("detection"), wrong, result["missing"]))
    write_json_atomic(base + ".json", summary)
    return summary


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--split", default="train", choices=("train", "val", "test"))
    parser.add_argument("--out", help="output folder (default: RUN_DIR)")
    parser.add_argument("--top", type=int, default=50, help="suspects shown on the HTML page")
    parser.add_argument("--checkpoint", default="best")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-caption-prior", action="store_true",
                        help="the fused score without taking out each caption's prior (10 decoder passes fewer per pair)")
    args = parser.parse_args(argv)
    summary = audit(args.run_dir, args.split, args.out, args.top, args.checkpoint, args.device,
                    caption_prior=not args.no_caption_prior)
    print(f"{summary['pairs']} pairs audited; flagged by the fused score: {summary['flagged']}")
    for name, m in summary.get("detection", {}).items():
        print(f"  {name}: AUROC {m['auroc']:.3f}, AP {m['average_precision']:.3f} at the injected wrong pairs")
    for note in summary["notes"]:
        print(f"note: {note}")
    return summary


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    try:
        main()
    except (CheckpointError, DataError, ModelError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
