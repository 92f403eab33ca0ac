import pytest
import torch

from models.modes import eval_mode


def test_eval_mode_restores_each_module_even_on_error():
    training, frozen = torch.nn.Dropout(0.5), torch.nn.Dropout(0.5).eval()
    with eval_mode(training, frozen):
        assert not training.training and not frozen.training
    assert training.training and not frozen.training
    with pytest.raises(RuntimeError), eval_mode(training):
        raise RuntimeError("boom")
    assert training.training
