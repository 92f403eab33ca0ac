"""train.main with the hardest-negative ramp: the per-step schedule and the collapse warning."""
import pytest

import train
from losses.ranking import RankingLoss
from runfolder.checkpoint import load_checkpoint, save_atomic
from tests.test_train import tiny

MATCHER_ONLY = {"look.lambda_i2t": 0, "imagine.lambda_t2i": 0, "train.epochs": 3, "train.lr_decay_epochs": 0,
                "loss.max_violation": "true", "loss.warmup_epochs": 1, "loss.hard_ramp_epochs": 1}


def test_ramp_per_step_and_collapse_warning(tmp_path, monkeypatch, capsys):
    seen = []
    forward = RankingLoss.forward

    def spy(self, *args, **kwargs):
        seen.append(kwargs["hard_weight"])
        return forward(self, *args, **kwargs)

    curve = iter([90.0, 50.0, 30.0])  # best after epoch 1; the ramp starts in epoch 2 and val collapses
    monkeypatch.setattr(RankingLoss, "forward", spy)
    monkeypatch.setattr(train, "validate", lambda *a, **k: (lambda r: (r, f"val rsum {r:.1f}"))(next(curve)))
    train.main(tiny(tmp_path, **MATCHER_ONLY))
    # 3 epochs of 3 steps, one call per embedding branch and step, all with the step's weight.
    calls = len(seen) // 9
    assert len(seen) == 9 * calls and all(len(set(seen[i:i + calls])) == 1 for i in range(0, len(seen), calls))
    assert seen[::calls] == pytest.approx([0, 0, 0, 0, 1 / 3, 2 / 3, 1, 1, 1])
    out = capsys.readouterr().out
    assert "WARNING: val rsum 50.0 at epoch 2" in out and "loss.hard_ramp_epochs=1" in out
    ckpt = load_checkpoint(str(tmp_path / "run" / "last.pt"))
    assert ckpt["val_history"] == [90.0, 50.0, 30.0]


def test_resume_from_a_checkpoint_without_val_history(tmp_path):
    train.main(tiny(tmp_path, **{**MATCHER_ONLY, "train.epochs": 1}))
    path = str(tmp_path / "run" / "last.pt")
    ckpt = load_checkpoint(path)
    del ckpt["val_history"]  # as written before the history was kept
    save_atomic(ckpt, path)
    train.main(tiny(tmp_path, **{**MATCHER_ONLY, "train.epochs": 2, "train.resume": "true"}))
    history = load_checkpoint(path)["val_history"]
    assert len(history) == 2 and history[0] == ckpt["best_rsum"]
