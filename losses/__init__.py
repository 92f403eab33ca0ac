"""Losses and reward metrics."""
from .cider import CiderD

__all__ = ["CiderD"]
