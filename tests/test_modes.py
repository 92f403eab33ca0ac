import pytest
import torch

from models.modes import eval_mode, running_stats_kept


def test_eval_mode_restores_each_module_even_on_error():
    training, frozen = torch.nn.Dropout(0.5), torch.nn.Dropout(0.5).eval()
    with eval_mode(training, frozen):
        assert not training.training and not frozen.training
    assert training.training and not frozen.training
    with pytest.raises(RuntimeError), eval_mode(training):
        raise RuntimeError("boom")
    assert training.training


def test_running_stats_kept_normalises_with_the_batch_and_leaves_the_running_statistics():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 2, 1),
                              torch.nn.BatchNorm2d(2, momentum=None))
    net(torch.randn(8, 3, 6, 6))  # running statistics away from their initial values
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(5, 3, 6, 6) * 3 + 2
    with running_stats_kept(net):
        out = net(x)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # counts too
    assert [m.momentum for m in net if isinstance(m, torch.nn.BatchNorm2d)] == [0.1, None]
    reference = torch.nn.Sequential(*[type(m)(m.num_features) if isinstance(m, torch.nn.BatchNorm2d) else m
                                      for m in net])  # a fresh BatchNorm normalises with the batch too
    for fresh, m in zip(reference, net):
        if isinstance(m, torch.nn.BatchNorm2d):
            fresh.load_state_dict(m.state_dict())
    torch.testing.assert_close(out, reference.train()(x))
    net(x)  # outside the block the statistics move again
    assert not torch.equal(net[1].running_mean, before["1.running_mean"])
