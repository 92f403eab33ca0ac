"""Tiny datasets the tests write themselves."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def _save(path: str, mode: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 255, size=(20, 24, 3), dtype=np.uint8)
    img = Image.fromarray(rgb, "RGB")
    if mode == "RGBA":
        img = img.convert("RGBA")
        img.putalpha(128)
    elif mode == "L":
        img = img.convert("L")
    elif mode == "P":
        img = img.convert("P")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img.save(path)


def write_karpathy(root: str, n_per_split=(4, 2, 2), modes=("RGB", "RGBA", "L", "P")) -> str:
    """A tiny Karpathy JSON with PNGs in several PIL modes; returns the JSON path."""
    images, k = [], 0
    for split, n in zip(("train", "val", "test"), n_per_split):
        for i in range(n):
            name = f"{split}_{i}.png"
            _save(os.path.join(root, "imgs", name), modes[k % len(modes)], k)
            sentences = [{"raw": f"A photo number {k} of a {split} thing, view {j}.", "tokens": []} for j in range(5)]
            images.append({"filepath": "imgs", "filename": name, "split": split, "sentences": sentences, "imgid": k})
            k += 1
    path = os.path.join(root, "dataset_tiny.json")
    with open(path, "w") as f:
        json.dump({"images": images, "dataset": "tiny"}, f, indent=1)
    return path


@pytest.fixture
def karpathy_dir(tmp_path):
    """(json_path, image_root) of a tiny valid Karpathy set."""
    return write_karpathy(str(tmp_path)), str(tmp_path)


@pytest.fixture(scope="session")
def reported_run(tmp_path_factory):
    """Folder of a tiny one-epoch run with all three paths, its report.html included (trained once)."""
    import train
    from tests.test_train import tiny

    tmp = tmp_path_factory.mktemp("reported")
    train.main(tiny(tmp, **{"train.epochs": 1, "look.scst_epochs": 0}))
    return tmp / "run"
