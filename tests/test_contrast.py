"""One-word contrast captions and the swap test."""
import re
from typing import Optional, Sequence

import numpy as np
import pytest
import torch

from data import load_split
from data.contrast import SHAPES_CLASSES, swaps
from evaluation.swaps import swap_accuracy
from models.similarity import paired_similarity, similarity
from runfolder.folder import load_trained


def one_swap(caption: str, rng: np.random.Generator, classes: dict = SHAPES_CLASSES,
             word_class: Optional[str] = None) -> Optional[tuple[str, str]]:
    """One random swap of ``caption`` (None if it has no swappable word)."""
    options = swaps(caption, classes, word_class)
    return options[int(rng.integers(len(options)))] if options else None


def class_of_difference(original: str, swapped: str, classes: dict = SHAPES_CLASSES) -> Sequence[str]:
    """The classes whose members differ between two captions (a check for tests and audits)."""
    a, b = set(original.lower().split()), set(swapped.lower().split())
    diff = (a ^ b) - {"a", "an"}
    return sorted({name for name, groups in classes.items() for g in groups for m in g
                   if set(m.split()) & diff})


def naive_single_replacements(caption: str, name: str) -> set:
    """Every caption made by replacing one occurrence of one member of class ``name`` (a word or a
    phrase such as "left of") with another member of its group, articles then fixed."""
    out = set()
    for group in SHAPES_CLASSES[name]:
        for member in group:
            for m in re.finditer(rf"(?<![a-z]){re.escape(member)}(?![a-z])", caption):
                for other in group:
                    if other != member:
                        out.add(caption[:m.start()] + other + caption[m.end():])
    fixed = set()
    for text in out:
        words = text.split()
        for i in range(len(words) - 1):
            if words[i] in ("a", "an"):
                words[i] = "an" if words[i + 1][0] in "aeiou" else "a"
        fixed.add(" ".join(words))
    return fixed


@pytest.mark.parametrize("caption", ["a red circle above a blue square", "an orange triangle left of a small cyan cross",
                                     "two shapes a large white diamond and a green circle", "there is a purple square"])
def test_every_swap_changes_exactly_one_word_of_its_class_and_never_gives_the_original(caption):
    out = swaps(caption)
    assert out and len({t for _, t in out}) == len(out)
    for name, new in out:
        assert new != caption
        assert class_of_difference(caption, new) == [name]
        assert new in naive_single_replacements(caption, name)
    assert all(n == "colour" for n, _ in swaps(caption, word_class="colour"))


def test_articles_follow_the_new_word_and_unswappable_captions_have_no_swap():
    assert ("colour", "an orange circle") in swaps("a red circle")
    assert ("colour", "a red circle") in swaps("an orange circle")
    assert swaps("nothing to see here") == []
    assert one_swap("nothing to see here", np.random.default_rng(0)) is None
    assert swaps("a circle", word_class="relation") == []
    plural = dict((t, n) for n, t in swaps("two red circles"))
    assert plural.get("two red squares") == "shape" and "two red square" not in plural


def test_paired_similarity_is_the_diagonal():
    torch.manual_seed(0)
    a, b = torch.rand(7, 5), torch.rand(7, 5)
    for measure in ("order", "cosine"):
        torch.testing.assert_close(paired_similarity(a, b, measure), similarity(a, b, measure).diagonal())


def test_swap_accuracy_counts_every_class_on_a_tiny_run(reported_run):
    cfg, vocab, model, _ = load_trained(str(reported_run), "best")
    test = load_split(cfg.data, "test")
    result = swap_accuracy(model, test, vocab, cfg, torch.device("cpu"), per_class=2)
    assert set(result) == set(SHAPES_CLASSES)
    flat = test.flat_captions()
    for name, m in result.items():
        has = sum(1 for c in flat if swaps(c, word_class=name))
        assert m["captions_without"] == len(flat) - has
        assert m["swaps"] == sum(min(2, len(swaps(c, word_class=name))) for c in flat)
        if m["swaps"]:
            assert 0 <= m["image_query"] <= 100


def test_token_swapper_makes_one_of_the_text_swaps_and_masks_rows_without_one():
    from data.contrast import TokenSwapper
    from data.datasets import pad_captions
    from data.vocab import build_vocab

    texts = ["a red circle above an orange square", "an orange triangle left of a cyan cross", "there is nothing"]
    vocab = build_vocab(texts + ["a blue green yellow purple white square circle triangle diamond cross below "
                                 "right small large circles squares"])
    ids, lengths = pad_captions([torch.tensor(vocab.encode(t)) for t in texts])
    swapper = TokenSwapper(vocab)
    rng = np.random.default_rng(0)
    for _ in range(20):
        new, new_lengths, ok = swapper(ids, lengths, rng)
        assert ok.tolist() == [True, True, False]
        for row, text in enumerate(texts[:2]):
            made = vocab.decode(new[row][:new_lengths[row]])
            assert made in {t for _, t in swaps(text) if all(w in vocab.index for w in t.split())}


