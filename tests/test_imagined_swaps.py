"""The generator's swap test per word class (synthesis/swaps.py), on a bag-of-words stand-in evaluator."""
import torch

from data.contrast import SHAPES_CLASSES, swaps
from synthesis.swaps import swap_picks, swap_test

WORDS = sorted({"a", "an"} | {w for groups in SHAPES_CLASSES.values() for g in groups for m in g for w in m.split()})


def bag(texts):
    """Texts -> bag-of-words vectors, the stand-in evaluator's caption (and image) embedding."""
    out = torch.zeros(len(texts), len(WORDS))
    for i, t in enumerate(texts):
        for w in t.split():
            out[i, WORDS.index(w)] += 1
    return {"grounded": out}


class DotMatcher:
    @staticmethod
    def paired_similarity(img, cap):
        return (img["grounded"] * cap["grounded"]).sum(-1)


TEXTS = ["a large red circle", "a small blue square above a green cross", "a large green cross"]


def test_picks_swap_one_word_of_the_named_class_and_follow_the_seed():
    picks = swap_picks(TEXTS, seed=3)
    assert picks == swap_picks(TEXTS, seed=3)
    assert {(r, c) for r, c, _ in picks} >= {(0, "colour"), (0, "shape"), (0, "size"), (1, "relation")}
    assert not any(r != 1 and c == "relation" for r, c, _ in picks)  # no relation word: no relation pick
    for row, name, new in picks:
        assert (name, new) in swaps(TEXTS[row])


def test_a_generator_that_draws_only_colours_scores_on_colour_swaps_and_not_on_shape_swaps():
    picks = swap_picks(TEXTS, seed=0)
    colour_only = [" ".join(w for w in t.split() if w in ("red", "blue", "green")) for t in TEXTS]
    images = {"real": bag(TEXTS), "imagined": bag(colour_only)}
    result = swap_test(DotMatcher(), images, bag(TEXTS), picks, bag)
    assert result["colour"]["real"] == 100.0 and result["colour"]["imagined"] == 100.0
    assert result["shape"]["real"] == 100.0 and result["shape"]["imagined"] == 0.0  # ties are not wins
    assert result["shape"]["pairs"] == 3 and result["relation"]["pairs"] == 1
    assert swap_test(DotMatcher(), images, bag(TEXTS), [], bag) == {}
