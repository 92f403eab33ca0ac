"""The matcher's polish after the GAN-alone phase (loss.polish_steps): what it trains, what it leaves alone."""
import pytest
import torch

import train
from config import ConfigError, load_config
from runfolder.checkpoint import load_checkpoint
from runfolder.folder import load_trained
from tests.test_train import tiny

FAST = {"train.epochs": 1, "look.lambda_i2t": 0, "look.meteor": False, "imagine.solo_steps": 2}


def part(state: dict, prefix: str) -> dict:
    return {k: v for k, v in state.items() if k.startswith(prefix)}


def test_polish_trains_the_matcher_only_and_the_imagined_term_changes_what_it_learns(tmp_path):
    train.main(tiny(tmp_path, out="plain", **FAST))
    report = train.main(tiny(tmp_path, out="pol", **FAST, **{"loss.polish_steps": 3}))
    train.main(tiny(tmp_path, out="ctl", **FAST, **{"loss.polish_steps": 3, "loss.polish_imagined_weight": 0}))
    plain, pol, ctl = (load_checkpoint(str(tmp_path / d / "best.pt")) for d in ("plain", "pol", "ctl"))
    assert pol["polish"]["steps"] == 3 and pol["polish"]["imagined_weight"] == 1 and "polish" not in plain
    assert report["polish"] == pol["polish"]
    assert "3 matcher steps with the generator frozen" in (tmp_path / "pol" / "report.md").read_text()
    a, b, c = (part(x["model"], "matcher.") for x in (plain, pol, ctl))
    assert any(not torch.equal(v, b[k]) for k, v in a.items())  # the matcher trained
    # the imagined negatives reach the matcher: the control's same steps without them end elsewhere
    assert any(not torch.equal(v, c[k]) for k, v in b.items() if v.is_floating_point())
    gen_a, gen_b = part(plain["model"], "imagine."), part(pol["model"], "imagine.")
    assert gen_a and all(torch.equal(v, gen_b[k]) for k, v in gen_a.items())  # the generator is frozen
    assert pol["optimizers"]["match"]["state"][0]["step"] > plain["optimizers"]["match"]["state"][0]["step"]
    load_trained(str(tmp_path / "pol"))  # strict load of the written-back checkpoint


def test_a_finished_polish_is_not_redone_and_the_imagined_weight_needs_the_gan(tmp_path, capsys):
    args = tiny(tmp_path, **FAST, **{"loss.polish_steps": 2})
    train.main(args)
    before = (tmp_path / "run" / "best.pt").read_bytes()
    train.main(args + ["train.resume=true"])
    assert "already holds 2 steps" in capsys.readouterr().out
    assert (tmp_path / "run" / "best.pt").read_bytes() == before
    with pytest.raises(ConfigError, match="loss.polish_imagined_weight=0"):
        load_config(None, tiny(tmp_path, out="x", **{"loss.polish_steps": 2, "imagine.lambda_t2i": 0}))
    cfg = load_config(None, tiny(tmp_path, out="x", **{"loss.polish_steps": 2, "imagine.lambda_t2i": 0,
                                                       "loss.polish_imagined_weight": 0}))
    assert cfg.loss.polish_steps == 2
