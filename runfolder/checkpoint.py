"""Atomic checkpoints that load with ``weights_only=True`` (a checkpoint can never run code)."""
from __future__ import annotations

import errno
import os
import random
import re
import shutil
from typing import Any

import numpy as np
import torch

from data.atomic import atomic_path


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or from another config; names the file."""


def _write_failure(path: str, err: BaseException) -> CheckpointError:
    """A clear error for a failed write; a full disk is named as such, with the folder."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = -1
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    full = getattr(err, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "unexpected pos" in text \
        or "file write failed" in text or 0 <= free < 1 << 20
    if full:
        return CheckpointError(f"disk full: could not write {path} ({free / 2**20:.1f} MiB free in {folder}); "
                               "free some space and resume with train.resume=true")
    return CheckpointError(f"could not write {path}: {text}")


def save_atomic(obj: Any, path: str) -> None:
    """``torch.save`` to a temp file in the same folder, then rename over ``path``.

    A crash mid-write leaves the previous file in place, never a half-written one (a kill may leave
    the temp file, which :func:`remove_temp_files` clears on resume). A failed write (a full disk)
    is a :class:`CheckpointError` that says so.
    """
    try:
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)
    except (OSError, RuntimeError) as err:
        raise _write_failure(path, err) from None


def load_checkpoint(path: str) -> dict:
    """Load a checkpoint on CPU with ``weights_only=True``."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # empty or truncated file, pickle with forbidden globals, ...
        raise CheckpointError(f"{path}: not a loadable checkpoint ({_reason(err)})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise CheckpointError(f"{path}: not a checkpoint of this project (no 'model'/'config')")
    return ckpt


def _reason(err: Exception) -> str:
    """Why a checkpoint did not load, without torch's advice to retry with ``weights_only=False``
    (which would let the file run code: never)."""
    text = str(err)
    if "Weights only load failed" in text or "weights_only" in text:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        named = f" ({found.group(1)})" if found else ""
        return f"it holds code or objects{named} that a checkpoint may not hold; it was not loaded"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else type(err).__name__)[:300]


def rng_state() -> dict:
    """Python, NumPy and torch RNG states as tensors and plain types (weights_only-safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def config_differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    out = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: checkpoint {a!r}, now {b!r}")
    return out
