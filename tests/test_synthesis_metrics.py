"""R-precision, Frechet distance, the published-FID guard, and evaluate.py --evaluator end to end."""
import json

import numpy as np
import pytest
import torch

import evaluate
import train
from evaluation.report_md import markdown_table
from losses.gan import generated_match_loss
from metrics.synthesis import (candidate_sets, frechet_distance, frechet_from_stats, gaussian_stats, published_fid_is,
                               r_precision)
from runfolder.checkpoint import CheckpointError
from synthesis.evaluator import load_evaluator
from tests.test_train import tiny


def test_candidate_sets_put_the_query_first_and_never_repeat_it():
    sets = candidate_sets(30, 9, seed=3)
    assert sets.shape == (30, 10)
    assert (sets[:, 0] == np.arange(30)).all()
    for i, row in enumerate(sets):
        assert len(set(row)) == 10 and i not in row[1:] and row.min() >= 0 and row.max() < 30
    assert np.array_equal(sets, candidate_sets(30, 9, seed=3))
    with pytest.raises(ValueError, match="at least 100 images"):
        candidate_sets(50, 99)


def test_r_precision_counts_ties_against_the_query():
    scores = np.array([[0.9, 0.1, 0.2],   # hit
                       [0.5, 0.5, 0.1],   # tie: miss
                       [0.1, 0.3, 0.0],   # miss
                       [1.0, -1.0, 0.99]])  # hit
    assert r_precision(scores) == 50.0


def test_frechet_matches_the_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert frechet_from_stats(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-9)
    x = np.random.default_rng(0).normal(size=(500, 4))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(x, x + 1.0) == pytest.approx(4.0, rel=1e-6)  # a pure shift adds ||shift||^2
    mu, cov = gaussian_stats(x)
    assert mu.shape == (4,) and cov.shape == (4, 4)


def test_frechet_survives_fewer_samples_than_dimensions():
    rng = np.random.default_rng(1)
    assert np.isfinite(frechet_distance(rng.normal(size=(5, 16)), rng.normal(size=(5, 16))))


def test_published_fid_refuses_missing_and_unsafe_weight_files(tmp_path):
    fake = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(FileNotFoundError, match="Inception weights not found"):
        published_fid_is(fake, fake, str(tmp_path / "nope.pt"))
    unsafe = tmp_path / "code.pt"
    torch.save({"layer": torch.zeros(1), "hook": print}, unsafe)  # a pickled callable: never unpickled
    with pytest.raises(ValueError, match="not a plain PyTorch state dict"):
        published_fid_is(fake, fake, str(unsafe))


def naive_match_loss(scores, ids, scale, swapped=None):
    n = len(scores)
    total = 0.0
    for d, direction in enumerate((scores, scores.t())):
        for i in range(n):
            keep = [j for j in range(n) if j == i or ids[j] != ids[i]]
            logits = scale * direction[i, keep]
            if d == 0 and swapped is not None:  # image i against its own caption's swaps too
                logits = torch.cat([logits, scale * swapped[i][~swapped[i].isnan()]])
            total += -(logits[keep.index(i)] - torch.logsumexp(logits, 0)) / n
    return total / 2


def test_generated_match_loss_matches_a_naive_loop_and_masks_same_image_captions():
    g = torch.Generator().manual_seed(0)
    scores = -torch.rand(6, 6, generator=g)
    ids = torch.tensor([0, 1, 1, 2, 3, 3])
    torch.testing.assert_close(generated_match_loss(scores, ids, 10.0), naive_match_loss(scores, ids, 10.0))
    good = torch.eye(6) - 1.0  # every generated image closest to its own caption
    assert generated_match_loss(good, ids, 10.0) < generated_match_loss(good.flip(0), ids, 10.0)
    swapped = -torch.rand(6, 2, generator=g)
    swapped[1, 0] = swapped[4] = float("nan")  # no such swap
    torch.testing.assert_close(generated_match_loss(scores, ids, 10.0, swapped=swapped),
                               naive_match_loss(scores, ids, 10.0, swapped))
    # an image that scores its caption's swap as high as its caption costs more than one that does not
    near = torch.stack([scores.diagonal(), scores.diagonal() - 1.0], 1)
    assert generated_match_loss(scores, ids, 10.0, swapped=scores.diagonal()[:, None]) > \
        generated_match_loss(scores, ids, 10.0, swapped=near[:, 1:]) > generated_match_loss(scores, ids, 10.0)


def test_evaluate_with_an_evaluator_run(tmp_path):
    extra = {"train.epochs": 1, "look.lambda_i2t": 0}
    train.main(tiny(tmp_path, out="gan", **extra, **{"imagine.interpolate": "true"}))  # GAN-INT runs once too
    train.main(tiny(tmp_path, out="evaluator", **extra, **{"imagine.lambda_t2i": 0}))
    gan, ev = str(tmp_path / "gan"), str(tmp_path / "evaluator")
    report = evaluate.main([gan, "--evaluator", ev, "--mismatched", "9", "--no-captions"])
    syn = report["synthesis"]
    assert syn["evaluator"].startswith(ev) and syn["images"] == 16 and syn["mismatched_captions"] == 9
    assert 0 <= syn["r_precision"] <= 100 and 0 <= syn["r_precision_real"] <= 100
    assert syn["frechet_distance_evaluator"] >= 0 and "NOT the published FID" in syn["frechet_note"]
    assert "colour" in syn["swaps"] and set(syn["swaps"]) <= {"colour", "shape", "size", "relation"}
    assert all(0 <= e[k] <= 100 for e in syn["swaps"].values() for k in ("imagined", "real"))
    assert "scores its caption above a one-word swap" in markdown_table(report)
    assert json.load(open(tmp_path / "gan" / "eval_test.json"))["synthesis"] == syn
    with pytest.raises(CheckpointError, match="is the run being evaluated"):
        evaluate.main([gan, "--evaluator", gan, "--mismatched", "9", "--no-captions"])
    with pytest.raises(CheckpointError, match="trained with the GAN"):
        load_evaluator(gan, ev)
    with pytest.raises(CheckpointError, match="neither a generator"):
        evaluate.main([ev, "--evaluator", gan, "--no-captions"])
    with pytest.raises(ValueError, match="goes with --evaluator"):
        evaluate.main([gan, "--inception-weights", "x.pt", "--no-captions"])


def test_published_fid_is_runs_torch_fidelity_on_a_local_weights_file(tmp_path, monkeypatch):
    fidelity = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    # Random Inception weights of the right layout, made without a download: build the extractor
    # with its weight loading switched off and save what it holds.
    monkeypatch.setattr(fidelity.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
    torch.save({}, tmp_path / "empty.pt")
    extractor = fidelity.FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                                     feature_extractor_weights_path=str(tmp_path / "empty.pt"))
    monkeypatch.undo()
    torch.save(extractor.state_dict(), tmp_path / "inception.pt")
    g = torch.Generator().manual_seed(0)
    fake, real = torch.randint(0, 256, (2, 10, 3, 16, 16), dtype=torch.uint8, generator=g)
    out = published_fid_is(fake, real, str(tmp_path / "inception.pt"), cuda=False)
    assert set(out) == {"fid", "inception_score", "inception_score_std"}
    assert np.isfinite(out["fid"]) and out["inception_score"] >= 1.0 - 1e-6
