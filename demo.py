"""Demos on a trained run.

    python demo.py caption RUN_DIR IMAGE [IMAGE ...] [--beam 3] [--checkpoint best]
    python demo.py imagine RUN_DIR "TEXT" [-n 8] [--seed 0] --out grid.png [--checkpoint best]
    python demo.py score RUN_DIR PAIRS.jsonl [--out scores.jsonl] [--checkpoint best]
    python demo.py retrieve RUN_DIR (--text "TEXT" | --image PATH) [-k 5] [--split test] [--json]
    python demo.py index RUN_DIR FOLDER --out GALLERY.h5 [--batch-size 64] [--workers 0] [--ann hnsw|ivf]
    python demo.py index RUN_DIR --captions FILE --out GALLERY.h5
    python demo.py retrieve RUN_DIR --gallery GALLERY.h5 (--text "TEXT" | --image PATH) [-k 10] [--json] [--rerank K]
    python demo.py export GALLERY.h5 --format npy --out DIR

``caption`` prints one caption per image file (any format and mode PIL reads); an unreadable file
is named on stderr and the others are still captioned (exit 1, or 2 when none could be read).
``imagine`` draws ``n`` images from a caption with the run's text-to-image GAN and writes them as
one PNG grid; the seed fixes the noise, so another seed gives other images. ``score`` reads one
``{"image": path, "caption": text}`` per line (relative paths are under the JSONL's folder) and
gives each pair its fused score and a suspect flag (threshold fitted on the run's val split); a bad
line (not JSON, a missing image, an empty caption) is named with its line number and the others
are still scored. ``retrieve`` searches a split's gallery: the images for a text, or the captions
for an image file, by embedding similarity.

``index`` encodes every image file under FOLDER (recursively) once into a gallery file (HDF5, layout
in gallery/store.py); run again, it encodes only new or changed files. ``retrieve --gallery``
searches it (a text finds images; an image finds the captions of a ``--captions`` gallery);
``--rerank K`` re-orders the top K images of a text by the fused score. ``export`` writes a
gallery's vectors as .npy files.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence

import torch

from data import DataError, load_split
from data.atomic import ensure_writable, write_text_atomic
from data.datasets import encode_texts, image_transform
from data.images import open_rgb
from data.vocab import warn_unknown_words
from evaluation.captioning import decode_images, decode_options
from evaluation.fused import PairScorer
from evaluation.retrieval import encode_split
from gallery import EXPORT_FORMATS, GalleryError, describe, export_gallery, index_folder, retrieve_gallery
from gallery.ann import ANN_KINDS
from models import ModelError
from runfolder.checkpoint import CheckpointError
from runfolder.folder import load_trained, require_decoder
from synthesis.sampling import image_grid, imagine, save_png


def caption_images(run_dir: str, paths: Sequence[str], beam: Optional[int] = None, checkpoint: str = "best",
                   device: str = "cpu") -> tuple[list[tuple[str, str]], list[str]]:
    """``(path, caption)`` per readable image, and an error naming each unreadable one."""
    cfg, vocab, model, _ = load_trained(run_dir, checkpoint)
    require_decoder(model, "captioning images", run_dir)
    if cfg.model.image_encoder == "precomp":
        raise CheckpointError(f"{run_dir} was trained on precomputed features, so it cannot read image files; "
                              "train with an image encoder (small_cnn, resnet*) to caption files")
    transform = image_transform(cfg.data, train=False)
    images, good, errors = [], [], []
    for path in paths:
        try:
            images.append(transform(open_rgb(path)))
            good.append(path)
        except DataError as err:
            errors.append(str(err))
    if not images:
        return [], errors
    model.to(device)
    with torch.no_grad():
        img = model.matcher.encode_images(torch.stack(images).to(device))
        captions = decode_images(model, img, vocab, beam or cfg.look.beam_size, max_len=cfg.data.max_caption_len,
                                 **decode_options(cfg.look))
    return list(zip(good, captions)), errors


def imagine_grid(run_dir: str, text: str, n: int = 8, seed: int = 0, out: str = "imagined.png",
                 checkpoint: str = "best", device: str = "cpu") -> str:
    """Write ``n`` images imagined from ``text`` as a PNG grid at ``out``; returns ``out``."""
    cfg, vocab, model, _ = load_trained(run_dir, checkpoint)
    if model.imagine is None:
        raise CheckpointError(f"{run_dir} has no text-to-image generator: it was trained with imagine.lambda_t2i=0; "
                              "train with imagine.lambda_t2i=1 (the default) to imagine images")
    if not text.strip():
        raise DataError("the text to imagine from is empty")
    if n < 1:
        raise DataError(f"-n must be at least 1, got {n}")
    ensure_writable(out)
    warn_unknown_words(text, vocab)
    model.to(device)
    images = imagine(model, [text], vocab, n, seed, torch.device(device), cfg.data.max_caption_len)
    columns = min(n, 8)
    save_png(image_grid(images, columns, [text] + [""] * ((n - 1) // columns)), out)
    return out


def read_pairs(path: str, transform) -> tuple[list[dict], list[dict]]:
    """Good pairs ``{"line", "image", "caption", "tensor"}`` and errors ``{"line", "error"}`` of a JSONL file."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: pairs file not found")
    root, pairs, errors = os.path.dirname(os.path.abspath(path)), [], []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                errors.append({"line": number, "error": f"{path}:{number}: not UTF-8 text (byte {err.start + 1})"})
                continue
            if not text.strip():
                continue
            try:
                item = json.loads(text)
            except json.JSONDecodeError as err:
                errors.append({"line": number, "error": f"{path}:{number}: not valid JSON ({err.msg})"})
                continue
            if not isinstance(item, dict) or not isinstance(item.get("image"), str) or "caption" not in item:
                errors.append({"line": number, "error": f"{path}:{number}: expected {{\"image\": path, \"caption\": text}}"})
                continue
            caption = str(item["caption"]).strip()
            if not caption:
                errors.append({"line": number, "error": f"{path}:{number}: empty caption"})
                continue
            image = item["image"] if os.path.isabs(item["image"]) else os.path.join(root, item["image"])
            try:
                tensor = transform(open_rgb(image))
            except DataError as err:
                errors.append({"line": number, "error": f"{path}:{number}: {err}"})
                continue
            pairs.append({"line": number, "image": item["image"], "caption": caption, "tensor": tensor})
    return pairs, errors


