"""Pair-score metrics and `demo.py score` on a tiny run, bad lines included."""
import json

import numpy as np
import pytest
from PIL import Image

import demo
import train
from metrics.pairs import auroc, best_threshold
from tests.test_train import tiny


def test_auroc_matches_pairwise_counting_with_ties_as_half():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 40).astype(float)  # many ties
    labels = rng.integers(0, 2, 40)
    pos, neg = scores[labels == 1], scores[labels == 0]
    naive = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert auroc(scores, labels) == pytest.approx(naive)
    assert auroc([3, 2, 1, 0], [1, 1, 0, 0]) == 1.0 and auroc([0, 1, 2, 3], [1, 1, 0, 0]) == 0.0
    with pytest.raises(ValueError, match="both positive and negative"):
        auroc([1, 2], [1, 1])


def test_best_threshold_separates_separable_scores():
    t, acc = best_threshold([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])
    assert acc == 1.0 and 0.2 < t <= 0.8


def test_score_demo_scores_good_lines_and_names_bad_ones(tmp_path, capsys):
    train.main(tiny(tmp_path, **{"train.epochs": 1, "imagine.lambda_t2i": 0}))
    capsys.readouterr()
    Image.new("RGB", (40, 30), (200, 20, 20)).save(tmp_path / "red.png")
    Image.new("RGBA", (32, 32), (20, 20, 200, 128)).save(tmp_path / "blue.png")
    lines = [json.dumps({"image": "red.png", "caption": "a red circle"}),
             "{not json",
             json.dumps({"image": "missing.png", "caption": "a red circle"}),
             json.dumps({"image": "blue.png", "caption": "   "}),
             json.dumps({"image": str(tmp_path / "blue.png"), "caption": "a blue square"}),
             json.dumps({"caption": "no image key"})]
    (tmp_path / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "scores.jsonl"
    code = demo.main(["score", str(tmp_path / "run"), str(tmp_path / "pairs.jsonl"), "--out", str(out)])
    assert code == 1  # some lines could not be scored
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5, 6]
    scored = [r for r in rows if "score" in r]
    assert [r["line"] for r in scored] == [1, 5] and all(isinstance(r["suspect"], bool) for r in scored)
    errors = {r["line"]: r["error"] for r in rows if "error" in r}
    assert "not valid JSON" in errors[2] and "missing" in errors[3] and "empty caption" in errors[4]
    assert "expected" in errors[6] and "pairs.jsonl:3" in captured.err
    assert captured.out.startswith("# fused weight")


def test_retrieve_demo_returns_the_gallerys_best_items(tmp_path, capsys):
    import torch

    from data import load_split
    from evaluation.retrieval import encode_split
    from runfolder.folder import load_trained

    train.main(tiny(tmp_path, **{"train.epochs": 1, "imagine.lambda_t2i": 0}))
    run = str(tmp_path / "run")
    cfg, vocab, model, _ = load_trained(run)
    test = load_split(cfg.data, "test")
    img, cap = encode_split(model.matcher, test, vocab, cfg.data, torch.device("cpu"), progress=False)
    sims = model.matcher.similarity(img, cap)  # (16, 80)

    by_image = demo.retrieve(run, image=None, text=test.captions[3][0], k=4)
    caption_row = test.flat_captions().index(test.captions[3][0])
    expected = torch.topk(sims[:, caption_row], 4)
    assert [i for _, i, _ in by_image] == expected.indices.tolist()
    np.testing.assert_allclose([s for s, _, _ in by_image], expected.values.numpy(), rtol=1e-5, atol=1e-6)

    test.images.load(5).save(tmp_path / "q.png")
    by_caption = demo.retrieve(run, image=str(tmp_path / "q.png"), k=3)
    np.testing.assert_allclose([s for s, _, _ in by_caption], torch.topk(sims[5], 3).values.numpy(), rtol=1e-4, atol=1e-5)
    assert [name for _, _, name in by_caption] == [test.flat_captions()[i] for _, i, _ in by_caption]

    capsys.readouterr()
    assert demo.main(["retrieve", run, "--text", "a red circle", "-k", "2"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    assert demo.main(["retrieve", run, "--image", str(tmp_path / "nope.png")]) == 2
    assert "missing" in capsys.readouterr().err


def test_pair_scorer_takes_out_each_captions_mean_likelihood_over_its_reference_images(tmp_path):
    import torch

    from data import load_split
    from data.datasets import encode_texts
    from evaluation.fused import PRIOR_IMAGES, PairScorer, raw_pair_scores
    from runfolder.folder import load_trained

    train.main(tiny(tmp_path, **{"train.epochs": 1, "imagine.lambda_t2i": 0}))
    cfg, vocab, model, _ = load_trained(str(tmp_path / "run"))
    val, dev = load_split(cfg.data, "val"), torch.device("cpu")
    scorer = PairScorer(model, val, vocab, cfg.data, dev)
    plain = PairScorer(model, val, vocab, cfg.data, dev, caption_prior=False)
    captions = ["a red circle", "a large blue square above a small green triangle", "a red circle"]
    assert scorer.prior_features.shape[0] == min(PRIOR_IMAGES, val.num_images) and plain.prior_features is None
    naive = []
    with torch.no_grad():
        model.eval()
        for c in captions:
            ids, lengths = encode_texts([c], vocab, cfg.data.max_caption_len)
            naive.append(np.mean([float(model.decoder.log_likelihood(f[None], ids, lengths))
                                  for f in scorer.prior_features]))
    prior = scorer.caption_prior(captions, batch=2)  # two chunks
    np.testing.assert_allclose(prior, naive, rtol=1e-5, atol=1e-5)
    assert prior[0] == prior[2]  # the same caption has the same prior, whatever its batch
    images = torch.stack([torch.zeros(3, cfg.data.image_size, cfg.data.image_size)] * 3)
    emb, ll = raw_pair_scores(model, images, captions, vocab, cfg.data.max_caption_len, dev)
    np.testing.assert_allclose(scorer.score(images, captions), scorer.fuse(emb, ll - prior), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(plain.likelihood(ll, captions), ll)