def test_contrast_training_runs_and_logs_its_term(tmp_path):
    import train
    from tests.test_train import tiny

    report = train.main(tiny(tmp_path, **{"train.epochs": 1, "look.lambda_i2t": 0, "imagine.lambda_t2i": 0,
                                          "loss.contrast_weight": 1.0, "train.log_every": 1}))
    assert report["retrieval"]["embedding"]["rsum"] > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tb"))
    events.Reload()
    assert "train/contrast" in events.Tags()["scalars"]


def test_imagined_negatives_train_the_matcher_not_the_generator(tmp_path):
    """The imagined term: hinge of the caption's score on the image G imagines from its swapped
    caption against its score on its own image; gradient to the image encoder, none to G, and the
    imagined images are normalised with their batch's statistics and leave the running ones alone."""
    from copy import deepcopy

    from config import load_config
    from data.contrast import TokenSwapper
    from data.datasets import encoder_images, pad_captions
    from data.vocab import build_vocab
    from models.lim import LIM
    from tests.test_train import tiny
    from training.steps import PairState, contrast_terms

    cfg = load_config(None, tiny(tmp_path, **{"loss.imagined_weight": 2.0, "loss.margin": 100.0,
                                              "loss.contrast_weight": 0.0, "look.lambda_i2t": 0}))
    texts = ["a red circle", "a large blue square", "there is nothing"]
    vocab = build_vocab(texts + ["a green triangle small"])
    torch.manual_seed(0)
    model = LIM(cfg.model, cfg.look, cfg.imagine, len(vocab)).train()
    captions, lengths = pad_captions([torch.tensor(vocab.encode(t)) for t in texts])
    out = model(torch.randn(3, 3, 32, 32), captions, lengths)
    bn = {k: v.clone() for k, v in model.matcher.image_encoder.state_dict().items() if "running" in k}
    torch.manual_seed(5)
    terms = contrast_terms(model, out, captions, lengths, PairState(swapper=TokenSwapper(vocab),
                                                                    rng=np.random.default_rng(1)), cfg, "cpu")
    assert float(terms["_contrast_skipped"]) == 1 and "contrast" not in terms  # contrast_weight is 0
    for k, v in model.matcher.image_encoder.state_dict().items():
        if "running" in k:
            assert torch.equal(v, bn[k]), k
    # naive reference: the same swaps and noise, every hinge active (margin 100)
    swapped, new_lengths, ok = TokenSwapper(vocab)(captions, lengths, np.random.default_rng(1))
    assert ok.tolist() == [True, True, False]
    with torch.no_grad():
        neg = model.matcher.encode_captions(swapped, new_lengths)
        torch.manual_seed(5)
        fake = model.imagine(neg["grounded"], torch.randn(3, model.imagine.z_dim))["fake"]
        copy = deepcopy(model.matcher.image_encoder).train()  # batch statistics, as for real batches
        fake_img = copy(encoder_images(fake, cfg.data.image_size))
        fake_s = model.matcher.paired_similarity(fake_img, out["cap"])
        pos_s = model.matcher.paired_similarity(out["img"], out["cap"])
    expected = 2.0 * ((100 + fake_s - pos_s) * ok).sum()
    assert float(terms["imagined"].detach()) == pytest.approx(float(expected), rel=1e-5)
    model.zero_grad(set_to_none=True)
    terms["imagined"].backward()
    assert all(p.grad is None for p in model.imagine.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.matcher.image_encoder.parameters())


def test_imagined_negatives_without_the_gan_say_how_to_train_it(tmp_path):
    import train
    from config import ConfigError
    from tests.test_train import tiny

    with pytest.raises(ConfigError, match="imagine.lambda_t2i=1"):
        train.main(tiny(tmp_path, **{"loss.imagined_weight": 1.0, "imagine.lambda_t2i": 0}))


def test_extra_captions_share_the_text_encoders_pass():
    """The contrast captions encoded in the batch's text-encoder call (other lengths, other padding
    width) get the vectors a call of their own gives, and the batch's vectors do not change."""
    from config import ImagineConfig, LookConfig, ModelConfig
    from data.datasets import pad_captions
    from models.lim import LIM

    torch.manual_seed(0)
    model = LIM(ModelConfig(embed_dim=16, word_dim=8, text_hidden=8, small_cnn_width=4), LookConfig(lambda_i2t=0),
                ImagineConfig(lambda_t2i=0), vocab_size=30).eval()
    captions, lengths = pad_captions([torch.randint(4, 30, (n,)) for n in (5, 3, 7)])
    more, more_lengths = pad_captions([torch.randint(4, 30, (n,)) for n in (9, 2, 4)])
    images = torch.randn(3, 3, 32, 32)
    alone = model(images, captions, lengths)
    both = model(images, captions, lengths, extra_captions=(more, more_lengths))
    own = model.matcher.encode_captions(more, more_lengths)
    for branch in ("abstract", "grounded"):
        assert torch.allclose(both["cap"][branch], alone["cap"][branch], atol=1e-6)
        assert torch.allclose(both["extra_cap"][branch], own[branch], atol=1e-6)
        assert not torch.allclose(both["extra_cap"][branch], both["cap"][branch])
    assert "extra_cap" not in alone
