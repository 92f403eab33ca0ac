"""The GAN alone after the joint epochs (imagine.solo_steps): what it trains, what it leaves alone."""
import numpy as np
import torch

import train
from config import load_config
from data import load_split
from data.contrast import TokenSwapper
from data.datasets import pad_captions
from runfolder.checkpoint import load_checkpoint
from runfolder.folder import RunFolder, load_trained
from tests.test_train import tiny
from training.gan_phase import run_gan_phase
from training.imagine import Critic, generator_terms

FAST = {"train.epochs": 1, "look.lambda_i2t": 0, "look.meteor": False}


def weights(state: dict, prefix: str) -> dict:
    return {k: v for k, v in state.items() if k.startswith(prefix)}


def test_the_gan_alone_trains_the_generator_and_d_and_leaves_the_matcher_as_it_was(tmp_path):
    train.main(tiny(tmp_path, out="joint", **FAST))
    report = train.main(tiny(tmp_path, out="solo", **FAST, **{"imagine.solo_steps": 4}))
    joint = load_checkpoint(str(tmp_path / "joint" / "best.pt"))
    solo = load_checkpoint(str(tmp_path / "solo" / "best.pt"))
    assert solo["gan_solo"]["steps"] == 4 and solo["gan_solo"]["from_epoch"] == 1 and "gan_solo" not in joint
    matcher_a, matcher_b = weights(joint["model"], "matcher."), weights(solo["model"], "matcher.")
    assert matcher_a and all(torch.equal(v, matcher_b[k]) for k, v in matcher_a.items())  # BatchNorm buffers too
    gen_a, gen_b = weights(joint["model"], "imagine."), weights(solo["model"], "imagine.")
    changed = [k for k, v in gen_a.items() if v.is_floating_point() and not torch.equal(v, gen_b[k])]
    assert len(changed) > len(gen_a) // 2, changed  # the CA and the generator trained
    assert any(not torch.equal(v, solo["critic"]["model"][k]) for k, v in joint["critic"]["model"].items())
    assert solo["optimizers"]["imagine"]["state"][0]["step"] > joint["optimizers"]["imagine"]["state"][0]["step"]
    # last.pt (what a resumed run continues from) is the joint epochs' end, untouched
    last_a, last_b = (load_checkpoint(str(tmp_path / d / "last.pt"))["model"] for d in ("joint", "solo"))
    assert all(torch.equal(v, last_b[k]) for k, v in last_a.items())
    assert report["synthesis"]["gan_solo"]["steps"] == 4
    load_trained(str(tmp_path / "solo"))  # strict load of the written-back checkpoint


def test_a_finished_phase_is_not_redone_a_longer_one_continues_and_no_gan_means_no_phase(tmp_path, capsys):
    args = tiny(tmp_path, **FAST, **{"imagine.solo_steps": 2})
    train.main(args)
    run = tmp_path / "run"
    before = (run / "best.pt").read_bytes()
    cfg = load_config(None, args)
    split = load_split(cfg.data, "train")
    vocab = load_trained(str(run))[1]
    result = run_gan_phase(cfg, RunFolder(str(run)), split, load_split(cfg.data, "val"), vocab, torch.device("cpu"))
    assert result["steps"] == 2 and "already holds 2 steps" in capsys.readouterr().out
    assert (run / "best.pt").read_bytes() == before

    # a finished run resumed with more of the phase trains the difference and reports again
    report = train.main(args + ["train.resume=true", "imagine.solo_steps=3"])
    assert report["synthesis"]["gan_solo"]["steps"] == 3 and (run / "best.pt").read_bytes() != before
    assert "1 steps from epoch 1" in capsys.readouterr().out

    train.main(tiny(tmp_path, out="plain", **FAST, **{"imagine.solo_steps": 2, "imagine.lambda_t2i": 0}))
    assert "gan_solo" not in load_checkpoint(str(tmp_path / "plain" / "best.pt"))


