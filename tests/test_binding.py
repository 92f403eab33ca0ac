"""The Shapes attribute-binding probe: "a large <colour> <shape>" must find an image with both."""
import torch

import evaluation.swaps as contrast_eval
from config import load_config
from data.records import ArrayImages, Split
from data.shapes import COLOURS, SHAPES
from data.vocab import build_vocab


class _Matcher(torch.nn.Module):
    """Image i's vector marks the (colour, shape) pairs its scene holds; a caption's marks its own pair."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab

    def encode_captions(self, ids, lengths):
        out = torch.zeros(len(ids), len(COLOURS) * len(SHAPES))
        for r, row in enumerate(ids.tolist()):
            words = [self.vocab.words[i] for i in row]
            c = next(k for k, name in enumerate(COLOURS) if name in words)
            s = next(k for k, name in enumerate(SHAPES) if name in words)
            out[r, c * len(SHAPES) + s] = 1
        return {"abstract": out}

    def similarity(self, img, cap):
        return img["abstract"] @ cap["abstract"].T


class _Model:
    def __init__(self, vocab):
        self.matcher = _Matcher(vocab)


def _split(scenes):
    images = ArrayImages(torch.zeros(len(scenes), 8, 8, 3, dtype=torch.uint8).numpy(), name="toy")
    return Split("test", images, [["a shape"] * 5 for _ in scenes], "toy", extra={"scenes": scenes})


def test_binding_counts_hits_and_names_misses(monkeypatch):
    # One image per (colour, shape) pair, plus a decoy holding the colour and the shape apart.
    scenes = [{"objects": [{"colour": c, "shape": s, "size": "small"}]} for c in COLOURS for s in SHAPES]
    vocab = build_vocab([f"a large {c} {s}" for c in COLOURS for s in SHAPES])
    cfg = load_config(None, ["train.eval_batch_size=64"])

    def encode(matcher, split, *args, **kwargs):
        vecs = torch.zeros(split.num_images, len(COLOURS) * len(SHAPES))
        for i, scene in enumerate(split.extra["scenes"]):
            for o in scene["objects"]:
                vecs[i, COLOURS.index(o["colour"]) * len(SHAPES) + SHAPES.index(o["shape"])] = 1
        # Image 0 is ranked first for "a large <colour0> <shape1>" too, though it lacks that pair.
        if split.num_images:
            vecs[0, 1] = 2
        return {"abstract": vecs}, None

    monkeypatch.setattr(contrast_eval, "encode_split", encode)
    result = contrast_eval.binding_queries(_Model(vocab), _split(scenes), vocab, cfg, torch.device("cpu"))
    assert result["queries"] == 40
    assert result["top1"] == 97.5  # 39 of 40
    assert result["misses"] == [(f"a large {COLOURS[0]} {SHAPES[1]}", f"small {COLOURS[0]} {SHAPES[0]}")]


def test_binding_is_skipped_without_scenes():
    vocab = build_vocab(["a red circle"])
    split = Split("test", ArrayImages(torch.zeros(2, 8, 8, 3, dtype=torch.uint8).numpy(), name="toy"),
                  [["a"] * 5] * 2, "toy")
    assert contrast_eval.binding_queries(_Model(vocab), split, vocab, load_config(), torch.device("cpu")) is None
