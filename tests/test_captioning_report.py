"""The captioning report: diversity, the collapse warning, the nearest-neighbour baseline."""
import pytest
import torch

from evaluation.captioning import diversity
from evaluation.nn_captioner import image_similarity, nearest_neighbour_captions, nearest_neighbour_section, training_pool
from evaluation.report_md import markdown_table
from models.similarity import paired_similarity

RETRIEVAL = {"protocols": {}, "embedding": {}}  # markdown_table needs the retrieval block's shape only
POOL = {"grounded": torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.6, 0.8, 0.0]])}
POOL_CAPTIONS = [["red one", "the red one"], ["green one", "the green one"], ["blue one", "the blue one"],
                 ["yellow one", "the yellow one", "a third one"]]  # image 3 has three captions


def _pair_score(images: dict, captions: dict) -> torch.Tensor:
    return paired_similarity(images["grounded"], captions["grounded"], "cosine")


def _caption_emb(best: dict) -> dict:
    """One row per caption in POOL_CAPTIONS order: captions ``best`` get (1, 1, 1), which outscores the
    others' (0, 1, 0) with any query of non-negative entries and a non-zero first or last one."""
    n = sum(map(len, POOL_CAPTIONS))
    return {"grounded": torch.tensor([[1.0, 1.0, 1.0] if j in best else [0.0, 1.0, 0.0] for j in range(n)])}


def test_nearest_neighbour_returns_a_caption_of_the_most_similar_training_image():
    query = {"grounded": torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.0, 0.95]])}  # nearest: image 0, image 2
    assert image_similarity(query, POOL, {"grounded": 1.0}).argmax(1).tolist() == [0, 2]
    got = nearest_neighbour_captions(query, POOL, _caption_emb(set()), POOL_CAPTIONS, _pair_score,
                                     {"grounded": 1.0}, k=1)
    assert got == ["red one", "blue one"]  # equal scores: the image's first caption
    got = nearest_neighbour_captions(query, POOL, _caption_emb({1, 5}), POOL_CAPTIONS, _pair_score,
                                     {"grounded": 1.0}, k=1)
    assert got == ["the red one", "the blue one"]  # the caption the matcher prefers among the image's


def test_nearest_neighbour_picks_the_best_scoring_caption_among_the_neighbours():
    query = {"grounded": torch.tensor([[1.0, 0.1, 0.0]])}  # images by similarity: 0, 3, 1, 2
    emb = _caption_emb({8})  # "a third one", of image 3, the second-nearest
    pick = lambda k: nearest_neighbour_captions(query, POOL, emb, POOL_CAPTIONS, _pair_score,  # noqa: E731
                                                {"grounded": 1.0}, k=k)
    assert pick(1) == ["red one"]
    assert pick(2) == ["a third one"]
    assert pick(10) == ["a third one"]  # k beyond the pool: every image is a neighbour
    # a zero-weight branch plays no part in the image-image similarity
    two = {"grounded": query["grounded"], "abstract": torch.tensor([[0.0, 0.0, 1.0]])}
    pool = {**POOL, "abstract": torch.eye(3)[[1, 1, 2, 1]]}
    emb2 = {**emb, "abstract": torch.zeros(9, 3)}
    assert nearest_neighbour_captions(two, pool, emb2, POOL_CAPTIONS, _pair_score,
                                      {"grounded": 1.0, "abstract": 0.0}, k=1) == ["red one"]
    assert nearest_neighbour_captions(two, pool, emb2, POOL_CAPTIONS, _pair_score,
                                      {"grounded": 0.0, "abstract": 1.0}, k=1) == ["blue one"]
    with pytest.raises(ValueError, match="disagree"):
        nearest_neighbour_captions(query, POOL, emb, POOL_CAPTIONS[:3], _pair_score, {"grounded": 1.0})


def test_diversity_on_planted_captions():
    captions = ["A flag."] + ["a flag"] * 3 + ["a red circle", "a blue square above a red circle"] + ["flag"] * 2
    out = diversity(captions)
    assert out == {"distinct": 50.0, "mean_length": 2.5, "top_caption": "A flag.", "top_share": 50.0}
    assert diversity([])["distinct"] == 0.0


