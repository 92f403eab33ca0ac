"""Fused pair scores and two-stage re-ranking against naive references."""
import numpy as np
import torch

from data.datasets import pad_captions
from evaluation.fused import FusedRetrieval, candidates, decoder_loglik, fused_scores, reranked, with_caption_prior
from metrics.retrieval import recall_metrics
from models.caption_decoder import CaptionDecoder


def toy(n=6, k=5, seed=0):
    rng = np.random.default_rng(seed)
    sims = rng.normal(size=(n, n * k))
    table = rng.normal(size=(n, n * k))  # a stand-in decoder: log-likelihood of caption c given image i
    return sims, table, (lambda i, c: table[i, c])


def test_decoder_loglik_matches_a_per_pair_loop():
    torch.manual_seed(0)
    decoder = CaptionDecoder(vocab_size=12, feature_dim=8, word_dim=6, hidden=10, dropout=0.5, max_len=6).eval()
    feats = torch.randn(3, 8)
    caps = [torch.tensor([1] + list(np.random.default_rng(j).integers(4, 12, size=2 + j % 4)) + [2]) for j in range(15)]
    ids, lengths = pad_captions(caps)
    img = np.array([0, 1, 2, 2, 0, 1, 1])
    cap = np.array([0, 4, 14, 7, 3, 3, 9])
    fast = decoder_loglik(decoder, feats, ids, lengths, torch.device("cpu"), batch_size=3)(img, cap)
    with torch.no_grad():
        naive = [float(decoder.log_likelihood(feats[i:i + 1], caps[c][None], torch.tensor([len(caps[c])])))
                 for i, c in zip(img, cap)]
    np.testing.assert_allclose(fast, naive, rtol=1e-5, atol=1e-6)


def test_candidates_are_the_embedding_top_k_with_their_likelihoods():
    sims, table, loglik = toy()
    cand = candidates(sims, 4, loglik)
    for i in range(6):
        assert set(cand.i2t_idx[i]) == set(np.argsort(-sims[i])[:4])
        np.testing.assert_array_equal(cand.i2t_ll[i], table[i, cand.i2t_idx[i]])
    for c in range(30):
        assert set(cand.t2i_idx[c]) == set(np.argsort(-sims[:, c])[:4])
        np.testing.assert_array_equal(cand.t2i_ll[c], table[cand.t2i_idx[c], c])


def test_caption_prior_is_each_captions_mean_over_its_own_top_k_images():
    sims, table, loglik = toy(seed=4)
    cand = with_caption_prior(candidates(sims, 3, loglik))
    for i in range(6):
        for j, c in enumerate(cand.i2t_idx[i]):
            own_top = np.argsort(-sims[:, c], kind="stable")[:3]  # caption c's own top-3 images
            assert np.isclose(cand.i2t_ll[i, j], table[i, c] - table[own_top, c].mean())
    np.testing.assert_array_equal(cand.t2i_ll, candidates(sims, 3, loglik).t2i_ll)  # text-to-image untouched


def test_caption_prior_stops_generic_captions_winning_every_image():
    rng = np.random.default_rng(5)
    n, k = 10, 5
    own = np.arange(n * k) // k
    sims = rng.normal(size=(n, n * k)) + 1.5 * (own[None, :] == np.arange(n)[:, None])  # own captions near the top
    generic = np.zeros(n * k)
    generic[::7] = 3.0  # some captions every image makes likely
    table = generic[None, :] + 1.0 * (own[None, :] == np.arange(n)[:, None])
    loglik = lambda i, c: table[i, c]  # noqa: E731
    raw = FusedRetrieval(sims, loglik, k=10, protocol="full", caption_prior=False).metrics(0.0)
    fixed = FusedRetrieval(sims, loglik, k=10, protocol="full").metrics(0.0)
    assert fixed["i2t"]["r1"] > raw["i2t"]["r1"]
    assert fixed["t2i"] == raw["t2i"]  # a caption's prior is the same for all its candidate images


def test_fused_score_is_the_weighted_sum_of_per_query_z_scores():
    emb, ll = np.array([[1.0, 2.0, 3.0]]), np.array([[-5.0, -1.0, -3.0]])
    z = lambda x: (x - x.mean()) / x.std()  # noqa: E731
    np.testing.assert_allclose(fused_scores(emb, ll, 0.3), 0.3 * z(emb) + 0.7 * z(ll))