def score_pairs(run_dir: str, path: str, checkpoint: str = "best", device: str = "cpu") -> tuple[list[dict], list[dict], PairScorer]:
    """Scored pairs ``{"line", "image", "caption", "score", "suspect"}``, the bad lines, and the scorer."""
    cfg, vocab, model, _ = load_trained(run_dir, checkpoint)
    if cfg.model.image_encoder == "precomp":
        raise CheckpointError(f"{run_dir} was trained on precomputed features, so it cannot read image files")
    pairs, errors = read_pairs(path, image_transform(cfg.data, train=False))
    model.to(device)
    scorer = PairScorer(model, load_split(cfg.data, "val"), vocab, cfg.data, torch.device(device),
                        cfg.look.fused_caption_prior)
    scores = scorer.score(torch.stack([p["tensor"] for p in pairs]), [p["caption"] for p in pairs]) if pairs else []
    out = [{"line": p["line"], "image": p["image"], "caption": p["caption"], "score": round(float(s), 4),
            "suspect": bool(s < scorer.threshold)} for p, s in zip(pairs, scores)]
    return out, errors, scorer


def retrieve(run_dir: str, text: Optional[str] = None, image: Optional[str] = None, k: int = 5, split: str = "test",
             checkpoint: str = "best", device: str = "cpu") -> list[tuple[float, int, str]]:
    """Top ``k`` of ``split`` for one query: ``(score, index, what)``, images for ``text``
    (``what`` names the image) or captions for ``image`` (``what`` is the caption)."""
    if (text is None) == (image is None):
        raise DataError("give exactly one query: --text or --image")
    if text is not None and not text.strip():
        raise DataError("the query text is empty")
    if k < 1:
        raise DataError(f"-k must be at least 1, got {k}")
    cfg, vocab, model, _ = load_trained(run_dir, checkpoint)
    if text is not None:
        warn_unknown_words(text, vocab)
    dev = torch.device(device)
    model.to(dev)
    data = load_split(cfg.data, split)
    gallery_img, gallery_cap = encode_split(model.matcher, data, vocab, cfg.data, dev, cfg.train.eval_batch_size,
                                            progress=False)
    with torch.no_grad():
        if text is not None:
            ids, lengths = encode_texts([text], vocab, cfg.data.max_caption_len)
            query = model.matcher.encode_captions(ids.to(dev), lengths)
            scores = model.matcher.similarity(gallery_img, {b: v.cpu() for b, v in query.items()})[:, 0]
            names = [data.images.describe(i) for i in range(data.num_images)]
        else:
            if cfg.model.image_encoder == "precomp":
                raise CheckpointError(f"{run_dir} was trained on precomputed features, so it cannot read image files")
            x = image_transform(cfg.data, train=False)(open_rgb(image))[None]
            query = model.matcher.encode_images(x.to(dev))
            scores = model.matcher.similarity({b: v.cpu() for b, v in query.items()}, gallery_cap)[0]
            names = data.flat_captions()
    top = torch.topk(scores, min(k, len(scores)))
    return [(float(s), int(i), names[i]) for s, i in zip(top.values, top.indices)]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    cap = sub.add_parser("caption", help="caption image files")
    cap.add_argument("run_dir")
    cap.add_argument("images", nargs="+")
    cap.add_argument("--beam", type=int, help="beam size (default: the run's look.beam_size)")
    cap.add_argument("--checkpoint", default="best")
    cap.add_argument("--device", default="cpu")
    ima = sub.add_parser("imagine", help="draw images from a caption")
    ima.add_argument("run_dir")
    ima.add_argument("text")
    ima.add_argument("-n", type=int, default=8, help="images to draw (default 8)")
    ima.add_argument("--seed", type=int, default=0, help="noise seed: another seed gives other images")
    ima.add_argument("--out", required=True, help="PNG file to write")
    ima.add_argument("--checkpoint", default="best")
    ima.add_argument("--device", default="cpu")
    sco = sub.add_parser("score", help="score (image, caption) pairs from a JSONL file and flag suspect ones")
    sco.add_argument("run_dir")
    sco.add_argument("pairs")
    sco.add_argument("--out", help="also write the results as JSONL here")
    sco.add_argument("--checkpoint", default="best")
    sco.add_argument("--device", default="cpu")
    ret = sub.add_parser("retrieve", help="search a split, or an indexed gallery, with a text or an image")
    ret.add_argument("run_dir")
    query = ret.add_mutually_exclusive_group(required=True)
    query.add_argument("--text", help="find the images for this caption")
    query.add_argument("--image", help="find the captions for this image file")
    ret.add_argument("-k", type=int, help="results to show (default 10 with --gallery, else 5)")
    ret.add_argument("--split", default="test", choices=("train", "val", "test"))
    ret.add_argument("--gallery", help="search this gallery file (made by `demo.py index`) instead of a split")
    ret.add_argument("--json", action="store_true", help="one JSON object per line, best first")
    ret.add_argument("--rerank", type=int, default=0, metavar="K",
                     help="re-order the top K images of a text query by the fused score (gallery search)")
    ret.add_argument("--fused-weight", type=float, help="the embedding's share of the fused score (default: picked "
                     "on the run's val split)")
    ret.add_argument("--exact", action="store_true", help="scan the whole gallery even if it has an approximate index")
    ret.add_argument("--checkpoint", default="best")
    ret.add_argument("--device", default="cpu")
    idx = sub.add_parser("index", help="encode every image under a folder (or a caption file) into a gallery file")
    idx.add_argument("run_dir")
    idx.add_argument("folder", nargs="?", help="folder of images (searched recursively)")
    idx.add_argument("--captions", help="index the lines of this text file (one caption each) instead of images")
    idx.add_argument("--out", required=True, help="the gallery file to write (HDF5)")
    idx.add_argument("--batch-size", type=int, default=64)
    idx.add_argument("--workers", type=int, default=0, help="image-decoding worker processes")
    idx.add_argument("--dtype", default="float32", choices=("float32", "float16"), help="how vectors are stored")
    idx.add_argument("--ann", choices=ANN_KINDS, help="also build a faiss index (pip install -e \".[faiss]\")")
    idx.add_argument("--save-every", type=float, default=60.0, metavar="SECONDS",
                     help="save the work so far to GALLERY.partial this often (a killed run resumes from it)")
    idx.add_argument("--checkpoint", default="best")
    idx.add_argument("--device", default="cpu")
    exp = sub.add_parser("export", help="write a gallery's vectors as plain arrays")
    exp.add_argument("gallery")
    exp.add_argument("--format", default="npy", choices=EXPORT_FORMATS)
    exp.add_argument("--out", required=True, help="folder for the arrays")
    args = parser.parse_args(argv)
    try:
        if args.command == "retrieve":
            return print_retrieved(args)
        if args.command == "index":
            result = index_folder(args.run_dir, args.folder, args.out, args.captions, args.checkpoint,
                                  args.batch_size, args.workers, args.device, args.dtype, args.ann,
                                  save_every=args.save_every)
            print(f"indexed {result.encoded} new or changed, kept {result.reused}, skipped {len(result.skipped)} "
                  f"unreadable; {describe(args.out)}")
            return 0
        if args.command == "export":
            for path in export_gallery(args.gallery, args.out, args.format):
                print(path)
            return 0
        if args.command == "score":
            if args.out:
                ensure_writable(args.out)
            return print_scores(*score_pairs(args.run_dir, args.pairs, args.checkpoint, args.device), args.out)
        if args.command == "imagine":
            print(imagine_grid(args.run_dir, args.text, args.n, args.seed, args.out, args.checkpoint, args.device))
            return 0
        if args.beam is not None and args.beam < 1:
            raise DataError(f"--beam must be at least 1, got {args.beam}")
        captions, errors = caption_images(args.run_dir, args.images, args.beam, args.checkpoint, args.device)
        for path, caption in captions:
            print(f"{path}\t{caption}")
        for error in errors:
            print(f"error: {error}", file=sys.stderr)
        return 0 if not errors else (1 if captions else 2)
    except (CheckpointError, DataError, ModelError, GalleryError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def print_retrieved(args) -> int:
    """``retrieve``: a split (tab-separated rank, score, index, item) or a gallery (rank, score,
    item); ``--json`` prints one object per line instead."""
    if args.gallery is None:
        if args.rerank or args.exact or args.fused_weight is not None:
            raise DataError("--rerank, --exact and --fused-weight go with --gallery")
        field = "path" if args.text is not None else "caption"
        found = retrieve(args.run_dir, args.text, args.image, 5 if args.k is None else args.k, args.split,
                         args.checkpoint, args.device)
        rows = [{"rank": rank, "score": round(score, 6), "index": index, field: name}
                for rank, (score, index, name) in enumerate(found, 1)]
    else:
        rows = retrieve_gallery(args.run_dir, args.gallery, args.text, args.image, 10 if args.k is None else args.k,
                                args.rerank, args.checkpoint, args.device, args.exact, args.fused_weight)
    for row in rows:
        print(json.dumps(row, ensure_ascii=False) if args.json else "\t".join(str(v) for v in row.values()))
    return 0


def print_scores(results: list[dict], errors: list[dict], scorer: PairScorer, out: Optional[str]) -> int:
    """Print one line per pair (and per bad line, to stderr); exit code 1 when a line could not be scored."""
    print(f"# fused weight {scorer.weight:.1f}, suspect below {scorer.threshold:.3f} (val AUROC "
          f"{scorer.val_auroc:.3f}, balanced accuracy {scorer.val_balanced_accuracy:.3f})")
    for r in results:
        print(f"{r['line']}\t{r['score']:.4f}\t{'SUSPECT' if r['suspect'] else 'ok'}\t{r['image']}\t{r['caption']}")
    for e in errors:
        print(f"error: {e['error']}", file=sys.stderr)
    if out:
        text = "".join(json.dumps(r) + "\n" for r in sorted(results + errors, key=lambda r: r["line"]))
        try:
            write_text_atomic(out, text)
        except OSError as err:
            print(f"error: cannot write {out}: {err.strerror or err}", file=sys.stderr)
            return 2
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
