"""audit.py: every pair of a split ranked by suspicion, a CSV row per pair, a page that survives a missing image."""
import csv
import json
import os

import numpy as np

import audit
import train
from metrics.loss_mixture import clean_probability
from tests.test_train import tiny


def test_audit_ranks_every_pair_and_grades_signals_against_injected_wrong_pairs(tmp_path):
    train.main(tiny(tmp_path, **{"train.epochs": 1, "look.scst_epochs": 0, "data.wrong_fraction": 0.25,
                                 "robust.enabled": True}))
    summary = audit.main([str(tmp_path / "run"), "--out", str(tmp_path / "audit"), "--top", "10"])
    rows = list(csv.DictReader(open(tmp_path / "audit" / "audit_train.csv")))
    assert len(rows) == 240 and sorted(int(r["caption_index"]) for r in rows) == list(range(240))
    suspicion = [float(r["suspicion"]) for r in rows]
    assert suspicion == sorted(suspicion, reverse=True)  # most suspect first
    assert {"image", "caption", "score", "clean_probability", "d_logit", "recorded_loss", "injected_wrong"} <= set(rows[0])
    assert sum(int(r["injected_wrong"]) for r in rows) == 60 == summary["injected_wrong"]
    assert set(summary["detection"]) == {"score", "ranking_loss", "recorded_loss", "clean_probability", "d_logit",
                                         "combined"}
    page = (tmp_path / "audit" / "audit_train.html").read_text()
    assert page.count("<img") == 10 and "Top 10 suspects" in page
    assert json.load(open(tmp_path / "audit" / "audit_train.json"))["pairs"] == 240
    # Without the caption prior the fused score is the raw likelihood's: another score for the same pairs.
    audit.main([str(tmp_path / "run"), "--out", str(tmp_path / "raw"), "--no-caption-prior"])
    raw = {r["caption_index"]: float(r["score"]) for r in csv.DictReader(open(tmp_path / "raw" / "audit_train.csv"))}
    prior = {r["caption_index"]: float(r["score"]) for r in rows}
    assert raw.keys() == prior.keys() and any(abs(raw[k] - prior[k]) > 1e-6 for k in raw)


def test_audit_names_a_missing_image_instead_of_failing(tmp_path, karpathy_dir):
    json_path, root = karpathy_dir
    train.main(tiny(tmp_path, **{"data.name": "karpathy", "data.json": json_path, "data.image_root": root,
                                 "train.epochs": 1, "look.scst_epochs": 0, "imagine.lambda_t2i": 0,
                                 "data.batch_size": 2, "data.vocab_threshold": 1}))
    os.remove(os.path.join(root, "imgs", "train_1.png"))
    summary = audit.main([str(tmp_path / "run"), "--out", str(tmp_path / "audit")])
    rows = list(csv.DictReader(open(tmp_path / "audit" / "audit_train.csv")))
    assert len(rows) == 20  # 4 images x 5 captions, the lost image's pairs included
    lost = [r for r in rows if r["image"].endswith("train_1.png")]
    assert len(lost) == 5 and all(r["score"] == "" for r in lost)
    assert summary["missing_images"][0].endswith("train_1.png")
    page = (tmp_path / "audit" / "audit_train.html").read_text()
    assert "could not be read" in page and "train_1.png" in page


def test_clean_probability_is_high_for_the_small_loss_pairs():
    losses = np.r_[np.full(30, 0.1), np.full(10, 1.0)] + np.random.default_rng(0).normal(0, 0.01, 40)
    p = clean_probability(losses)
    assert (p[:30] > 0.9).all() and (p[30:] < 0.1).all()
    assert (clean_probability(np.ones(5)) == 1).all()


def test_combined_suspicion_averages_rank_percentiles_in_each_signals_direction():
    from evaluation.audit_signals import combined_suspicion

    signals = {"score": np.array([0.9, 0.1, 0.5, np.nan, np.nan]),  # low score = suspect
               "ranking_loss": np.array([0.0, 2.0, 1.0, 3.0, np.nan]),  # high loss = suspect
               "d_logit": np.array([1.0, 0.0, -1.0, 5.0, np.nan]),  # low logit = suspect
               "clean_probability": np.zeros(5)}  # not a ranked signal: ignored
    got = combined_suspicion(signals)
    # percentiles among the scored pairs: score -> [0, 1, 0.5]; loss -> [0, 2/3, 1/3, 1]; d -> [1/3, 2/3, 1, 0]
    assert np.allclose(got[:4], [(0 + 0 + 1 / 3) / 3, (1 + 2 / 3 + 2 / 3) / 3, (0.5 + 1 / 3 + 1) / 3, (1 + 0) / 2])
    assert np.isnan(got[4])  # a pair no signal could score stays unscored
