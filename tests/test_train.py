"""End-to-end runs of train.main / evaluate.main on a tiny Shapes set."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import evaluate
import train
from losses.ranking import RankingLoss
from metrics.retrieval import recall_metrics
from runfolder.checkpoint import CheckpointError, load_checkpoint
from runfolder.folder import load_trained
from training.loop import TrainingError, epoch_caption_indices

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny(tmp_path, out="run", **extra) -> list[str]:
    args = {
        "data.shapes.n_train": 48, "data.shapes.n_val": 16, "data.shapes.n_test": 16, "data.image_size": 32,
        "data.batch_size": 16, "data.cache_dir": str(tmp_path / "cache"), "model.embed_dim": 16,
        "model.word_dim": 8, "model.text_hidden": 8, "model.small_cnn_width": 4, "train.epochs": 2,
        "train.one_caption_per_image": True, "train.out_dir": str(tmp_path / out), "train.log_every": 1,
        "look.hidden": 16, "look.word_dim": 8, "look.max_len": 8, "look.scst_epochs": 1, "look.scst_samples": 2,
        "imagine.image_size": 32, "imagine.c_dim": 8, "imagine.z_dim": 8, "imagine.g_width": 4, "imagine.d_width": 4,
        "imagine.batch_pairs": 0, "look.meteor": False,  # METEOR's Java start-up is most of a tiny run
        "imagine.solo_steps": 0,  # the GAN-alone phase after the epochs: tests/test_gan_phase.py
    }
    args.update(extra)
    return [f"{k}={v}" for k, v in args.items()]


def test_main_writes_run_folder_and_report(tmp_path):
    report = train.main(tiny(tmp_path, **{"look.meteor": True}))
    run = tmp_path / "run"
    for name in ("config.yaml", "vocab.json", "best.pt", "last.pt", "report.json", "report.md"):
        assert (run / name).exists(), name
    assert os.listdir(run / "tb")
    saved = json.loads((run / "report.json").read_text())
    assert saved == json.loads(json.dumps(report))
    emb = saved["retrieval"]["embedding"]
    assert set(emb) >= {"i2t", "t2i", "rsum"} and set(emb["i2t"]) == {"r1", "r5", "r10", "medr", "meanr"}
    assert emb["rsum"] == pytest.approx(sum(emb[d][k] for d in ("i2t", "t2i") for k in ("r1", "r5", "r10")), abs=0.05)
    if shutil.which("java"):
        assert 0 <= saved["captioning"]["METEOR"] <= 1
    ckpt = load_checkpoint(str(run / "last.pt"))  # weights_only=True inside
    assert ckpt["epoch"] == 1 and ckpt["step"] == 2 * (48 // 16)
    assert not [p for p in os.listdir(run) if ".tmp" in p]
    # a second run never overwrites the first
    train.main(tiny(tmp_path, **{"train.epochs": 1}))
    assert (tmp_path / "run-2" / "best.pt").exists()


def test_evaluate_matches_naive_metrics(tmp_path):
    train.main(tiny(tmp_path))
    out = tmp_path / "val.json"
    report = evaluate.main([str(tmp_path / "run"), "--split", "val", "--checkpoint", "last", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    cfg, vocab, lim, _ = load_trained(str(tmp_path / "run"), "last")
    model = lim.matcher
    from data import load_split
    from evaluation.retrieval import encode_split

    img, cap = encode_split(model, load_split(cfg.data, "val"), vocab, cfg.data, torch.device("cpu"), progress=False)
    naive = sum(w * -(cap[b][None] - img[b][:, None]).clamp(min=0).pow(2).sum(-1) for b, w in model.branch_weights.items())
    want = recall_metrics(naive.numpy())
    assert report["retrieval"]["embedding"]["rsum"] == pytest.approx(want["rsum"], abs=0.01)


def test_resume_continues_the_same_run(tmp_path):
    train.main(tiny(tmp_path, out="straight"))
    train.main(tiny(tmp_path, out="split", **{"train.max_steps": 48 // 16}))  # stops after epoch 1 (XE)
    train.main(tiny(tmp_path, out="split", **{"train.resume": "true"}))  # epoch 2 (SCST)
    a = load_checkpoint(str(tmp_path / "straight" / "last.pt"))
    b = load_checkpoint(str(tmp_path / "split" / "last.pt"))
    assert a["step"] == b["step"] and a["epoch"] == b["epoch"] == 1
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], msg=k)


def test_resume_refuses_another_config(tmp_path):
    train.main(tiny(tmp_path, **{"train.epochs": 1}))
    before = (tmp_path / "run" / "last.pt").read_bytes()
    with pytest.raises(CheckpointError, match="model.embed_dim"):
        train.main(tiny(tmp_path, **{"train.resume": "true", "model.embed_dim": 32}))
    assert (tmp_path / "run" / "last.pt").read_bytes() == before
    with pytest.raises(CheckpointError, match="does not exist"):
        train.main(tiny(tmp_path, out="nothing", **{"train.resume": "true"}))


def test_resume_accepts_a_run_from_before_a_config_key_was_added(tmp_path):
    from runfolder.checkpoint import save_atomic

    train.main(tiny(tmp_path, **{"train.epochs": 1, "look.lambda_i2t": 0, "imagine.lambda_t2i": 0}))
    path = str(tmp_path / "run" / "last.pt")
    ckpt = load_checkpoint(path)
    del ckpt["config"]["loss"]["imagined_weight"]  # as a checkpoint written before that key existed
    save_atomic(ckpt, path)
    train.main(tiny(tmp_path, **{"train.epochs": 2, "look.lambda_i2t": 0, "imagine.lambda_t2i": 0,
                                 "train.resume": "true"}))
    assert load_checkpoint(path)["epoch"] == 1


def test_bad_run_folders(tmp_path):
    with pytest.raises(CheckpointError, match="run folder not found"):
        evaluate.evaluate(str(tmp_path / "missing"))
    train.main(tiny(tmp_path, **{"train.epochs": 1}))
    run = tmp_path / "run"
    (run / "vocab.json").write_text(json.dumps({"words": ["<pad>", "<start>", "<end>", "<unk>", "zebra"]}))
    with pytest.raises(CheckpointError, match="does not match the vocabulary"):
        evaluate.evaluate(str(run))
    (run / "best.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="best.pt: not a loadable checkpoint"):
        evaluate.evaluate(str(run))


def test_non_finite_loss_stops_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setattr(RankingLoss, "forward", lambda self, *a, **k: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(TrainingError, match="non-finite loss at epoch 1"):
        train.main(tiny(tmp_path))


def test_epoch_indices_one_caption_per_image():
    from data.records import ArrayImages, Split

    split = Split("train", ArrayImages(np.zeros((10, 2, 2, 3), np.uint8)), [[f"c{i}{j}" for j in range(5)] for i in range(10)])
    idx = epoch_caption_indices(split, True, epoch=3, seed=0)
    assert sorted(idx // 5) == list(range(10))
    assert not np.array_equal(idx, epoch_caption_indices(split, True, epoch=4, seed=0))
    assert sorted(epoch_caption_indices(split, False, 0, 0)) == list(range(50))


def test_ddp_two_cpu_processes(tmp_path):
    """torchrun with 2 gloo processes: negatives gathered across them, one report from rank 0."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           os.path.join(ROOT, "train.py"), *tiny(tmp_path, **{"train.device": "cpu"})]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    result = subprocess.run(cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = load_checkpoint(str(tmp_path / "run" / "last.pt"))
    assert ckpt["step"] == 2 * (48 // (16 * 2))  # each process takes half of every epoch
    assert (tmp_path / "run" / "report.json").exists()


def test_ddp_sequential_schedule_with_every_beyond_lim_switch(tmp_path):
    """torchrun, 2 gloo processes, the paper's sequential updates with robust weighting, mined and
    contrast negatives and the modality adversary all on: DDP accepts every parameter's use."""
    extra = {"train.device": "cpu", "train.schedule": "sequential", "robust.enabled": True, "robust.warmup_epochs": 1,
             "loss.warmup_epochs": 0, "loss.mined_negatives": 16, "loss.contrast_weight": 1.0, "loss.imagined_weight": 1.0,
             "model.invariant_weight": 0.1, "data.wrong_fraction": 0.25, "look.scst_epochs": 0}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29519",
           os.path.join(ROOT, "train.py"), *tiny(tmp_path, **extra)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    result = subprocess.run(cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.load(open(tmp_path / "run" / "report.json"))
    assert {"modality", "wrong_pairs", "synthesis", "captioning"} <= set(report)
    losses = load_checkpoint(str(tmp_path / "run" / "last.pt"))["pair_losses"]["losses"]
    assert torch.isfinite(losses).sum() >= 2 * (48 // (16 * 2)) * 16  # both processes' pairs recorded
