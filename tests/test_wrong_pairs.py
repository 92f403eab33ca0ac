"""The wrong-pair option changes exactly the captions it records."""
import json

import numpy as np
import pytest
import torch

import train
from data import load_split
from data.datasets import ImageDataset, image_transform, normalize_uint8
from data.records import ArrayImages, DataError, Split
from data.wrong_pairs import inject_wrong_pairs
from evaluation.fused import raw_pair_scores
from evaluation.wrong_pairs import split_pair_scores, wrong_pair_labels
from metrics.pairs import average_precision
from runfolder.folder import load_trained
from tests.test_train import tiny


def split(n=20, k=5):
    images = ArrayImages(np.zeros((n, 4, 4, 3), dtype=np.uint8))
    return Split("train", images, [[f"image {i} caption {j}" for j in range(k)] for i in range(n)])


def test_exactly_the_recorded_captions_change_and_come_from_other_images():
    clean = split()
    noisy = inject_wrong_pairs(clean, 0.2, seed=3)
    before, after = clean.flat_captions(), noisy.flat_captions()
    replaced = noisy.extra["wrong_pairs"]["replaced"]
    assert len(replaced) == 20  # round(0.2 * 100)
    changed = [j for j in range(100) if before[j] != after[j]]
    assert changed == [c for c, _ in replaced]
    for c, s in replaced:
        assert after[c] == before[s] and c // 5 != s // 5
    assert [len(c) for c in noisy.captions] == [5] * 20 and clean.flat_captions() == before  # a copy
    again = inject_wrong_pairs(clean, 0.2, seed=3)
    assert again.flat_captions() == after
    assert inject_wrong_pairs(clean, 0.2, seed=4).flat_captions() != after


def test_bad_fractions_are_errors_and_zero_changes_nothing():
    assert inject_wrong_pairs(split(), 0.0).flat_captions() == split().flat_captions()
    for bad in (-0.1, 1.0):
        with pytest.raises(DataError, match="wrong_fraction"):
            inject_wrong_pairs(split(), bad)
    with pytest.raises(DataError, match="at least two images"):
        inject_wrong_pairs(split(n=1), 0.5)


def test_training_records_the_wrong_pairs_and_reports_their_detection(tmp_path):
    report = train.main(tiny(tmp_path, **{"train.epochs": 1, "look.scst_epochs": 0, "imagine.lambda_t2i": 0,
                                          "data.wrong_fraction": 0.5}))
    record = json.load(open(tmp_path / "run" / "wrong_pairs.json"))
    assert record["fraction"] == 0.5 and len(record["replaced"]) == 120  # half of 48 x 5 captions
    wrong = report["wrong_pairs"]
    assert wrong["pairs"] == 240 and wrong["wrong"] == 120
    for part in ("fused", "embedding_only", "likelihood_only"):
        assert 0 <= wrong[part]["auroc"] <= 1 and 0 < wrong[part]["average_precision"] <= 1
    assert 0 <= wrong["flagged_wrong"] <= 1 and "injected wrong training pairs" in (tmp_path / "run" / "report.md").read_text()


def test_split_scores_match_a_per_pair_loop_and_labels_match_the_record(tmp_path):
    train.main(tiny(tmp_path, **{"train.epochs": 1, "look.scst_epochs": 0, "imagine.lambda_t2i": 0}))
    cfg, vocab, model, _ = load_trained(str(tmp_path / "run"), "best")
    data = inject_wrong_pairs(load_split(cfg.data, "val"), 0.25, seed=1)
    emb, ll = split_pair_scores(model, data, vocab, cfg.data, torch.device("cpu"), images_per_batch=5)
    dataset = ImageDataset(data, image_transform(cfg.data, train=False))
    owners = [i for i in range(data.num_images) for _ in data.captions[i]]
    images = torch.stack([dataset[i][0] for i in owners])
    images = normalize_uint8(images) if images.dtype == torch.uint8 else images
    ref_emb, ref_ll = raw_pair_scores(model, images, data.flat_captions(), vocab, cfg.data.max_caption_len,
                                      torch.device("cpu"), batch=7)
    np.testing.assert_allclose(emb, ref_emb, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ll, ref_ll, rtol=1e-4, atol=1e-4)
    labels = wrong_pair_labels(data)
    assert labels.sum() == 20 and set(np.flatnonzero(labels)) == {c for c, _ in data.extra["wrong_pairs"]["replaced"]}


def test_average_precision_matches_precision_at_each_positive():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 6, 50).astype(float)  # ties
    labels = rng.integers(0, 2, 50)
    naive = np.mean([labels[scores >= s].mean() for s in scores[labels == 1]])
    assert average_precision(scores, labels) == pytest.approx(naive)
    assert average_precision([0.9, 0.8, 0.1], [1, 1, 0]) == 1.0
    assert average_precision([0.1, 0.8, 0.9], [1, 0, 0]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="positive"):
        average_precision([1, 2], [0, 0])
