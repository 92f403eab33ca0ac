"""Kill training at every checkpoint write and mid-epoch, then resume: the run must finish with the
report an uninterrupted run gives, and leave no temp file behind."""
import errno
import json
import os
import subprocess
import sys

import pytest
import torch

import train
from data.atomic import TMP_MARK
from runfolder import checkpoint
from runfolder.checkpoint import CheckpointError, load_checkpoint, save_atomic
from runfolder.folder import RunFolder
from tests.test_train import tiny
from training.resume import recover_best

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Three steps per epoch: epoch 1 is cross-entropy (xe.pt is written after it), epoch 2 SCST, then
# one stage-2 epoch (stage2.pt).
EXTRA = {"semi.stage2_epochs": 1}


def _run(tmp_path, where: str, n: int, *overrides: str) -> subprocess.CompletedProcess:
    args = tiny(tmp_path, out="killed", **EXTRA) + list(overrides)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "tests.fault_runner", where, str(n), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _comparable(report, run: str):
    """The report without wall-clock times, the run folder's name replaced by RUN."""
    if isinstance(report, dict):
        return {k: _comparable(v, run) for k, v in report.items() if "seconds" not in k}
    if isinstance(report, list):
        return [_comparable(v, run) for v in report]
    return report.replace(run, "RUN") if isinstance(report, str) else report


def test_a_run_killed_at_every_checkpoint_write_resumes_to_the_same_report(tmp_path):
    # One thread, as the killed processes run (OMP_NUM_THREADS=1): oneDNN's convolutions sum in a
    # thread-count-dependent order, so only runs on the same thread count agree to the last bit.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        straight = train.main(tiny(tmp_path, out="straight", **EXTRA))
    finally:
        torch.set_num_threads(threads)
    # Each process is killed at the next instant; the next one resumes from what it left.
    kills = [("xe.pt", 1), ("best.pt", 1), ("last.pt", 1), ("step", 5), ("last.pt", 1), ("stage2.pt", 1)]
    for i, (where, n) in enumerate(kills):
        done = _run(tmp_path, where, n, *(["train.resume=true"] if i else []))
        assert done.returncode == -9, (where, done.stdout[-2000:], done.stderr[-2000:])
        if where != "step":
            assert [f for f in os.listdir(tmp_path / "killed") if f.startswith(where + ".tmp.")], where
    done = _run(tmp_path, "none", 0, "train.resume=true")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from" in done.stdout and "left by an interrupted write" in done.stdout
    resumed = json.loads((tmp_path / "killed" / "report.json").read_text())
    got, want = _comparable(resumed, str(tmp_path / "killed")), _comparable(json.loads(json.dumps(straight)),
                                                                             str(tmp_path / "straight"))
    assert got == want, [(k, got[k], want.get(k)) for k in got if got[k] != want.get(k)]
    assert not [f for f in os.listdir(tmp_path / "killed") if TMP_MARK in f]
    best = load_checkpoint(str(tmp_path / "killed" / "best.pt"))
    assert best["epoch"] == best["best_epoch"] == resumed["best_epoch"] - 1


def _fake(path, epoch: int, best_epoch: int) -> dict:
    ckpt = {"model": {"w": torch.full((2,), float(epoch))}, "config": {}, "epoch": epoch, "best_epoch": best_epoch}
    save_atomic(ckpt, str(path))
    return ckpt


def test_a_stale_best_left_by_the_old_write_order_is_recovered(tmp_path, capsys):
    """Runs from before last.pt was written last: killed between the two writes, best.pt is one
    best epoch behind the last.pt that records it; that epoch is the last one, so last.pt holds it."""
    folder = RunFolder(str(tmp_path))
    _fake(tmp_path / "best.pt", 0, 0)
    last = _fake(tmp_path / "last.pt", 1, 1)
    state = {"epoch": 1, "best_epoch": 1, "best_rsum": 50.0}
    recover_best(folder, last, state)
    assert load_checkpoint(str(tmp_path / "best.pt"))["epoch"] == 1 and state["best_epoch"] == 1
    assert "rewritten from" in capsys.readouterr().out
    # best.pt gone and the best epoch is not the last one: nothing holds it; said, and chosen anew
    os.remove(tmp_path / "best.pt")
    last = _fake(tmp_path / "last.pt", 2, 1)
    state = {"epoch": 2, "best_epoch": 1, "best_rsum": 50.0}
    recover_best(folder, last, state)
    assert state["best_epoch"] == -1 and "WARNING" in capsys.readouterr().out


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"),
                                     RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")])
def test_a_full_disk_says_so_and_keeps_the_old_file(tmp_path, monkeypatch, failure):
    path = tmp_path / "last.pt"
    _fake(path, 1, 1)

    def full(obj, f):
        open(f, "wb").write(b"partial")
        raise failure

    monkeypatch.setattr(checkpoint.torch, "save", full)
    with pytest.raises(CheckpointError, match=f"disk full: could not write {path}"):
        save_atomic({"model": {}, "config": {}}, str(path))
    monkeypatch.undo()
    assert load_checkpoint(str(path))["epoch"] == 1
    assert os.listdir(tmp_path) == ["last.pt"]
