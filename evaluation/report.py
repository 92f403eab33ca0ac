"""The end of a training run: the best checkpoint on the test split, as report.json, report.md and
report.html, with the imagined-image grid and, for runs on injected wrong pairs, their detection."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Optional

import torch

from config import Config
from data import load_split
from data.records import Split
from data.vocab import Vocabulary
from metrics.captioning import close_meteor
from models.lim import LIM
from models.matcher import BRANCHES
from models.modality import modality_accuracy, probe_accuracy
from runfolder.checkpoint import load_checkpoint
from runfolder.folder import RunFolder, load_trained
from synthesis.probe import probe_generator
from synthesis.sampling import save_png, split_grid

from .captioning import decode_options, evaluate_captions, reference_free_score
from .fused import fused_section
from .graders import grade, grader_images, load_grader
from .nn_captioner import nearest_neighbour_section
from .report_html import write_html_report
from .report_md import markdown_table, retrieval_section, write_report
from .retrieval import encode_split, evaluate_retrieval
from .swaps import binding_queries, swap_accuracy
from .wrong_pairs import wrong_pairs_section

# Imagined-image grids: this many captions (the first caption of the first images), images per caption.
GRID_CAPTIONS, GRID_SAMPLES = 8, 6


def captioning_by_phase(cfg: Config, folder: RunFolder, test, vocab: Vocabulary, device,
                        last_metrics: Optional[dict] = None) -> dict:
    """Test CIDEr / BLEU-4 of the decoder after cross-entropy (``xe.pt``) and after SCST (``last``).

    ``last_metrics``: the test captioning of a checkpoint with ``last``'s decoder (``best``, when the
    last epoch was the best: the GAN-alone phase changes only the generator), taken instead of
    decoding the test split again with the same decoder."""
    if not cfg.look.scst_epochs:  # no SCST: nothing to compare, and decoding the test split again costs time
        return {}
    phases = {"xe": folder.checkpoint("xe"), "scst": folder.checkpoint("last")}
    out = {}
    for phase, path in phases.items():
        if not os.path.exists(path):
            continue
        if phase == "scst" and last_metrics is not None:
            out[phase] = {k: last_metrics[k] for k in ("CIDEr", "BLEU-4")}
            continue
        model = load_trained(folder.root, path)[2].to(device)
        metrics = evaluate_captions(model, test, vocab, cfg.data, device, cfg.look.beam_size,
                                    cfg.train.eval_batch_size, meteor=False, **decode_options(cfg.look))
        out[phase] = {k: metrics[k] for k in ("CIDEr", "BLEU-4")}
    return out


def imagined_grid(cfg: Config, folder: RunFolder, model: LIM, test, vocab: Vocabulary, device) -> tuple:
    """``imagined_test.png`` beside the report (real test image, then samples from its first caption):
    the report's ``synthesis`` block and the grid."""
    grid, ratio, texts = split_grid(model, test, vocab, cfg, device, GRID_CAPTIONS, GRID_SAMPLES, cfg.train.seed)
    save_png(grid, folder.path("imagined_test"))
    section = {"grid": os.path.basename(folder.path("imagined_test")), "grid_captions": texts,
               "diversity_ratio": round(ratio, 3),
               "note": "R-precision and the Frechet distance need a separately trained evaluator: "
                       "python evaluate.py RUN_DIR --evaluator OTHER_RUN"}
    if cfg.data.name == "shapes":
        section["probe"] = probe_generator(model, vocab, cfg, device, seed=cfg.train.seed)
    return section, grid


def modality_section(model: LIM, embeddings: tuple) -> dict:
    """``modality``: how well image vectors can be told from caption vectors (balanced accuracy,
    50% = indistinguishable): a fresh probe trained on half the split's embeddings, for any run,
    and, for runs trained with the adversary, that classifier itself."""
    out = {"probe_accuracy": round(100 * probe_accuracy(*embeddings, list(BRANCHES)), 2)}
    if model.matcher.modality is not None:
        out["classifier_accuracy"] = round(100 * modality_accuracy(model.matcher.modality, *embeddings,
                                                                   list(BRANCHES)), 2)
    out["note"] = ("probe: an MLP trained on half the images and their captions, tested on the rest; classifier: the "
                   "adversary trained behind gradient reversal (model.invariant_weight > 0); 50 = indistinguishable")
    return out


