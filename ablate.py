"""The paper's ablation on one config: each path switched on in turn, same budget, one table.

    python ablate.py [--config FILE] [--out runs/ablation] [--rerank K] [--only a,b] [--seeds 0,1,2]
                     [--beyond [--rows a,b]] [key=value ...]

Rows (every one trains with the same config and epochs, only the paths differ):
embedding only (look and imagine off); + look; + imagine; full (look + imagine); full + fused
(the full run re-ranked by the fused pair score, weight picked on val); with ``--beyond``, the
full model plus each related system in turn (robust noisy-pair weighting, mined hard negatives,
one-word contrast negatives, modality-invariant embedding, contrast plus GAN-imagined negatives,
semi-supervised captioning from 10% of the captions; ``--rows`` picks some of them). The table
shows retrieval and, for rows with a decoder, test CIDEr and how often a generated caption
retrieves its own image (caption R@1). Each row trains into ``OUT/<row>``; a row whose folder
already holds a finished run of the same config is reused, so an interrupted ablation continues
where it stopped. ``--seeds 0,1,2`` trains every row once per seed (``OUT/seed<N>/<row>``) and
reports the mean and sample standard deviation over seeds (a few rsum apart is noise until several
seeds agree); ``--only`` runs a subset of the paper's rows. Writes ``OUT/ablation.md`` and
``OUT/ablation.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence

import numpy as np
import torch

import evaluate
import train
from config import ConfigError, from_dict, load_config, to_dict
from data import DataError
from data.atomic import write_json_atomic, write_text_atomic
from evaluation.report_md import fused_label
from models import ModelError
from runfolder.checkpoint import CheckpointError, config_differences, load_checkpoint
from runfolder.folder import RunFolder
from training.loop import TrainingError
from training.resume import RESUMABLE_KEYS

ROWS = (
    ("embedding", "embedding only", ["look.lambda_i2t=0", "imagine.lambda_t2i=0"]),
    ("look", "+ look", ["imagine.lambda_t2i=0"]),
    ("imagine", "+ imagine", ["look.lambda_i2t=0"]),
    ("full", "full (look + imagine)", []),
)
# With --beyond: the related systems, each switched on over the full model.
BEYOND_ROWS = (
    ("robust", "full + robust noisy-pair weighting", ["robust.enabled=true"]),
    ("mined", "full + mined hard negatives (queue 512)", ["loss.mined_negatives=512"]),
    ("contrast", "full + one-word contrast negatives", ["loss.contrast_weight=1"]),
    ("invariant", "full + modality-invariant (GRL)", ["model.invariant_weight=0.1"]),
    ("imagined", "full + contrast and imagined negatives", ["loss.contrast_weight=1", "loss.imagined_weight=1"]),
    ("semi10", "full, 10% labelled + stage 2", ["data.labelled_fraction=0.1", "semi.stage2_epochs=3"]),
)
# Keys that may differ between a reused run folder and the row's config.
IGNORED_KEYS = ("train.out_dir",) + RESUMABLE_KEYS


def beyond_rows(beyond: bool, names: Optional[str]) -> tuple:
    """The --beyond rows, or the named ones (a ConfigError names the valid rows)."""
    if not beyond:
        if names:
            raise ConfigError("--rows picks among the --beyond rows; add --beyond")
        return ()
    return _pick(BEYOND_ROWS, names, "--rows", "the --beyond rows") if names else BEYOND_ROWS


def _pick(rows: tuple, names: str, option: str, what: str) -> tuple:
    """The rows named in the comma-separated ``names``, in table order; a ConfigError lists the valid ones."""
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    known = [r[0] for r in rows]
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ConfigError(f"{option}: unknown row(s) {', '.join(unknown)}; {what} are {', '.join(known)}")
    return tuple(r for r in rows if r[0] in wanted)


def finished_run(folder: str, cfg) -> Optional[dict]:
    """The report of a finished run of ``cfg`` in ``folder``; None if there is none.

    Raises:
        CheckpointError: the folder holds a run of another config (it would be overwritten or mixed).
    """
    best = os.path.join(folder, "best.pt")
    if not os.path.exists(best):
        return None
    saved = to_dict(from_dict(load_checkpoint(best)["config"]))  # fills keys added since, with defaults
    diffs = [d for d in config_differences(saved, to_dict(cfg)) if d.split(":")[0] not in IGNORED_KEYS]
    if diffs:
        raise CheckpointError(f"{folder} holds a run of another config; move it away or pick another --out:\n  "
                              + "\n  ".join(diffs))
    report = RunFolder(folder).path("report_json")
    return json.load(open(report)) if os.path.exists(report) else None


def table(rows: list[dict]) -> str:
    head = ("| row | i2t R@1 | R@5 | R@10 | t2i R@1 | R@5 | R@10 | rsum | CIDEr | caption R@1 | train time |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        m = r["retrieval"]
        cells = [f"{m[d][k]:.1f}" for d in ("i2t", "t2i") for k in ("r1", "r5", "r10")]
        cap = r.get("captioning")
        cells += [f"{m['rsum']:.1f}", "-" if not cap else f"{cap['CIDEr']:.3f}",
                  "-" if not cap or "distinctiveness" not in cap else f"{cap['distinctiveness']['r1']:.1f}"]
        lines.append(f"| {r['label']} | " + " | ".join(cells) + f" | {r['train_seconds'] / 60:.1f} min |")
    return head + "\n".join(lines) + "\n"


DEFAULT_RERANK = 50  # the fused row's K where the config sets none (configs/custom.yaml's, README)


def base_rows(names: Optional[str]) -> tuple:
    """The paper's rows, or the named ones (``full`` brings ``full + fused`` with it)."""
    return _pick(ROWS, names, "--only", "the rows") if names else ROWS


