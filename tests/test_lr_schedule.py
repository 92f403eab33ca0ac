"""train.lr_schedule: the matcher's learning rate per epoch, step (older runs) or cosine."""
import math

import pytest
import torch

from config import ConfigError, load_config
from training.loop import lr_factor, lr_scheduler
from training.schedule_watch import schedule_changes


def rates(cfg, epochs: int) -> list[float]:
    """The lr the optimiser holds in each epoch when the scheduler is stepped once per epoch."""
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=cfg.train.lr)
    sched = lr_scheduler(cfg, opt)
    seen = []
    for _ in range(epochs):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return seen


def test_cosine_runs_from_lr_to_lr_times_decay_along_half_a_cosine():
    cfg = load_config(None, ["train.lr_schedule=cosine", "train.epochs=5", "train.lr=0.001", "train.lr_decay=0.2"])
    naive = [0.001 * (0.2 + 0.8 * (1 + math.cos(math.pi * e / 4)) / 2) for e in range(5)]
    assert rates(cfg, 5) == pytest.approx(naive)
    assert naive[0] == pytest.approx(0.001) and naive[-1] == pytest.approx(0.0002)
    assert all(a > b for a, b in zip(naive, naive[1:]))


def test_step_keeps_the_steplr_of_older_runs():
    cfg = load_config(None, ["train.epochs=7", "train.lr=0.001", "train.lr_decay_epochs=3", "train.lr_decay=0.1"])
    assert rates(cfg, 7) == pytest.approx([0.001] * 3 + [0.0001] * 3 + [0.00001])
    assert [lr_factor(cfg, e) for e in range(7)] == pytest.approx([1, 1, 1, 0.1, 0.1, 0.1, 0.01])
    sched = lr_scheduler(cfg, torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.001))
    assert isinstance(sched, torch.optim.lr_scheduler.StepLR)  # its state dict loads into older checkpoints'


def test_cosine_is_not_named_as_an_abrupt_change_and_bad_names_are_refused():
    step = schedule_changes(load_config(None, ["train.epochs=12", "train.lr_decay_epochs=5"]))
    cosine = schedule_changes(load_config(None, ["train.epochs=12", "train.lr_decay_epochs=5",
                                                 "train.lr_schedule=cosine"]))
    assert any("lr_decay_epochs" in text for _, text in step)
    assert not any("learning rate" in text for _, text in cosine)
    with pytest.raises(ConfigError, match="train.lr_schedule"):
        load_config(None, ["train.lr_schedule=linear"])
