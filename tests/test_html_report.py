"""report.html: self-contained, every image inlined and readable, retrieval marks that match the similarities."""
import base64
import io
import re
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from PIL import Image

import evaluate
from data import load_split
from data.records import Split
from data.images import FileImages
from evaluation.retrieval import encode_split
from evaluation.report_html import render, sample_indices
from runfolder.folder import load_trained


class Page(HTMLParser):
    """Collects image sources, table count and the retrieval blocks of a report page."""

    def __init__(self):
        super().__init__()
        self.images, self.tables, self.blocks, self._block = [], 0, [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "h2":  # a new section ends the last query block
            self._block = None
        if tag == "img":
            self.images.append(a["src"])
            if self._block is not None:
                self._block["imgs"].append(a.get("class", ""))
        if tag == "table":
            self.tables += 1
        if tag == "div" and "query" in a.get("class", ""):
            self._block = {"kind": a["class"].split()[1], "hits": 0, "items": 0, "imgs": []}
            self.blocks.append(self._block)
        if tag == "li" and self._block is not None:
            self._block["items"] += 1
            self._block["hits"] += a.get("class") == "hit"


@pytest.fixture
def run(reported_run):
    return reported_run


def decode(src: str) -> Image.Image:
    assert src.startswith("data:image/png;base64,"), src[:40]  # inlined: the page needs no other file
    return Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")


def test_training_writes_a_self_contained_page_whose_marks_match_the_similarities(run):
    text = (run / "report.html").read_text()
    page = Page()
    page.feed(text)
    assert page.tables >= 2 and "Recall@K" in text and "Generated captions" in text and "Imagined" in text
    assert not re.search(r'src="(?!data:)', text)  # no external file, no server
    for src in page.images:
        assert min(decode(src).size) > 0
    cfg, vocab, model, _ = load_trained(str(run), "best")
    test = load_split(cfg.data, "test")
    img, cap = encode_split(model.matcher, test, vocab, cfg.data, torch.device("cpu"), progress=False)
    sims = model.matcher.similarity(img, cap)
    queries = sample_indices(test.num_images, 6)
    image_blocks = [b for b in page.blocks if b["kind"] == "image-query"]
    assert len(image_blocks) == len(queries)
    for i, block in zip(queries, image_blocks):
        top = torch.topk(sims[i], 5).indices
        assert block["items"] == 5 and block["hits"] == int((top // 5 == i).sum())
    caption_blocks = [b for b in page.blocks if b["kind"] == "caption-query"]
    assert caption_blocks and all(len(b["imgs"]) == 5 for b in caption_blocks)
    for b, j in zip(caption_blocks, [i * 5 for i in queries][::-1]):
        top = torch.topk(sims[:, j], 5).indices.tolist()
        assert ["hit" in c for c in b["imgs"]] == [i == j // 5 for i in top]


def test_evaluate_writes_the_page_beside_its_json(run, tmp_path):
    out = tmp_path / "new_folder" / "eval.json"  # a folder that does not exist yet is made
    evaluate.evaluate(str(run), out=str(out), progress=False, captions=False)
    page = tmp_path / "new_folder" / "eval.html"
    assert out.exists() and page.exists() and "Image queries" in page.read_text()
    evaluate.evaluate(str(run), out=str(tmp_path / "plain.json"), progress=False, captions=False, html=False)
    assert not (tmp_path / "plain.html").exists()


def test_a_missing_image_is_named_on_the_page_instead_of_failing(tmp_path):
    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "a.png")
    images = FileImages([str(tmp_path / "a.png"), str(tmp_path / "gone.png")])
    split = Split("test", images, [["a red thing"] * 5, ["a lost thing"] * 5])
    sims = torch.tensor(np.random.default_rng(0).random((2, 10)), dtype=torch.float32)
    report = {"retrieval": {"protocols": {"full": {d: {k: 1.0 for k in ("r1", "r5", "r10", "medr", "meanr")}
                                                   for d in ("i2t", "t2i")} | {"rsum": 6.0}}}}
    text = render(report, split, sims)
    assert "gone.png" in text and "cannot be read" in text
