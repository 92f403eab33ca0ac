"""look.val_caption_every: which epochs decode val captions (val rsum is measured every epoch)."""
import pytest

import train
import training.loop as loop
from config import ConfigError, load_config
from tests.test_train import tiny
from training.loop import caption_epoch


def test_caption_epochs_are_every_kth_and_the_last():
    def epochs(*overrides, steps_per_epoch=10):
        cfg = load_config(None, list(overrides))
        return [e + 1 for e in range(cfg.train.epochs) if caption_epoch(cfg, e, (e + 1) * steps_per_epoch)]

    assert epochs("train.epochs=7") == [1, 2, 3, 4, 5, 6, 7]  # the default: every epoch
    assert epochs("train.epochs=7", "look.val_caption_every=3") == [3, 6, 7]
    assert epochs("train.epochs=6", "look.val_caption_every=3") == [3, 6]
    assert epochs("train.epochs=7", "look.val_caption_every=0") == [7]
    # train.max_steps ends the run early: its last epoch decodes too
    assert epochs("train.epochs=7", "look.val_caption_every=0", "train.max_steps=20") == [2, 3, 4, 5, 6, 7]
    with pytest.raises(ConfigError, match="look.val_caption_every"):
        load_config(None, ["look.val_caption_every=-1"])


def test_a_run_decodes_val_captions_only_in_those_epochs(tmp_path, monkeypatch, capsys):
    decoded = []
    real = loop.generate_captions

    def counting(*args, **kwargs):
        decoded.append(len(decoded))
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "generate_captions", counting)
    train.main(tiny(tmp_path, **{"train.epochs": 3, "look.scst_epochs": 0, "look.val_caption_every": 2,
                                 "look.fused_top_k": 0, "imagine.lambda_t2i": 0}))
    lines = [line for line in capsys.readouterr().out.replace("\r", "\n").splitlines() if line.startswith("epoch ")]
    assert len(lines) == 3
    assert ["CIDEr" in line for line in lines] == [False, True, True]
    assert len(decoded) == 2  # the report decodes the test split through evaluation.captioning, not this name