def _report(top_share: float, nn_cider=None) -> dict:
    cap = {"BLEU-1": 0.5, "BLEU-4": 0.1, "METEOR": None, "ROUGE_L": 0.4, "CIDEr": 0.3, "beam_size": 3,
           "diversity": {"distinct": 12.5, "mean_length": 1.2, "top_caption": "flag", "top_share": top_share}}
    if nn_cider is not None:
        cap["nearest_neighbour"] = {"BLEU-1": 0.6, "BLEU-4": 0.2, "METEOR": None, "ROUGE_L": 0.5, "CIDEr": nn_cider,
                                    "diversity": {"distinct": 80.0, "mean_length": 9.5, "top_caption": "x",
                                                  "top_share": 2.0},
                                    "k": 5, "train_images": 5000, "note": "first 5000 training images"}
    return {"split": "test", "retrieval": RETRIEVAL, "captioning": cap}


def test_collapse_warning_only_above_a_fifth():
    md = markdown_table(_report(68.2))
    assert 'WARNING: one caption, "flag", covers 68.2% of the test images' in md and "collapsed" in md
    assert "| 0.300 | 12.5 | 1.2 |" in md  # CIDEr, distinct %, mean length
    for share in (20.0, 5.0):
        assert "WARNING" not in markdown_table(_report(share))


def test_nearest_neighbour_line_says_whether_the_decoder_beats_it():
    md = markdown_table(_report(5.0, nn_cider=0.8))
    assert "nearest-neighbour baseline: CIDEr 0.800 (decoder 0.300): the decoder does NOT beat it" in md
    assert "| nearest neighbour (top 5 of 5000 train images) | 0.600 | 0.200 | n/a | 0.500 | 0.800 | 80.0 | 9.5 |" in md
    assert "the decoder beats it" in markdown_table(_report(5.0, nn_cider=0.1))
    assert "nearest-neighbour" not in markdown_table(_report(5.0))
    skipped = _report(5.0)
    skipped["captioning"]["nearest_neighbour"] = {"note": "not computed on the training split"}
    md = markdown_table(skipped)
    assert "nearest-neighbour baseline: not computed on the training split" in md and "| nearest neighbour" not in md


def test_nearest_neighbour_section_on_tiny_shapes(tmp_path):
    from config import load_config
    from data import build_vocab, load_split
    from evaluation.retrieval import encode_split
    from models.matcher import Matcher
    from tests.test_train import tiny

    cfg = load_config(None, tiny(tmp_path, **{"data.labelled_fraction": 0.5}))
    train, test = load_split(cfg.data, "train"), load_split(cfg.data, "test")
    pool = training_pool(train, max_images=10)
    assert pool.num_images == 10 and pool.captions[0] == train.captions[int(train.extra["labelled"]["images"][0])]
    vocab = build_vocab(train.flat_captions())
    torch.manual_seed(0)
    matcher = Matcher(cfg.model, len(vocab)).eval()
    out = nearest_neighbour_section(matcher, train, test, vocab, cfg.data, torch.device("cpu"), meteor=False,
                                    max_images=10)
    assert out["train_images"] == 10 and out["k"] == 5 and "first 10 labelled training images" in out["note"] and 0 <= out["CIDEr"] and set(out["diversity"]) == {
        "distinct", "mean_length", "top_caption", "top_share"}
    # the same captions from the pure function on the same encodings
    img = encode_split(matcher, test, vocab, cfg.data, torch.device("cpu"), 256, False, False)[0]
    pool_img, pool_cap = encode_split(matcher, pool, vocab, cfg.data, torch.device("cpu"), 256, False)
    captions = nearest_neighbour_captions(img, pool_img, pool_cap, pool.captions, matcher.paired_similarity,
                                          matcher.branch_weights)
    assert set(captions) <= set(pool.flat_captions())
    assert out["diversity"] == diversity(captions)
