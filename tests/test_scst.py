import pytest
import torch

from losses.scst import mean_of_others_baseline, scst_loss, self_critical
from tests.test_caption_decoder import FEAT, make_decoder, policy_log_probs


def test_scst_loss_formula_and_token_normalisation():
    logprobs = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -4.0, -9.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    advantage = torch.tensor([2.0, -1.0], requires_grad=True)
    loss = scst_loss(logprobs, mask, advantage)
    torch.testing.assert_close(loss, torch.tensor(-((-6.0) * 2.0 + (-4.5) * -1.0) / 5.0))  # 5 tokens
    loss.backward()
    torch.testing.assert_close(logprobs.grad, -mask * torch.tensor([[2.0], [-1.0]]) / 5.0)
    assert advantage.grad is None  # the advantage is a constant of the policy gradient
    with pytest.raises(ValueError, match="advantage"):
        scst_loss(logprobs, mask, advantage[:1])


def test_mean_of_others_by_hand():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 6.0]])
    expected = torch.tensor([[2.5, 2.0, 1.5], [3.0, 3.0, 0.0]])
    torch.testing.assert_close(mean_of_others_baseline(rewards), expected)
    torch.testing.assert_close(mean_of_others_baseline(torch.tensor([[4.0, 1.0]])), torch.tensor([[1.0, 4.0]]))
    with pytest.raises(ValueError, match="n >= 2"):
        mean_of_others_baseline(torch.ones(3, 1))


def test_self_critical_terms_with_greedy_and_mean_of_others_baselines():
    logprobs = -torch.rand(6, 4)  # B=2 images, n=3 samples
    mask = torch.ones(6, 4)
    rewards = torch.tensor([[1.0, 0.0, 2.0], [0.5, 0.5, 3.5]])
    greedy = torch.tensor([[1.0], [2.0]])  # (B, 1): each image's greedy caption reward
    terms = self_critical(logprobs, mask, rewards, greedy)
    torch.testing.assert_close(terms.loss, scst_loss(logprobs, mask, torch.tensor([0.0, -1.0, 1.0, -1.5, -1.5, 1.5])))
    torch.testing.assert_close(terms.reward, torch.tensor(1.25))
    torch.testing.assert_close(terms.baseline, torch.tensor(1.5))
    others = self_critical(logprobs, mask, rewards, mean_of_others_baseline(rewards))
    torch.testing.assert_close(others.baseline, rewards.mean())  # the baselines average to the mean reward
    with pytest.raises(ValueError, match="baseline"):
        self_critical(logprobs, mask, rewards, torch.ones(2, 2))


def test_sampled_logprobs_are_the_sampling_policys_and_reach_every_parameter():
    dec = make_decoder(dropout=0.0)
    feats = torch.randn(3, FEAT)
    for temperature in (1.0, 0.5):
        torch.manual_seed(0)
        tokens, logprobs, mask = dec.sample(feats, n=2, temperature=temperature)
        expected = policy_log_probs(dec, feats.repeat_interleave(2, 0), tokens, temperature)
        torch.testing.assert_close(logprobs, expected)
    dec.zero_grad()
    scst_loss(logprobs, mask, torch.randn(6)).backward()
    missing = [n for n, p in dec.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_advantage_sign_moves_sampled_logprobs(sign):
    dec = make_decoder(dropout=0.0)
    feats = torch.randn(3, FEAT)
    torch.manual_seed(0)
    tokens, logprobs, mask = dec.sample(feats, n=2)
    before = logprobs.sum().item()
    scst_loss(logprobs, mask, torch.full((6,), sign)).backward()
    torch.optim.SGD(dec.parameters(), lr=0.1).step()
    with torch.no_grad():
        after = policy_log_probs(dec, feats.repeat_interleave(2, 0), tokens).sum().item()
    assert (after - before) * sign > 0