@dataclass
class ReportOptions:
    """What :func:`measure` runs; train.py's end-of-run report and evaluate.py differ only here."""

    protocol: str = "auto"
    captions: bool = True  # captioning metrics, when the run has a decoder
    beam_size: Optional[int] = None  # None: the run's look.beam_size
    rerank_captions: Optional[bool] = None  # None: the run's look.rerank_captions
    rerank_samples: Optional[int] = None  # None: the run's look.rerank_samples
    rerank_fluency_weight: Optional[float] = None  # None: the run's look.rerank_fluency_weight
    meteor: bool = True
    results_path: Optional[str] = None  # where the captions go (COCO results format)
    swap_test: bool = False  # the one-word swap test
    progress: bool = False


def measure(model: LIM, cfg: Config, vocab: Vocabulary, data: Split, device: torch.device, checkpoint: str,
            opts: ReportOptions, writer=None, step: int = 0) -> tuple[dict, tuple]:
    """The report's shared sections for one checkpoint on one split, and the split's embeddings:
    retrieval, modality, the swap test and attribute binding, captioning with its nearest-neighbour
    baseline, and the detection of injected wrong pairs."""
    batch = cfg.train.eval_batch_size
    embeddings = encode_split(model.matcher, data, vocab, cfg.data, device, batch, opts.progress)
    result = evaluate_retrieval(model.matcher, data, vocab, cfg.data, device, opts.protocol, batch, opts.progress,
                                embeddings)
    report = {"dataset": cfg.data.name, "split": data.name, "checkpoint": checkpoint, "protocol": result["primary"],
              "retrieval": retrieval_section(result), "modality": modality_section(model, embeddings)}
    if opts.swap_test:
        report["swaps"] = swap_accuracy(model, data, vocab, cfg, device, progress=opts.progress)
    binding = binding_queries(model, data, vocab, cfg, device, embeddings[0])
    if binding is not None:
        report["binding"] = binding
    if model.decoder is not None and opts.captions:
        decode = decode_options(cfg.look)
        if opts.rerank_captions is not None:
            decode["rerank"] = opts.rerank_captions
        if opts.rerank_samples is not None:
            decode["samples"] = opts.rerank_samples
        if opts.rerank_fluency_weight is not None:
            decode["fluency_weight"] = opts.rerank_fluency_weight
        report["captioning"] = evaluate_captions(model, data, vocab, cfg.data, device,
                                                 opts.beam_size or cfg.look.beam_size, batch, opts.progress,
                                                 opts.results_path, opts.meteor, embeddings[0], **decode)
        report["captioning"]["nearest_neighbour"] = (
            {"note": "not computed on the training split (each image would be its own nearest neighbour)"}
            if data.name == "train" else
            nearest_neighbour_section(model.matcher, load_split(cfg.data, "train"), data, vocab, cfg.data, device, batch,
                                      embeddings[0], opts.meteor, progress=opts.progress))
    if cfg.data.wrong_fraction > 0:
        report["wrong_pairs"] = wrong_pairs_section(model, cfg, vocab, device, opts.progress, writer, step)
    return report, embeddings


