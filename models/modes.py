"""Train/eval mode for a block of code, restored afterwards."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch.nn as nn


@contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Put ``modules`` in eval mode (dropout off, BatchNorm on running statistics) for the block and
    give each its own mode back afterwards, also when the block raises."""
    modes = [(m, m.training) for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.train(training)
