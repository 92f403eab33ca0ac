"""The wrong-pair option changes exactly the captions it records."""
import json

import numpy as np
import pytest

import train
from data.records import ArrayImages, DataError, Split
from data.wrong_pairs import inject_wrong_pairs
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


def test_training_records_the_wrong_pairs_in_the_run_folder(tmp_path):
    train.main(tiny(tmp_path, **{"train.epochs": 1, "look.lambda_i2t": 0, "imagine.lambda_t2i": 0,
                                 "data.wrong_fraction": 0.5}))
    record = json.load(open(tmp_path / "run" / "wrong_pairs.json"))
    assert record["fraction"] == 0.5 and len(record["replaced"]) == 120  # half of 48 x 5 captions