def run_rows(args, rows_spec: tuple, out: str, overrides: Sequence[str]) -> list[dict]:
    """Train (or reuse) every row into ``out/<row>``; the fused row re-ranks the full run."""
    rows, rerank = [], args.rerank
    for name, label, switches in rows_spec:
        folder = os.path.join(out, name)
        cfg = load_config(args.config, [*overrides, *switches, f"train.out_dir={folder}"])
        if name == "full" and not rerank:
            rerank = cfg.look.fused_top_k or DEFAULT_RERANK
        report = finished_run(folder, cfg)
        if report is None:
            if os.path.exists(os.path.join(folder, "last.pt")):
                cfg.train.resume = True  # an interrupted row continues
            print(f"ablation row '{label}': training in {folder}")
            report = train.run(cfg)
        else:
            print(f"ablation row '{label}': reusing the finished run in {folder}")
        cap = report.get("captioning")
        rows.append({"row": name, "label": label, "run": folder, "retrieval": report["retrieval"]["embedding"],
                     "captioning": None if cap is None else
                     {k: cap[k] for k in ("CIDEr", "distinctiveness") if k in cap},
                     "train_seconds": report["train_seconds"]})
    names = [r["row"] for r in rows]
    if "full" in names:
        at = names.index("full")
        full = rows[at]
        with torch.no_grad():
            fused = evaluate.evaluate(full["run"], captions=False, rerank=rerank, progress=False, html=False,
                                      swap_test=False, out=os.path.join(full["run"], "eval_test_fused.json"))
        fused = fused["retrieval"]["fused"]
        rows.insert(at + 1, {**full, "row": "full_fused", "retrieval": fused,
                             "label": fused_label(fused, with_protocol=False)})
    return rows


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def seed_summary(per_seed: dict[int, list[dict]]) -> list[dict]:
    """Per row: mean and sample standard deviation over the seeds of every recall, rsum, CIDEr and
    train time (rows are matched by name; the fused row's label names its weight per seed)."""
    seeds = sorted(per_seed)
    summary = []
    for row in [r["row"] for r in per_seed[seeds[0]]]:
        runs = [next(r for r in per_seed[s] if r["row"] == row) for s in seeds]
        stats = {f"{d}_{k}": _mean_std([r["retrieval"][d][k] for r in runs])
                 for d in ("i2t", "t2i") for k in ("r1", "r5", "r10")}
        stats["rsum"] = _mean_std([r["retrieval"]["rsum"] for r in runs])
        if all(r["captioning"] for r in runs):
            stats["CIDEr"] = _mean_std([r["captioning"]["CIDEr"] for r in runs])
        stats["train_minutes"] = _mean_std([r["train_seconds"] / 60 for r in runs])
        label = runs[0]["label"] if row != "full_fused" else f"full + fused (top {runs[0]['retrieval']['k']})"
        summary.append({"row": row, "label": label, "seeds": seeds, "rsums": [r["retrieval"]["rsum"] for r in runs],
                        **{k: {"mean": round(m, 4), "std": round(sd, 4)} for k, (m, sd) in stats.items()}})
    return summary