def test_match_swaps_trains_through_both_phases_and_its_term_asks_for_the_swapped_word(tmp_path):
    args = {**FAST, "imagine.solo_steps": 2, "imagine.match_swaps": "true", "loss.contrast_weight": 0}
    report = train.main(tiny(tmp_path, out="swaps", **args))  # the joint epoch and the phase both draw swaps
    assert report["synthesis"]["gan_solo"]["steps"] == 2
    cfg, vocab, model, _ = load_trained(str(tmp_path / "swaps"))
    texts = ["a large red circle", "a small blue square", "a green triangle"]
    captions, lengths = pad_captions([torch.tensor(vocab.encode(t)) for t in texts])
    torch.manual_seed(0)
    with torch.no_grad():
        out = {"cap": model.matcher.encode_captions(captions, lengths)}
        out.update(model.imagine(out["cap"]["grounded"], torch.randn(3, model.imagine.z_dim)))
        new, new_lengths, ok = TokenSwapper(vocab)(captions, lengths, np.random.default_rng(0))
        swapped = (model.matcher.encode_captions(new, new_lengths), ok)
        critic, ids = Critic(cfg.imagine, 0.0, local=True), torch.arange(3)
        plain = generator_terms(critic, out, cfg.imagine, model.matcher, ids, cfg.data.image_size)["gan_match"]
        asked = generator_terms(critic, out, cfg.imagine, model.matcher, ids, cfg.data.image_size, swapped=swapped)
    assert ok.all() and float(asked["gan_match"]) > float(plain)  # each swap is one more negative per image


def _phase_average(start: list, lives: list, decay: float, first: int) -> list:
    """The naive reference: the average after each step t of the phase, warmed up from its start."""
    avg = [v.clone() for v in start]
    for t, live in enumerate(lives, start=first):
        d = min(decay, (1 + t) / (10 + t))
        avg = [d * a + (1 - d) * w for a, w in zip(avg, live)]
    return avg


def test_the_phase_restarts_the_generators_average_from_the_live_weights(tmp_path):
    from training.gan_phase import SoloGan

    args = tiny(tmp_path, **FAST, **{"imagine.ema": 0.9})
    train.main(args)
    run = str(tmp_path / "run")
    cfg = load_config(None, args)
    split, vocab = load_split(cfg.data, "train"), load_trained(run)[1]
    for first in (0, 5):  # a fresh phase restarts the average; a continued one carries it on
        model, ckpt = load_trained(run)[2], load_checkpoint(str(tmp_path / "run" / "best.pt"))
        with torch.no_grad():  # an average far from the live weights, as after many joint steps
            for p in model.imagine_ema.parameters():
                p.add_(1.0)
        joint_avg = [p.detach().clone() for p in model.imagine_ema.parameters()]
        live_start = [p.detach().clone() for p in model.imagine.parameters()]
        torch.manual_seed(0)
        solo = SoloGan(cfg, model, ckpt, torch.device("cpu"), vocab, first_step=first)
        batches = solo.batches(split, vocab, cfg.train.epochs)
        lives = []
        for _ in range(3):
            solo.step(next(batches))
            lives.append([p.detach().clone() for p in model.imagine.parameters()])
        expect = _phase_average(live_start if first == 0 else joint_avg, lives, 0.9, first)
        for got, want in zip(model.imagine_ema.parameters(), expect):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        assert model.sampler() is model.imagine_ema


def test_the_phases_discriminator_augments_with_its_own_policies(tmp_path):
    from training.gan_phase import SoloGan

    args = tiny(tmp_path, **FAST)  # the joint epochs' discriminator augments nothing (imagine.diff_augment)
    train.main(args)
    run = str(tmp_path / "run")
    split, vocab = load_split(load_config(None, args).data, "train"), load_trained(run)[1]
    results = {}
    for policy in ("translation,cutout", ""):
        cfg = load_config(None, args + [f"imagine.solo_diff_augment='{policy}'"])
        model, ckpt = load_trained(run)[2], load_checkpoint(str(tmp_path / "run" / "best.pt"))
        torch.manual_seed(0)
        solo = SoloGan(cfg, model, ckpt, torch.device("cpu"), vocab)
        assert solo.critic.augment.policy == tuple(p for p in policy.split(",") if p)
        solo.step(next(solo.batches(split, vocab, cfg.train.epochs)))
        results[policy] = [p.detach().clone() for p in model.imagine.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(*results.values()))  # the augmentation changed the update
