"""Atomic file writes: everything goes to a temp file beside its target and is renamed over it,
so a crash or a full disk never leaves a half-written file under the target's name."""
from __future__ import annotations

import glob
import json
import os
from contextlib import contextmanager
from typing import Any, Iterator

from .records import DataError

TMP_MARK = ".tmp."  # temp files are TARGET.tmp.PID[SUFFIX]


@contextmanager
def atomic_path(path: str, suffix: str = "") -> Iterator[str]:
    """Yield a temp path beside ``path`` (its folder is created); when the block ends without an
    error, the temp file replaces ``path``; on an error it is removed and ``path`` is untouched."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}{TMP_MARK}{os.getpid()}{suffix}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text_atomic(path: str, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def write_json_atomic(path: str, data: Any, indent: int = 1) -> None:
    write_text_atomic(path, json.dumps(data, indent=indent) + "\n")


def ensure_writable(path: str) -> None:
    """Create ``path``'s folder and make sure a file can be written there, before any work is done;
    a :class:`DataError` naming the path otherwise."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if os.path.isdir(path):
            raise DataError(f"{path}: is a folder; give a file name")
        probe = f"{path}{TMP_MARK}{os.getpid()}"
        open(probe, "w").close()
        os.remove(probe)
    except OSError as err:
        raise DataError(f"cannot write {path}: {err.strerror or err}") from None


def remove_temp_files(folder: str) -> list[str]:
    """Delete the temp files interrupted writes left in ``folder``; returns their names."""
    left = sorted(glob.glob(os.path.join(glob.escape(folder), f"*{TMP_MARK}*")))
    for path in left:
        if os.path.isfile(path):
            os.remove(path)
    return [os.path.basename(p) for p in left]