def test_reranking_only_reorders_within_the_top_k():
    sims, _, loglik = toy(seed=1)
    cand = candidates(sims, 4, loglik)
    i2t, t2i = reranked(sims, cand, 0.2)
    for i in range(6):
        top = np.argsort(-i2t[i])[:4]
        assert set(top) == set(np.argsort(-sims[i])[:4])
        rest = np.argsort(-i2t[i], kind="stable")[4:]
        np.testing.assert_array_equal(rest, np.argsort(-sims[i], kind="stable")[4:])
        np.testing.assert_array_equal(top, cand.i2t_idx[i][np.argsort(-fused_scores(cand.i2t_emb, cand.i2t_ll, 0.2)[i])])
    for c in range(30):
        assert set(np.argsort(-t2i[:, c])[:4]) == set(np.argsort(-sims[:, c])[:4])


def test_weight_one_reproduces_the_embedding_metrics_and_likelihood_can_fix_ranks():
    sims, _, _ = toy(n=8, seed=2)
    exact = lambda i, c: (c // 5 == i).astype(float)  # noqa: E731  an oracle decoder
    fused = FusedRetrieval(sims, exact, k=10, protocol="full")
    plain = recall_metrics(sims)
    one = fused.metrics(1.0)
    assert one["rsum"] == plain["rsum"] and one["i2t"] == plain["i2t"] and one["t2i"] == plain["t2i"]
    zero = fused.metrics(0.0)
    assert zero["rsum"] >= plain["rsum"]
    w, rsum = fused.best_weight()
    assert rsum == max(fused.metrics(x)["rsum"] for x in np.linspace(0, 1, 11)) and 0 <= w <= 1


def test_1k_protocol_reranks_within_each_fold():
    rng = np.random.default_rng(3)
    sims = rng.normal(size=(2000, 10000)).astype(np.float32)
    seen = []

    def loglik(i, c):
        seen.append((i, c))
        return np.zeros(len(i))

    fused = FusedRetrieval(sims, loglik, k=3, protocol="1k")
    assert len(fused.blocks) == 2
    i, c = seen[1]
    assert i.min() >= 1000 and c.min() >= 5000  # fold 2 asks only for its own pairs


def test_evaluate_rerank_reports_fused_beside_embedding(tmp_path):
    import pytest

    import evaluate
    import train
    from runfolder.checkpoint import CheckpointError
    from tests.test_train import tiny

    train.main(tiny(tmp_path, **{"train.epochs": 1, "imagine.lambda_t2i": 0}))
    report = evaluate.main([str(tmp_path / "run"), "--rerank", "5", "--no-captions"])
    fused, plain = report["retrieval"]["fused"], report["retrieval"]["embedding"]
    assert fused["k"] == 5 and 0 <= fused["weight"] <= 1 and set(fused["i2t"]) == set(plain["i2t"])
    assert fused["caption_prior"] is True  # the default, look.fused_caption_prior
    raw = evaluate.main([str(tmp_path / "run"), "--rerank", "5", "--no-captions", "--no-caption-prior",
                         "--out", str(tmp_path / "raw.json")])["retrieval"]["fused"]
    assert raw["caption_prior"] is False
    # Re-ranking keeps each query's top-5 set, so R@5 and R@10 cannot move; only R@1 and ranks inside.
    for d in ("i2t", "t2i"):
        assert fused[d]["r5"] == plain[d]["r5"] and fused[d]["r10"] == plain[d]["r10"]
    train.main(tiny(tmp_path, out="nodecoder", **{"train.epochs": 1, "look.lambda_i2t": 0, "imagine.lambda_t2i": 0}))
    with pytest.raises(CheckpointError, match="no caption decoder"):
        evaluate.main([str(tmp_path / "nodecoder"), "--rerank", "5", "--no-captions"])


def test_training_report_carries_the_fused_rows_when_asked(tmp_path):
    import evaluate
    import train
    from tests.test_train import tiny

    report = train.main(tiny(tmp_path, **{"train.epochs": 1, "imagine.lambda_t2i": 0, "look.fused_top_k": 5}))
    again = evaluate.main([str(tmp_path / "run"), "--rerank", "5", "--no-captions", "--no-html", "--no-swaps"])
    assert report["retrieval"]["fused"] == again["retrieval"]["fused"]  # the same val weight, the same test ranks
    assert "fused" in (tmp_path / "run" / "report.md").read_text()
    # without a decoder there is no likelihood to fuse: the key is left out, nothing fails
    plain = train.main(tiny(tmp_path, out="plain", **{"train.epochs": 1, "look.lambda_i2t": 0,
                                                      "imagine.lambda_t2i": 0, "look.fused_top_k": 5}))
    assert "fused" not in plain["retrieval"]
