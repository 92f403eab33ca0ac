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


class _Decoder:
    """Beams: only the generic caption; samples: the given captions in turn; flat likelihood."""

    def __init__(self, vocab, samples):
        self.vocab, self.samples = vocab, samples

    def _ids(self, caption, width=8):
        ids = vocab_ids(self.vocab, caption)
        return ids + [0] * (width - len(ids))

    def beam_search(self, features, beam_size, all_beams=False):
        b = features.shape[0]
        tokens = torch.tensor([[self._ids("an icon")] * beam_size] * b)
        scores = torch.zeros(b, beam_size)
        scores[:, 1:] = float("-inf")
        done = torch.zeros(b, beam_size, dtype=torch.bool)
        done[:, 0] = True
        return tokens, scores, done

    def sample(self, features, n, temperature):
        rows = [self._ids(self.samples[(r // n + r) % len(self.samples)]) for r in range(features.shape[0] * n)]
        return torch.tensor(rows), None, None

    def log_likelihood(self, features, ids, lengths):
        return torch.zeros(len(ids))


def vocab_ids(vocab, caption):
    return vocab.ids(caption.split()) + [vocab.end_id]


def test_sampled_candidates_let_the_matcher_name_each_image():
    from evaluation.captioning import decode_images

    vocab = build_vocab(["an icon", "a lock icon", "a clock icon", "a a lock lock icon"])
    shows = lambda *words: [1.0 if w in words else 0.0 for w in vocab.words]  # noqa: E731
    img = {"abstract": torch.tensor([shows("lock", "icon"), shows("clock", "icon")])}
    img["grounded"] = img["abstract"]

    class Model:
        matcher = _Matcher(vocab)
        decoder = _Decoder(vocab, ["a clock icon", "a lock icon", "a a lock lock icon", "a <unk> icon"])

    beams_only = decode_images(Model, img, vocab, beam_size=3, rerank=True, max_len=10)
    assert beams_only == ["an icon", "an icon"]
    with_samples = decode_images(Model, img, vocab, beam_size=3, rerank=True, max_len=10, samples=4)
    # "a a lock lock icon" (a repeated pair) and "a <unk> icon" are never offered
    assert with_samples == ["a lock icon", "a clock icon"]
