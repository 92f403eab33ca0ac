"""Robust training on noisy pairs: the mixture fit, clean-probability weights, mined negatives, wiring."""
import numpy as np
import pytest
import torch

import train
from runfolder.checkpoint import load_checkpoint
from training.robust import PairLossRecord
from metrics.loss_mixture import fit_two_gaussians
from training.steps import NegativeQueue, ranking_terms
from losses.ranking import RankingLoss
from tests.test_train import tiny


def planted(n_clean=800, n_noisy=200, seed=0):
    rng = np.random.default_rng(seed)
    losses = np.r_[rng.normal(0.2, 0.05, n_clean), rng.normal(0.7, 0.1, n_noisy)]
    return losses, np.r_[np.zeros(n_clean), np.ones(n_noisy)].astype(bool)


def test_mixture_fit_separates_two_planted_loss_populations():
    losses, noisy = planted()
    m = fit_two_gaussians(np.random.default_rng(1).permutation(losses))
    assert m.means[0] == pytest.approx(0.2, abs=0.02) and m.means[1] == pytest.approx(0.7, abs=0.03)
    assert m.stds[0] == pytest.approx(0.05, abs=0.01) and m.weights[1] == pytest.approx(0.2, abs=0.03)
    p = m.clean_probability(losses)
    assert (p[~noisy] > 0.5).mean() > 0.98 and (p[noisy] < 0.5).mean() > 0.98
    with pytest.raises(ValueError, match="two distinct"):
        fit_two_gaussians(np.ones(5))


def test_clean_probabilities_down_weight_exactly_the_planted_pairs():
    losses, noisy = planted(90, 10)
    record = PairLossRecord(100)
    record.record(torch.arange(100), torch.tensor(losses))
    assert record.refit()
    weights = record.weights(torch.tensor(losses, dtype=torch.float32))
    assert set(np.flatnonzero(weights.numpy() < 0.5)) == set(np.flatnonzero(noisy))
    # In the ranking loss, a down-weighted pair's terms carry (almost) no gradient.
    torch.manual_seed(0)
    im = torch.rand(6, 8, requires_grad=True)
    cap = torch.rand(6, 8, requires_grad=True)
    loss_fn = RankingLoss("cosine", 0.2)
    fixed = torch.tensor([1.0, 1, 0, 1, 1, 1])  # pair 2 is the suspect
    terms, per_pair, w = ranking_terms({"a": im}, {"a": cap}, torch.arange(6), {"a": 1.0}, loss_fn, False,
                                       weigh=lambda _: fixed)
    assert torch.equal(w, fixed) and per_pair.shape == (6,)
    reference = loss_fn(im, cap, torch.arange(6), weights=fixed)
    torch.testing.assert_close(terms["rank_a"], reference)


def test_untrained_record_gives_weight_one():
    record = PairLossRecord(4)
    assert not record.refit()
    assert torch.equal(record.weights(torch.tensor([0.1, 5.0])), torch.ones(2))


def test_mined_negatives_from_the_queue_make_the_loss_harder_and_same_image_entries_are_masked():
    torch.manual_seed(0)
    im, cap = torch.nn.functional.normalize(torch.rand(4, 8), dim=1), torch.nn.functional.normalize(torch.rand(4, 8), dim=1)
    ids = torch.arange(4)
    loss_fn = RankingLoss("cosine", 0.2)
    base, _, _ = ranking_terms({"a": im}, {"a": cap}, ids, {"a": 1.0}, loss_fn, True)
    queue = NegativeQueue(8)
    queue.push({"a": im[:1].clone()}, {"a": im[:1].clone()}, torch.tensor([99]))  # a caption equal to image 0
    mined, _, _ = ranking_terms({"a": im}, {"a": cap}, ids, {"a": 1.0}, loss_fn, True, queue)
    assert mined["rank_a"] > base["rank_a"]
    assert len(queue.ids) == 5  # the batch joined the queue
    summed, _, _ = ranking_terms({"a": im}, {"a": cap}, ids, {"a": 1.0}, loss_fn, 0.0)
    warm, _, _ = ranking_terms({"a": im}, {"a": cap}, ids, {"a": 1.0}, loss_fn, 0.0, queue)
    assert torch.equal(warm["rank_a"], summed["rank_a"]) and len(queue.ids) == 8  # warm-up: fills, not used
    for queued_id, expect_zero in ((0, True), (99, False)):  # a one-pair batch: its only negatives are queued
        q = NegativeQueue(8)
        q.push({"a": im[:1].clone()}, {"a": im[:1].clone()}, torch.tensor([queued_id]))
        single, _, _ = ranking_terms({"a": im[:1]}, {"a": cap[:1]}, ids[:1], {"a": 1.0}, loss_fn, True, q)
        assert (float(single["rank_a"]) == 0) == expect_zero  # the same image is never its own negative


def test_robust_training_records_every_seen_pair_and_resumes(tmp_path):
    args = tiny(tmp_path, **{"train.epochs": 2, "look.scst_epochs": 0, "robust.enabled": True,
                             "robust.warmup_epochs": 1, "loss.warmup_epochs": 0, "loss.mined_negatives": 32,
                             "data.wrong_fraction": 0.2})
    train.main(args)
    ckpt = load_checkpoint(str(tmp_path / "run" / "last.pt"))
    losses = ckpt["pair_losses"]["losses"].numpy()
    assert losses.shape == (240,) and 48 <= np.isfinite(losses).sum() <= 96  # one caption per image per epoch
    train.main([a for a in args if not a.startswith("train.epochs")] + ["train.epochs=3", "train.resume=true"])
    again = load_checkpoint(str(tmp_path / "run" / "last.pt"))["pair_losses"]["losses"].numpy()
    assert np.isfinite(again).sum() >= np.isfinite(losses).sum()