def final_report(cfg: Config, folder: RunFolder, device: torch.device, state: dict, writer=None) -> dict:
    """Evaluate the best checkpoint on the test split; write report.json, report.md and report.html.

    With a decoder, captioning is reported for ``best`` (beside the nearest-neighbour baseline in the
    same embedding) and, to show what SCST adds, for the decoder at the end of the cross-entropy
    phase (``xe.pt``) and at the end of training (``last``).
    """
    _, vocab, model, ckpt = load_trained(folder.root, "best")
    model.to(device)
    test = load_split(cfg.data, "test")
    opts = ReportOptions(meteor=cfg.look.meteor, results_path=folder.path("captions_test"))
    report, embeddings = measure(model, cfg, vocab, test, device, folder.checkpoint("best"), opts, writer,
                                 state["step"])
    if model.decoder is not None and cfg.look.fused_top_k > 0:
        report["retrieval"]["fused"] = fused_section(model, cfg, vocab, test, embeddings, report["protocol"],
                                                     cfg.look.fused_top_k, device, progress=False)
    report.update(best_epoch=ckpt["best_epoch"] + 1, val_rsum=round(ckpt["best_rsum"], 2),
                  train_seconds=round(state["seconds"], 1), steps=state["step"])
    if ckpt.get("polish"):
        report["polish"] = ckpt["polish"]
    if model.decoder is not None:
        last_is_best = ckpt["best_epoch"] == state.get("epoch") and "captioning" in report
        report["captioning_by_phase"] = captioning_by_phase(cfg, folder, test, vocab, device,
                                                            report["captioning"] if last_is_best else None)
        if cfg.data.labelled_fraction < 1 or cfg.semi.stage2_epochs > 0:
            report["semi"] = semi_section(cfg, folder, test, vocab, device)
    grid = None
    if model.imagine is not None:
        report["synthesis"], grid = imagined_grid(cfg, folder, model, test, vocab, device)
        if ckpt.get("gan_solo"):
            report["synthesis"]["gan_solo"] = ckpt["gan_solo"]
    write_report(report, folder.path("report_json"), folder.path("report_md"))
    results = report.get("captioning", {}).get("results_file")
    write_html_report(folder.path("report_html"), report, model, cfg, vocab, test, embeddings, device,
                      results, grid)
    close_meteor()
    print(markdown_table(report), end="")
    print(f"report: {folder.path('report_json')}")
    return report


def semi_section(cfg: Config, folder: RunFolder, test: Split, vocab: Vocabulary, device: torch.device) -> dict:
    """The report's ``semi`` block: test captioning at the end of stage 1 (``last.pt``) and, when
    stage 2 ran, of ``stage2.pt``: CIDEr, length, repetition, and distinctiveness with the
    reference-free score under our own matcher, the reward run's (``semi.reward_run``) and an
    evaluator that was not the reward (``semi.evaluator_run``)."""
    marked = folder.path("labelled_images")
    labelled = len(json.load(open(marked))["images"]) if os.path.exists(marked) else "all"
    out = {"labelled_fraction": cfg.data.labelled_fraction, "labelled_images": labelled,
           "stage2_epochs": cfg.semi.stage2_epochs, "reward": cfg.semi.reward,
           "reward_run": cfg.semi.reward_run or "own", "evaluator_run": cfg.semi.evaluator_run or None}
    feature_dim = load_checkpoint(folder.checkpoint("last")).get("image_feature_dim")
    graders = {name: load_grader(run, folder.root, cfg, feature_dim, key)
               for name, run, key in (("reward_run", cfg.semi.reward_run, "semi.reward_run"),
                                      ("evaluator", cfg.semi.evaluator_run, "semi.evaluator_run")) if run}
    stage2 = folder.checkpoint("stage2")
    batch = cfg.train.eval_batch_size
    grader_img = {name: grader_images(grader, test, device, batch) for name, grader in graders.items()}  # frozen: once
    for stage, path in (("stage1", folder.checkpoint("last")), ("stage2", stage2)):
        if stage == "stage2" and (cfg.semi.stage2_epochs <= 0 or not os.path.exists(path)):
            continue
        _, _, model, ckpt = load_trained(folder.root, path)
        model.to(device)
        img = encode_split(model.matcher, test, vocab, cfg.data, device, batch, False, False)[0]
        metrics = evaluate_captions(model, test, vocab, cfg.data, device, cfg.look.beam_size, batch,
                                    progress=False, meteor=False, img=img, keep_captions=True,
                                    **decode_options(cfg.look))
        out[stage] = {k: metrics[k] for k in ("CIDEr", "BLEU-4", "distinctiveness", "fluency")}
        out[stage]["checkpoint"] = os.path.basename(path)
        done = ckpt.get("stage2") or {}
        if stage == "stage2" and done.get("picked"):  # stage2.pt files from before semi.pick hold the last epoch
            out[stage]["checkpoint"] += f" (epoch {done['picked']} of {done['epochs']})"
            out["stage2_val"] = done["history"]  # val CIDEr-D and R@1 per stage-2 epoch, 0 = stage 1's decoder
        captions = metrics["captions"]
        out[stage]["clip_s"] = reference_free_score(model.matcher, test, captions, vocab, cfg.data, device, batch, img)
        for name, grader in graders.items():
            out[stage][name] = grade(grader, test, captions, device, batch, grader_img[name])
    return out
