"""``report.html``: one self-contained page (images inlined) a person reads after a run.

The metrics tables; for a sample of test queries, each image with its top-5 captions and each
caption with its top-5 images (correct ones marked); generated captions beside their references;
images imagined from test captions; recall@K curves. Opens from the run folder with no server.
"""
from __future__ import annotations

import base64
import html
import io
import json
import os
from typing import Optional

import numpy as np
import torch
from PIL import Image

from data.atomic import write_text_atomic
from data.records import Split
from metrics.retrieval import ranks_i2t, ranks_t2i
from synthesis.sampling import split_grid

from .report_md import COLLAPSE_SHARE, RECALL_KEYS, fused_label

THUMB = 96  # px, longer side of a thumbnail
CURVE_K = 50

STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #bbb; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.query { display: flex; gap: 1em; align-items: flex-start; margin-bottom: 1em; }
.query ol { margin: 0; }
.hit { color: #0a7d20; font-weight: bold; }
.thumbs { display: flex; gap: 6px; align-items: flex-start; }
.thumbs figure { margin: 0; text-align: center; font-size: 80%; }
img.thumb { border: 3px solid #ddd; }
img.thumb.hit { border-color: #0a7d20; }
.note { color: #666; font-size: 90%; }
"""


def data_uri(image: Image.Image, max_side: Optional[int] = THUMB) -> str:
    """A PNG data URI of ``image``, shrunk (never enlarged past 2x) so its longer side is ``max_side``."""
    image = image.convert("RGB")
    scale = min(max_side / max(image.size), 2.0) if max_side else 1.0
    if scale != 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.NEAREST if scale > 1 else Image.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def thumbnail(split: Split, index: int, hit: bool = False) -> str:
    """An ``<img>`` of image ``index`` of ``split``; a text stand-in for feature sources or unreadable files."""
    label = html.escape(split.images.describe(index))
    if split.images.kind != "pixels":
        return f'<span class="note">[{label}: features, no pixels]</span>'
    try:
        image = split.images.load(index)
    except Exception as err:  # a missing or broken file is named on the page, the page still renders
        return f'<span class="note">[{label}: cannot be read: {html.escape(str(err))}]</span>'
    cls = "thumb hit" if hit else "thumb"
    return f'<img class="{cls}" src="{data_uri(image)}" alt="{label}" title="{label}">'


def metrics_html(report: dict) -> str:
    """The report's numbers as HTML tables."""
    parts = ["<h2>Retrieval</h2>", "<table><tr><th>protocol</th>"
             + "".join(f"<th>{d} {k}</th>" for d in ("i2t", "t2i") for k in ("R@1", "R@5", "R@10", "medr"))
             + "<th>rsum</th></tr>"]
    rows = list(report["retrieval"]["protocols"].items())
    fused = report["retrieval"].get("fused")
    if fused:
        rows.append((fused_label(fused), fused))
    for name, m in rows:
        cells = "".join(f"<td>{m[d][k]:g}</td>" for d in ("i2t", "t2i") for k in RECALL_KEYS[:4])
        parts.append(f"<tr><td>{html.escape(name)}</td>{cells}<td>{m['rsum']:.1f}</td></tr>")
    parts.append("</table>")
    cap = report.get("captioning")
    if cap:
        names = [k for k in ("BLEU-1", "BLEU-4", "METEOR", "ROUGE_L", "CIDEr", "SPICE") if k in cap]
        rows = [("decoder", cap)]
        if cap.get("nearest_neighbour", {}).get("CIDEr") is not None:
            rows.append(("nearest-neighbour baseline", cap["nearest_neighbour"]))
        parts.append(f"<h2>Captioning (beam {cap.get('beam_size', '?')})</h2><table><tr><th></th>"
                     + "".join(f"<th>{n}</th>" for n in names) + "<th>distinct %</th><th>mean words</th></tr>")
        for label, m in rows:
            div = m.get("diversity") or {}
            parts.append(f"<tr><td>{label}</td>"
                         + "".join(f"<td>{'n/a' if m.get(n) is None else f'{m[n]:.3f}'}</td>" for n in names)
                         + f"<td>{div.get('distinct', 'n/a')}</td><td>{div.get('mean_length', 'n/a')}</td></tr>")
        parts.append("</table>")
        div = cap.get("diversity") or {}
        if div.get("top_share", 0) > COLLAPSE_SHARE:
            parts.append(f'<p class="note">WARNING: one caption, "{html.escape(str(div["top_caption"]))}", covers '
                         f"{div['top_share']:.1f}% of the test images: the decoder has likely collapsed</p>")
    for key, title in (("synthesis", "Synthesis (text to image)"), ("wrong_pairs", "Injected wrong training pairs"),
                       ("semi", "Semi-supervised captioning (stage 1, stage 2)")):
        block = report.get(key)
        if block:
            flat = {k: v for k, v in _flatten(block).items() if not isinstance(v, list)}
            parts.append(f"<h2>{title}</h2><table>" + "".join(
                f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in flat.items())
                + "</table>")
    return "\n".join(parts)


def _flatten(block: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in block.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def recall_curve_png(sims: torch.Tensor, captions_per_image: int, max_k: int = CURVE_K) -> Image.Image:
    """Recall@K for K = 1..``max_k``, image -> text and text -> image, as a matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = np.arange(1, max_k + 1)
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    for name, ranks in (("image -> text", ranks_i2t(sims, captions_per_image)),
                        ("text -> image", ranks_t2i(sims, captions_per_image))):
        ax.plot(ks, [100 * float(np.mean(ranks < k)) for k in ks], label=name)
    ax.set_xlabel("K")
    ax.set_ylabel("recall@K (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return Image.open(io.BytesIO(buf.getvalue()))


def per_image(split: Split) -> int:
    """Captions per image (the protocol keeps it fixed: caption j belongs to image j // k)."""
    return split.num_captions // max(split.num_images, 1)


def sample_indices(n: int, count: int) -> list[int]:
    """``count`` evenly spread indices of ``range(n)`` (deterministic, so two reports show the same queries)."""
    return sorted(set(np.linspace(0, n - 1, min(count, n)).round().astype(int).tolist()))


def image_queries_html(split: Split, sims: torch.Tensor, queries: list[int], top: int = 5) -> str:
    k = per_image(split)
    flat = split.flat_captions()
    parts = [f"<h2>Image queries: top {top} captions</h2>"]
    for i in queries:
        best = torch.topk(sims[i], min(top, sims.shape[1])).indices.tolist()
        items = "".join(f'<li class="{"hit" if j // k == i else ""}">{"&#10003; " if j // k == i else ""}'
                        f"{html.escape(flat[j])}</li>" for j in best)
        parts.append(f'<div class="query image-query">{thumbnail(split, i)}<ol>{items}</ol></div>')
    return "\n".join(parts)


def caption_queries_html(split: Split, sims: torch.Tensor, queries: list[int], top: int = 5) -> str:
    k = per_image(split)
    flat = split.flat_captions()
    parts = [f"<h2>Caption queries: top {top} images (the correct image framed in green)</h2>"]
    for j in queries:
        best = torch.topk(sims[:, j], min(top, sims.shape[0])).indices.tolist()
        figures = "".join(f"<figure>{thumbnail(split, i, hit=i == j // k)}<figcaption>{r + 1}</figcaption></figure>"
                          for r, i in enumerate(best))
        parts.append(f'<div class="query caption-query"><p>{html.escape(flat[j])}</p>'
                     f'<div class="thumbs">{figures}</div></div>')
    return "\n".join(parts)


def captions_html(split: Split, results_file: Optional[str], queries: list[int]) -> str:
    """Generated captions (COCO results file) beside the references, for the sampled images."""
    if not results_file or not os.path.exists(results_file):
        return ""
    generated = {int(r["image_id"]): r["caption"] for r in json.load(open(results_file))}
    rows = "".join(f"<tr><td>{thumbnail(split, i)}</td><td><b>{html.escape(generated.get(i, '(none)'))}</b></td>"
                   f"<td>{'<br>'.join(html.escape(c) for c in split.captions[i])}</td></tr>"
                   for i in queries)
    return ("<h2>Generated captions</h2><table class=\"captions\"><tr><th>image</th><th>generated</th>"
            f"<th>references</th></tr>{rows}</table>")


def render(report: dict, split: Split, sims: torch.Tensor, results_file: Optional[str] = None,
           imagined: Optional[Image.Image] = None, samples: int = 6, title: str = "LIM report") -> str:
    """The whole page as a string. ``sims`` is the ``(N, k N)`` test similarity matrix."""
    images = sample_indices(split.num_images, samples)
    captions = [i * per_image(split) for i in sample_indices(split.num_images, samples)][::-1]
    head = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p class=\"note\">dataset {html.escape(str(report.get('dataset', '?')))}, split "
            f"{html.escape(str(report.get('split', '?')))}, checkpoint "
            f"{html.escape(str(report.get('checkpoint', '?')))}</p>")
    body = [metrics_html(report),
            f'<h2>Recall@K</h2><img class="curve" src="{data_uri(recall_curve_png(sims, per_image(split)), None)}" '
            'alt="recall at K curves">',
            image_queries_html(split, sims, images), caption_queries_html(split, sims, captions),
            captions_html(split, results_file, images)]
    if imagined is not None:
        body.append('<h2>Imagined from test captions (first column: the real image)</h2>'
                    f'<img class="imagined" src="{data_uri(imagined, None)}" alt="images generated from test captions">')
    return head + "\n".join(body) + "</body></html>\n"


def write_html_report(path: str, report: dict, model, cfg, vocab, split: Split, embeddings: tuple,
                      device: torch.device, results_file: Optional[str] = None,
                      imagined: Optional[Image.Image] = None) -> str:
    """Render and atomically write the page for ``split`` (``embeddings`` from ``encode_split``);
    the imagined grid is made here unless given. Returns ``path``."""
    img, cap = embeddings
    sims = model.matcher.similarity(img, cap)
    if imagined is None and model.imagine is not None and split.images.kind == "pixels":
        imagined = split_grid(model, split, vocab, cfg, device, captions=6, per_caption=6, seed=cfg.train.seed)[0]
    write_text_atomic(path, render(report, split, sims, results_file, imagined))
    return path
