"""Pick the loader for ``cfg.name`` and return one :class:`Split`."""
from __future__ import annotations

import os

from config import DATASET_KINDS, DataConfig, cache_dir

from .features import load_h5_split, load_precomp_split
from .karpathy import load_karpathy_split
from .records import DataError, Split
from .labelled import mark_labelled
from .wrong_pairs import inject_wrong_pairs



def _need(cfg: DataConfig, key: str) -> str:
    value = getattr(cfg, key)
    if not value:
        raise DataError(f"data.name={cfg.name} needs data.{key}=... (it is not set)")
    return os.path.expanduser(value)


def load_split(cfg: DataConfig, split: str) -> Split:
    """Load split ``train``, ``val`` or ``test`` of the dataset the config names; with
    ``data.wrong_fraction > 0`` the training split carries injected wrong pairs, and with
    ``data.labelled_fraction < 1`` it records which images keep their captions."""
    loaded = _load(cfg, split)
    if split != "train":
        return loaded
    if cfg.wrong_fraction > 0:
        loaded = inject_wrong_pairs(loaded, cfg.wrong_fraction, cfg.wrong_seed)
    if cfg.labelled_fraction != 1:
        loaded = mark_labelled(loaded, cfg.labelled_fraction, cfg.labelled_seed)
    return loaded


def _load(cfg: DataConfig, split: str) -> Split:
    k = cfg.captions_per_image
    if cfg.name == "shapes":
        from .shapes import load_shapes_split

        n = {"train": cfg.shapes.n_train, "val": cfg.shapes.n_val, "test": cfg.shapes.n_test}[split]
        return load_shapes_split(
            split, n, cfg.shapes.seed, cfg.image_size, cfg.shapes.max_objects, cache_dir(cfg)
        )
    if cfg.name == "karpathy":
        return load_karpathy_split(_need(cfg, "json"), _need(cfg, "image_root"), split, cfg.use_restval, k)
    if cfg.name == "precomp":
        return load_precomp_split(_need(cfg, "precomp_dir"), split, k)
    if cfg.name == "h5":
        return load_h5_split(_need(cfg, "h5"), split, k)
    raise DataError(f"data.name={cfg.name!r} is not one of {', '.join(DATASET_KINDS)}")
