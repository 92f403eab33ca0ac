"""YAML presets and ``key=value`` overrides onto the tree, and back to YAML and dicts.

``load_config("configs/shapes.yaml", ["data.batch_size=64"])`` merges the dataclass defaults, the
preset and the overrides, in that order. Unknown keys and wrong types are :class:`ConfigError`s
that name the key and list the valid ones (OmegaConf structured configs do the checking); values
out of range and cross-key conflicts are caught by :func:`config.checks.validate`.
"""
from __future__ import annotations

import functools
import os
from typing import Optional, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from .checks import validate
from .tree import Config, ConfigError, DataConfig


def valid_keys(node: Optional[DictConfig] = None, prefix: str = "") -> list[str]:
    """Every dotted leaf key of the tree, e.g. ``data.shapes.n_train``."""
    if node is None:
        return list(_all_keys())
    keys = []
    for key in node:
        value = node[key]
        dotted = f"{prefix}{key}"
        if isinstance(value, DictConfig):
            keys += valid_keys(value, dotted + ".")
        else:
            keys.append(dotted)
    return keys


@functools.lru_cache(maxsize=1)
def _all_keys() -> tuple[str, ...]:
    return tuple(valid_keys(OmegaConf.structured(Config)))


def _explain(err: OmegaConfBaseException, where: str) -> ConfigError:
    key = getattr(err, "full_key", None) or "?"
    if isinstance(err, ConfigKeyError) or "not in" in str(err):
        return ConfigError(
            f"{where}: unknown key '{key}'. Valid keys:\n  " + "\n  ".join(valid_keys())
        )
    if isinstance(err, ValidationError):
        msg = str(err).splitlines()[0]
        return ConfigError(f"{where}: bad value for '{key}': {msg}")
    return ConfigError(f"{where}: {str(err).splitlines()[0]}")


def load_config(path: Optional[str] = None, overrides: Sequence[str] = ()) -> Config:
    """Defaults, then the YAML preset at ``path``, then ``key=value`` overrides."""
    cfg = OmegaConf.structured(Config)
    if path is not None:
        if not os.path.isfile(path):
            raise ConfigError(f"config file not found: {path}")
        try:
            preset = OmegaConf.load(path)
        except Exception as err:  # YAML syntax errors come in several exception types
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
        try:
            cfg = OmegaConf.merge(cfg, preset)
        except OmegaConfBaseException as err:
            raise _explain(err, path) from None
    known = set(valid_keys())
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not key=value (e.g. data.batch_size=64)")
        key = item.split("=", 1)[0]
        if key not in known:
            inside = [k for k in valid_keys() if k.startswith(key + ".")]
            if inside:
                raise ConfigError(
                    f"override '{item}': '{key}' is a section; set one of its keys:\n  "
                    + "\n  ".join(inside)
                )
            section = key.rsplit(".", 1)[0] + "." if "." in key else ""
            near = [k for k in valid_keys() if section and k.startswith(section)] or valid_keys()
            raise ConfigError(
                f"override '{item}': unknown key '{key}'. Valid keys:\n  " + "\n  ".join(near)
            )
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
        except OmegaConfBaseException as err:
            raise _explain(err, f"override '{item}'") from None
    cfg = OmegaConf.to_object(cfg)
    validate(cfg)
    return cfg


def to_yaml(cfg: Config) -> str:
    """The resolved config as YAML (saved in the run folder and every checkpoint)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


# Keys whose default changed after runs were saved without them: what such a run used. A saved
# config lists every key of its day, so a missing one means the run predates the key.
_BEFORE_THE_KEY = {("model", "small_cnn_depth"): 1, ("imagine", "standardise_text"): False,
                   ("imagine", "solo_steps"): 0, ("imagine", "ema"): 0.0,
                   ("imagine", "solo_diff_augment"): ""}


def from_dict(d: dict) -> Config:
    """Rebuild a typed Config from a saved dict (checkpoints store plain dicts); a key the run
    predates gets the value it ran with (``_BEFORE_THE_KEY``), not today's default."""
    d = {k: dict(v) if isinstance(v, dict) else v for k, v in d.items()}
    for (section, key), value in _BEFORE_THE_KEY.items():
        if isinstance(d.get(section), dict) and key not in d[section]:
            d[section][key] = value
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), d))
    except OmegaConfBaseException as err:
        raise _explain(err, "saved config") from None


def to_dict(cfg: Config) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg))


def cache_dir(cfg: DataConfig) -> str:
    """Where generated data (Shapes) is cached."""
    if cfg.cache_dir:
        return os.path.expanduser(cfg.cache_dir)
    return os.environ.get("LIM_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "lim")
