"""Discriminative decoding: of an image's candidate captions, the one that best retrieves it."""
import torch

from data.vocab import build_vocab
from evaluation.captioning import rerank_beams


class _Matcher:
    """Caption vector = bag of its words; image vector = the words it shows; score = dot product."""

    def __init__(self, vocab):
        self.vocab = vocab

    def encode_captions(self, ids, lengths):
        out = torch.zeros(len(ids), len(self.vocab))
        for r, row in enumerate(ids.tolist()):
            for i in row[1:int(lengths[r]) - 1]:
                out[r, i] += 1
        return {"abstract": out}

    def similarity(self, img, cap):
        return img["abstract"] @ cap["abstract"].T


def test_rerank_picks_the_candidate_that_retrieves_its_own_image():
    vocab = build_vocab(["an icon", "a lock icon", "a clock icon", "a cloud icon"])
    shows = lambda *words: [1.0 if w in words else 0.0 for w in vocab.words]  # noqa: E731
    img = {"abstract": torch.tensor([shows("lock", "icon", "an"), shows("clock", "icon", "an"),
                                     shows("cloud", "icon", "an")])}
    beams = [["an icon", "a clock icon", "a lock icon"],  # the generic caption fits every image equally
             ["an icon", "a clock icon"],
             ["a lock icon"]]  # no candidate names the cloud: the only one is kept
    picked = rerank_beams(_Matcher(vocab), img, beams, vocab, max_len=10)
    assert picked == ["a lock icon", "a clock icon", "a lock icon"]


def test_rerank_keeps_the_most_likely_candidate_on_ties():
    vocab = build_vocab(["a lock icon", "a lock symbol"])
    img = {"abstract": torch.zeros(1, len(vocab))}
    assert rerank_beams(_Matcher(vocab), img, [["a lock symbol", "a lock icon"]], vocab, 10) == ["a lock symbol"]


def test_fluency_breaks_the_tie_of_captions_that_retrieve_equally():
    vocab = build_vocab(["an icon for", "an icon of a lock"])
    img = {"abstract": torch.zeros(2, len(vocab))}  # every candidate fits both images equally
    beams = [["an icon for", "an icon of a lock"]]
    assert rerank_beams(_Matcher(vocab), {"abstract": img["abstract"][:1]}, beams, vocab, 10,
                        fluency=[[-2.0, -0.5]]) == ["an icon of a lock"]
