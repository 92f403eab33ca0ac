"""Evaluate a trained run: the retrieval protocol of docs/DESIGN.md section 5.

    python evaluate.py RUN_DIR [--split test] [--protocol auto|1k|5k|full] [--checkpoint best|last|PATH]
                       [--out FILE] [--no-captions] [--beam N]
                       [--evaluator OTHER_RUN] [--inception-weights FILE] [--seed 0] [--mismatched 99]
                       [--rerank K [--no-caption-prior]] [--no-html] [--no-swaps]

Prints a Markdown table and writes JSON (default RUN_DIR/eval_{split}.json, eval_{split}_{name}.json for a
checkpoint other than best) and, beside it, the generated captions (eval_{split}_captions.json) and a
self-contained HTML page (eval_{split}.html: metrics, retrieved captions and images for sample
queries, generated captions and images, recall@K curves). The JSON holds retrieval;
captioning metrics when the run has a caption decoder; synthesis metrics when it has a generator
and ``--evaluator`` names a separately trained run (matcher without the GAN) whose embedding
grades the generated images, and the distinctiveness of the generated captions under the
evaluator's embedding (``captioning.distinctiveness_evaluator``). With ``--rerank K`` (runs with a decoder), ``retrieval.fused`` too:
the embedding's top K per query re-ordered by the fused score (embedding similarity + caption
log-likelihood, weight picked on val; image-to-text takes each caption's prior out unless
``--no-caption-prior`` or the run's ``look.fused_caption_prior=false``). A run trained with ``data.wrong_fraction`` gets
``wrong_pairs``: AUROC and average precision of the fused pair score at flagging the training
pairs that were made wrong. ``swaps``: per word class (colour, shape, size, relation), how often
the true caption beats the same caption with one word of that class swapped (image queries) and
how often a caption picks its image over one showing the swapped thing (caption queries).
Captioning includes ``distinctiveness`` (how often each generated caption retrieves its own image
among the split's, R@1 and R@5 in the run's embedding) and ``fluency`` (length, back-to-back
repeated words, share found verbatim among the references), ``diversity`` (share of distinct
captions, mean length, the most frequent caption and the share of images it covers; report.md
warns when one caption covers over a fifth of them) and ``nearest_neighbour``: the same metrics
for the captions of the nearest training images in the run's embedding (first 5,000 training
images; not on ``--split train``), the baseline the decoder should beat. ``modality``: how well a fresh
probe tells image vectors from caption vectors (and the adversary's accuracy for runs trained
with ``model.invariant_weight``). ``recall_metrics`` is importable from here.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

import torch

from data import DataError, load_split
from data.atomic import ensure_writable
from evaluation.fused import fused_section
from evaluation.report import ReportOptions, measure
from evaluation.report_html import write_html_report
from evaluation.report_md import markdown_table, write_report
from evaluation.retrieval import PROTOCOLS
from metrics.captioning import close_meteor
from metrics.retrieval import recall_metrics, recall_metrics_folds
from models import ModelError
from runfolder.checkpoint import CheckpointError
from runfolder.folder import RunFolder, load_trained, require_decoder
from synthesis.evaluator import evaluate_synthesis
from training.distributed import setup

__all__ = ["evaluate", "main", "recall_metrics", "recall_metrics_folds"]


def evaluate(run_dir: str, split: str = "test", protocol: str = "auto", checkpoint: str = "best",
             device: str = "auto", out: Optional[str] = None, progress: bool = True, captions: bool = True,
             beam_size: Optional[int] = None, evaluator: Optional[str] = None,
             inception_weights: Optional[str] = None, seed: int = 0, mismatched: int = 99,
             rerank: int = 0, html: bool = True, swap_test: bool = True, decode: Optional[str] = None,
             samples: Optional[int] = None, fluency_weight: Optional[float] = None,
             caption_prior: Optional[bool] = None) -> dict:
    """Evaluate ``checkpoint`` of ``run_dir`` on ``split``; returns (and writes) the report.

    Retrieval always; captioning too when the run has a decoder (and ``captions`` is true), with
    the captions written in COCO results format beside the JSON (``eval_test.json`` ->
    ``eval_test_captions.json``; the run's own ``captions_test.json`` is never rewritten); synthesis
    when the run has a generator and ``evaluator`` names another run trained without the GAN.
    With ``html``, the page a person reads goes beside the JSON (``eval_test.json`` -> ``eval_test.html``).
    """
    if inception_weights and not evaluator:
        raise ValueError("--inception-weights goes with --evaluator (the synthesis metrics need both the "
                         "evaluator run and the generated images)")
    cfg, vocab, model, _ = load_trained(run_dir, checkpoint)
    out = out or default_out(run_dir, split, checkpoint)
    ensure_writable(out)  # before the work, not after it
    _, dev = setup(device)
    model.to(dev)
    if rerank:
        require_decoder(model, "--rerank (its caption likelihood)", run_dir)
    data = load_split(cfg.data, split)
    # Captions go beside --out: the run's own files stay as training left them.
    results = os.path.splitext(out)[0] + "_captions.json" if model.decoder is not None and captions else None
    opts = ReportOptions(protocol, captions, beam_size, None if decode is None else decode == "rerank", samples,
                         fluency_weight, True, results, swap_test, progress)
    report, embeddings = measure(model, cfg, vocab, data, dev, RunFolder(run_dir).checkpoint(checkpoint), opts)
    close_meteor()  # scored both caption sets; an ablation goes on training in this process
    if rerank:
        report["retrieval"]["fused"] = fused_section(model, cfg, vocab, data, embeddings, report["protocol"], rerank,
                                                     dev, progress, caption_prior)
    if evaluator and model.imagine is None and "captioning" not in report:
        raise CheckpointError(f"{run_dir} has neither a generator (imagine.lambda_t2i=0) nor captions to grade "
                              "(no decoder, or --no-captions): there is nothing for --evaluator to grade")
    if evaluator and "captioning" in report:
        report["captioning"]["distinctiveness_evaluator"] = evaluator_distinctiveness(evaluator, run_dir, results, data,
                                                                                      dev)
    if evaluator and model.imagine is not None:
        report["synthesis"] = evaluate_synthesis(model, data, vocab, cfg, dev, evaluator, run_dir, seed, mismatched,
                                                 inception_weights, progress)
    elif model.imagine is not None:
        report["synthesis"] = {"note": "generator present; pass --evaluator OTHER_RUN (a matcher trained with "
                                       "imagine.lambda_t2i=0) for R-precision and the Frechet distance"}
    if model.imagine is not None and cfg.data.name == "shapes":
        from synthesis.probe import probe_generator

        report["synthesis"]["probe"] = probe_generator(model, vocab, cfg, dev, seed=seed)
    write_report(report, out)
    if html:
        write_html_report(os.path.splitext(out)[0] + ".html", report, model, cfg, vocab, data, embeddings, dev, results)
    return report


def default_out(run_dir: str, split: str, checkpoint: str) -> str:
    """``RUN_DIR/eval_{split}.json`` for ``best``, ``RUN_DIR/eval_{split}_{name}.json`` for another checkpoint."""
    stem = "" if checkpoint == "best" else "_" + os.path.splitext(os.path.basename(checkpoint))[0]
    return os.path.join(run_dir, f"eval_{split}{stem}.json")


def evaluator_distinctiveness(evaluator: str, run_dir: str, results: str, data, device) -> dict:
    """Distinctiveness of the run's generated captions (``results``, COCO format) under another run's
    matcher: comparable across runs, and not the embedding a stage-2 reward was optimising."""
    import json

    from evaluation.captioning import distinctiveness
    from synthesis.evaluator import load_evaluator

    ecfg, evocab, emodel = load_evaluator(evaluator, run_dir)
    captions = [r["caption"] for r in sorted(json.load(open(results)), key=lambda r: r["image_id"])]
    out = distinctiveness(emodel.to(device).matcher, data, captions, evocab, ecfg.data, device,
                          ecfg.train.eval_batch_size)
    return {**out, "evaluator": evaluator}


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--protocol", default="auto", choices=PROTOCOLS,
                        help="auto: COCO 1K folds and 5K on a 5,000-image split, else the full split")
    parser.add_argument("--checkpoint", default="best", help="best, last, or a checkpoint path")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", help="JSON output (default RUN_DIR/eval_SPLIT.json); the captions and the HTML page go "
                                      "beside it")
    parser.add_argument("--no-captions", action="store_true", help="skip the captioning metrics")
    parser.add_argument("--beam", type=int, help="beam size for captioning (default: the run's look.beam_size)")
    parser.add_argument("--decode", choices=("beam", "rerank"),
                        help="captioning: the most likely beam, or the beam the matcher scores highest with the image "
                             "(default: the run's look.rerank_captions)")
    parser.add_argument("--samples", type=int, help="with --decode rerank: captions sampled per image to join the "
                                                    "beams as candidates (default: the run's look.rerank_samples)")
    parser.add_argument("--fluency-weight", type=float, help="with --decode rerank: the decoder likelihood's share of a "
                        "candidate's score (default: the run's look.rerank_fluency_weight)")
    parser.add_argument("--evaluator", help="run folder of a matcher trained WITHOUT the GAN; grades generated "
                                            "images (R-precision, Frechet distance in its embedding) and the "
                                            "distinctiveness of generated captions")
    parser.add_argument("--inception-weights", help="local torch-fidelity Inception-v3 weights file: adds the "
                                                    "published FID and IS (needs pip install -e \".[fid]\")")
    parser.add_argument("--seed", type=int, default=0, help="noise and candidate-caption seed for synthesis")
    parser.add_argument("--no-html", action="store_true", help="skip the HTML page beside the JSON")
    parser.add_argument("--no-swaps", action="store_true",
                        help="skip the one-word-swap test (true caption vs the same caption with one colour, "
                             "shape, size or relation word changed)")
    parser.add_argument("--rerank", type=int, default=0, metavar="K",
                        help="re-rank the embedding's top K per query by the fused score (needs a decoder)")
    parser.add_argument("--no-caption-prior", action="store_true",
                        help="with --rerank: rank captions by their raw likelihood, without taking out each "
                             "caption's prior (the fused score before 2026-12-03; default: the run's "
                             "look.fused_caption_prior)")
    parser.add_argument("--mismatched", type=int, default=99,
                        help="R-precision: mismatched captions per generated image (AttnGAN uses 99)")
    args = parser.parse_args(argv)
    if args.beam is not None and args.beam < 1:
        parser.error(f"--beam must be >= 1, got {args.beam}")
    if args.rerank < 0:
        parser.error(f"--rerank must be >= 0 (0: off), got {args.rerank}")
    if args.no_caption_prior and not args.rerank:
        parser.error("--no-caption-prior goes with --rerank K (it changes the fused score's re-ranking)")
    if args.samples is not None and args.samples < 0:
        parser.error(f"--samples must be >= 0, got {args.samples}")
    if args.fluency_weight is not None and args.fluency_weight < 0:
        parser.error(f"--fluency-weight must be >= 0, got {args.fluency_weight}")
    if args.mismatched < 1:
        parser.error(f"--mismatched must be >= 1, got {args.mismatched}")
    report = evaluate(args.run_dir, args.split, args.protocol, args.checkpoint, args.device, args.out,
                      captions=not args.no_captions, beam_size=args.beam, evaluator=args.evaluator,
                      inception_weights=args.inception_weights, seed=args.seed, mismatched=args.mismatched,
                      rerank=args.rerank, html=not args.no_html, swap_test=not args.no_swaps, decode=args.decode,
                      samples=args.samples, fluency_weight=args.fluency_weight,
                      caption_prior=False if args.no_caption_prior else None)
    print(markdown_table(report), end="")
    return report


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    try:
        main()
    except (CheckpointError, DataError, ModelError, ValueError, FileNotFoundError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