def seed_table(summary: list[dict]) -> str:
    head = ("| row | i2t R@1 | R@5 | R@10 | t2i R@1 | R@5 | R@10 | rsum (mean ± sd) | rsum per seed | CIDEr | "
            "train time |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in summary:
        cells = [f"{r[f'{d}_{k}']['mean']:.1f}" for d in ("i2t", "t2i") for k in ("r1", "r5", "r10")]
        cider = f"{r['CIDEr']['mean']:.3f} ± {r['CIDEr']['std']:.3f}" if "CIDEr" in r else "-"
        cells += [f"{r['rsum']['mean']:.1f} ± {r['rsum']['std']:.1f}", " / ".join(f"{x:.1f}" for x in r["rsums"]),
                  cider, f"{r['train_minutes']['mean']:.1f} min"]
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML preset (default: the built-in Shapes set)")
    parser.add_argument("--out", default="runs/ablation", help="folder for the row runs and the table")
    parser.add_argument("--rerank", type=int, default=0, metavar="K",
                        help=f"top K re-ranked in the fused row (default: the config's look.fused_top_k, or "
                             f"{DEFAULT_RERANK} where that is 0)")
    parser.add_argument("--beyond", action="store_true",
                        help="add the rows of the systems beyond LIM (robust, mined negatives, contrast, invariant, "
                             "imagined negatives, semi-supervised captioning)")
    parser.add_argument("--rows", help="comma-separated subset of the --beyond rows (default: all of them), e.g. "
                        "robust,semi10")
    parser.add_argument("--only", help="comma-separated subset of the paper's rows (embedding, look, imagine, full)")
    parser.add_argument("--seeds", help="comma-separated train.seed values, e.g. 0,1,2: every row is trained once "
                        "per seed (in OUT/seed<N>/<row>) and the table gives mean ± sd over the seeds")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides applied to every row")
    args = parser.parse_args(argv)
    if args.rerank < 0:
        parser.error(f"--rerank must be >= 0 (0: the config's look.fused_top_k), got {args.rerank}")
    spec = base_rows(args.only) + beyond_rows(args.beyond, args.rows)
    name = f"{args.config or 'default (Shapes)'}{', ' + ' '.join(args.overrides) if args.overrides else ''}"
    os.makedirs(args.out, exist_ok=True)
    if not args.seeds:
        rows = run_rows(args, spec, args.out, args.overrides)
        result = {"config": args.config or "default (Shapes)", "overrides": args.overrides, "rows": rows}
        text = f"# Ablation ({name})\n\n" + table(rows)
    else:
        try:
            seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"--seeds {args.seeds!r}: expected comma-separated integers, e.g. 0,1,2") from None
        per_seed = {s: run_rows(args, spec, os.path.join(args.out, f"seed{s}"), [*args.overrides, f"train.seed={s}"])
                    for s in seeds}
        summary = seed_summary(per_seed)
        result = {"config": args.config or "default (Shapes)", "overrides": args.overrides, "seeds": seeds,
                  "summary": summary, "rows": per_seed}
        text = f"# Ablation ({name}; seeds {', '.join(map(str, seeds))})\n\n" + seed_table(summary)
    write_json_atomic(os.path.join(args.out, "ablation.json"), result)
    write_text_atomic(os.path.join(args.out, "ablation.md"), text)
    print(text, end="")
    return result


if __name__ == "__main__":
    try:
        main()
    except (ConfigError, DataError, ModelError, CheckpointError, TrainingError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
