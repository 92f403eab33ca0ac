"""Run train.main and SIGKILL it at a chosen instant (used by test_fault_injection.py).

    python -m tests.fault_runner WHERE N key=value ...

WHERE is a checkpoint file name (``last.pt``, ``best.pt``, ``xe.pt``, ``stage2.pt``): the process
dies during its N-th write of that file, after half of it reached the temp file, as a kill or a
power cut mid-write would leave it. WHERE ``step`` kills it at the start of its N-th training
step. ``none`` runs to the end.
"""
from __future__ import annotations

import os
import signal
import sys

import torch

import train
import training.loop
import training.resume
import training.stage2
from data.atomic import TMP_MARK
from runfolder import checkpoint


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def main(where: str, n: int, overrides: list[str]) -> None:
    seen = {"count": 0}
    real_save = checkpoint.save_atomic

    def save(obj, path):
        if os.path.basename(path) == where:
            seen["count"] += 1
            if seen["count"] == n:
                tmp = f"{path}{TMP_MARK}{os.getpid()}"
                torch.save(obj, tmp)
                with open(tmp, "r+b") as f:
                    f.truncate(os.path.getsize(tmp) // 2)
                _die()
        real_save(obj, path)

    real_step = training.loop.joint_step

    def step(*args, **kwargs):
        seen["count"] += 1
        if seen["count"] == n:
            _die()
        return real_step(*args, **kwargs)

    if where == "step":
        training.loop.joint_step = step
    elif where != "none":
        training.resume.save_atomic = training.stage2.save_atomic = save
    train.main(overrides)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
