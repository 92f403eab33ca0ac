"""The collapse warning: a planted val curve against the schedule changes a config implies."""
import math

from config import load_config
from training.schedule_watch import collapse_warning, schedule_changes

HARDEST = (4, "hardest negatives started at epoch 5 (loss.warmup_epochs=4): try loss.hard_ramp_epochs=4")


def test_fires_on_a_collapse_after_a_change_and_names_it():
    curve = [40.0, 70.0, 90.0, 96.9, 95.0, 60.0]  # best at epoch 4 (index 3), collapse at index 5
    warning = collapse_warning(curve, [HARDEST])
    assert warning is not None and warning.startswith("WARNING")
    assert "loss.warmup_epochs=4" in warning and "96.9 at epoch 4" in warning and "60.0 at epoch 6" in warning


def test_quiet_without_a_big_drop_or_without_a_change_since_the_best():
    assert collapse_warning([40.0, 70.0, 90.0, 96.9, 95.0, 65.0], [HARDEST]) is None  # down less than a third
    assert collapse_warning([40.0, 70.0, 90.0, 96.9, 95.0, 60.0], []) is None  # nothing changed
    assert collapse_warning([40.0, 70.0, 90.0, 96.9, 95.0, 60.0], [(2, "early change")]) is None  # before the best
    assert collapse_warning([96.9, 60.0, 61.0], [(7, "later change")]) is None  # not yet happened
    assert collapse_warning([], [HARDEST]) is None and collapse_warning([50.0], [HARDEST]) is None


def test_skips_unknown_epochs_and_names_each_cause_once():
    curve = [math.nan, math.nan, 90.0, 80.0, 85.0, 20.0]  # a resume from a checkpoint without history
    ramp = "hardest negatives ramped in"
    warning = collapse_warning(curve, [(3, ramp), (4, ramp), (5, "lr decay")])
    assert warning.count(ramp) == 1 and "lr decay" in warning and "90.0 at epoch 3" in warning


def test_changes_read_off_the_config():
    cfg = load_config(None, ["train.epochs=12", "loss.warmup_epochs=4", "train.lr_decay_epochs=5",
                             "look.scst_epochs=2", "robust.enabled=true", "robust.warmup_epochs=2",
                             "loss.contrast_weight=1", "loss.contrast_start_epoch=3"])
    changes = schedule_changes(cfg)
    assert [e for e, _ in changes] == sorted(e for e, _ in changes)

    def at(epoch: int) -> str:
        return " | ".join(text for e, text in changes if e == epoch)

    assert "loss.warmup_epochs=4" in at(4) and "loss.hard_ramp_epochs" in at(4)
    assert "train.lr_decay_epochs=5" in at(5) and "train.lr_decay_epochs=5" in at(10)
    assert "SCST" in at(10) and "look.scst_epochs=2" in at(10)
    assert "robust.warmup_epochs=2" in at(2) and "loss.contrast_start_epoch=3" in at(3)
    assert at(1) == at(6) == ""
    ramped = schedule_changes(load_config(None, ["loss.warmup_epochs=3", "loss.hard_ramp_epochs=3",
                                                 "train.lr_decay_epochs=0", "look.scst_epochs=0"]))
    assert [e for e, _ in ramped] == [3, 4, 5] and len({t for _, t in ramped}) == 1
    quiet = load_config(None, ["loss.max_violation=false", "train.lr_decay_epochs=0", "look.lambda_i2t=0"])
    assert schedule_changes(quiet) == []
