"""RankingLoss against a naive per-pair double loop: values and gradients."""
from typing import Optional

import pytest
import torch

from losses.ranking import DEFAULT_MARGINS, RankingLoss


def embeddings(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64).abs()
    return x / x.norm(dim=1, keepdim=True)


def score(i: torch.Tensor, c: torch.Tensor, measure: str) -> torch.Tensor:
    return i @ c if measure == "cosine" else -((c - i).clamp(min=0) ** 2).sum()


def naive_reduce(costs: list, n: int, hard_weight: float) -> torch.Tensor:
    """One query's costs over its negatives, ``n`` candidates in all (the others cost 0): their sum,
    the hardest, or between them the sum of the ``k = n ** (1 - hard_weight)`` largest, the last
    counted by k's fraction."""
    if hard_weight == 0:
        return torch.stack(costs).sum()
    if hard_weight == 1:
        return torch.stack(costs).max()
    k = n ** (1 - hard_weight)
    ordered = sorted(costs, key=lambda c: -c.item()) + [costs[0] * 0] * (n - len(costs))
    whole = int(k)
    return torch.stack(ordered[:whole]).sum() + (k - whole) * ordered[whole]


def naive_loss(im, cap, measure, margin, hardest, ids=None, weights=None, all_im=None, all_cap=None,
               all_ids=None, offset=0) -> torch.Tensor:
    """The loss written literally: every query, every candidate, one pair at a time. ``hardest`` is
    the hard weight: False/0 (sum form), True/1 (hardest negative) or in between."""
    b = len(im)
    if all_im is None:
        cands_im, cands_cap, cand_ids = im, cap, ids
    else:  # this process's rows of the gathered candidates are the local tensors themselves
        cands_im = torch.cat([all_im[:offset], im, all_im[offset + b:]])
        cands_cap = torch.cat([all_cap[:offset], cap, all_cap[offset + b:]])
        cand_ids = all_ids
        ids = all_ids[offset:offset + b] if ids is None and all_ids is not None else ids
    total = im.new_zeros(())
    for k in range(b):
        pos = score(im[k], cap[k], measure)
        cost_c, cost_im = [], []
        for j in range(len(cands_im)):
            if j == offset + k or (ids is not None and cand_ids[j] == ids[k]):
                continue
            cost_c.append((margin + score(im[k], cands_cap[j], measure) - pos).clamp(min=0))
            cost_im.append((margin + score(cands_im[j], cap[k], measure) - pos).clamp(min=0))
        n = len(cands_im)
        term = (naive_reduce(cost_c, n, float(hardest)) + naive_reduce(cost_im, n, float(hardest))) if cost_c \
            else im.new_zeros(())
        total = total + (1.0 if weights is None else weights[k]) * term
    return total


def check(loss_fn: RankingLoss, hardest: bool, b: int = 6, d: int = 5, seed: int = 0, ids=None, weights=None,
          n_gathered: int = 0, offset: int = 0, all_ids: Optional[torch.Tensor] = None) -> None:
    """Loss value and gradients of every input equal the naive loop's."""
    im, cap = embeddings(b, d, seed).requires_grad_(), embeddings(b, d, seed + 1).requires_grad_()
    extra = {}
    if n_gathered:
        extra = {"all_im": embeddings(n_gathered, d, seed + 2).requires_grad_(),
                 "all_cap": embeddings(n_gathered, d, seed + 3).requires_grad_(),
                 "all_ids": all_ids, "offset": offset}
    inputs = [im, cap] + ([extra["all_im"], extra["all_cap"]] if n_gathered else [])
    mode = {"hard_weight": hardest} if isinstance(hardest, float) else {"max_violation": hardest}
    got = loss_fn(im, cap, image_ids=ids, weights=weights, **mode, **extra)
    ref = naive_loss(im, cap, loss_fn.measure, loss_fn.margin, hardest, ids, weights, **extra)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
    assert ref.item() > 0  # the case exercises active hinges
    for g, r in zip(torch.autograd.grad(got, inputs), torch.autograd.grad(ref, inputs)):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


MEASURES = ["order", "cosine"]
HARDEST = [False, True]


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("hardest", HARDEST)
def test_matches_naive_loop(measure, hardest):
    check(RankingLoss(measure, margin=0.3), hardest)


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("hardest", HARDEST)
def test_weights_scale_each_query(measure, hardest):
    weights = torch.tensor([1.0, 0.0, 2.0, 0.5, 1.0, 3.0], dtype=torch.float64)
    check(RankingLoss(measure, margin=0.3), hardest, weights=weights)


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("hardest", HARDEST)
def test_same_image_pairs_are_not_negatives(measure, hardest):
    ids = torch.tensor([0, 1, 0, 2, 1, 3])
    check(RankingLoss(measure, margin=0.3), hardest, ids=ids)


def test_same_image_mask_removes_false_negative():
    im, cap = embeddings(3, 4, 20), embeddings(3, 4, 21)
    im[1], cap[1] = im[0], cap[0]  # the same image twice, captioned identically: a false negative
    loss_fn = RankingLoss("cosine", max_violation=True)
    assert loss_fn(im, cap).item() >= 2 * 2 * loss_fn.margin - 1e-12  # pairs 0 and 1 collide
    masked = loss_fn(im, cap, image_ids=torch.tensor([7, 7, 8]))
    torch.testing.assert_close(masked, naive_loss(im, cap, "cosine", 0.2, True, torch.tensor([7, 7, 8])))


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("hardest", HARDEST)
def test_gathered_negatives_match_naive_loop(measure, hardest):
    all_ids = torch.tensor([0, 1, 2, 3, 4, 5, 2, 7, 8, 9, 5, 11, 12, 13])
    check(RankingLoss(measure, margin=0.3), hardest, b=4, n_gathered=14, offset=6, all_ids=all_ids)
    check(RankingLoss(measure, margin=0.3), hardest, b=4, n_gathered=9, offset=5)


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("hardest", HARDEST)
def test_sharded_losses_sum_to_the_full_batch_loss(measure, hardest):
    """What DDP computes: each of 3 ranks ranks its 4 queries against all 12 gathered candidates.

    The values add up whether or not the gathered copies carry gradient; the gradients add up to
    the full batch's when they do (an autograd all_gather).
    """
    im, cap = embeddings(12, 5, 30).requires_grad_(), embeddings(12, 5, 31).requires_grad_()
    ids = torch.tensor([0, 1, 2, 0, 4, 5, 6, 7, 4, 9, 10, 11])
    loss_fn = RankingLoss(measure, margin=0.3)
    full = loss_fn(im, cap, image_ids=ids, max_violation=hardest)

    def shards(all_im, all_cap):
        return sum(loss_fn(im[r:r + 4], cap[r:r + 4], all_im=all_im, all_cap=all_cap, all_ids=ids, offset=r,
                           max_violation=hardest) for r in (0, 4, 8))

    torch.testing.assert_close(shards(im.detach(), cap.detach()), full, rtol=1e-12, atol=1e-12)
    with_grad = shards(im, cap)
    torch.testing.assert_close(with_grad, full, rtol=1e-12, atol=1e-12)
    for g, r in zip(torch.autograd.grad(with_grad, (im, cap)), torch.autograd.grad(full, (im, cap))):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_gathering_the_batch_itself_changes_nothing():
    im, cap = embeddings(5, 4, 40), embeddings(5, 4, 41)
    loss_fn = RankingLoss("order")
    torch.testing.assert_close(loss_fn(im, cap, all_im=im, all_cap=cap), loss_fn(im, cap))


def test_hardest_negative_collapse_value():
    """Identical embeddings: every hardest negative violates by exactly the margin (2 B alpha)."""
    x = embeddings(1, 8, 50).repeat(4, 1)
    for measure in MEASURES:
        loss_fn = RankingLoss(measure, max_violation=True)
        assert loss_fn(x, x).item() == pytest.approx(2 * 4 * DEFAULT_MARGINS[measure])


def test_default_margins_and_warmup():
    assert RankingLoss("order").margin == 0.05 and RankingLoss("cosine").margin == 0.2
    assert RankingLoss("order", margin=0.1).margin == 0.1
    loss_fn = RankingLoss("cosine", max_violation=True, warmup=2)
    assert [loss_fn.hard_weight_at(s) for s in range(4)] == [0.0, 0.0, 1.0, 1.0]
    assert RankingLoss("cosine", warmup=2).hard_weight_at(5) == 0.0
    im, cap = embeddings(6, 5, 60), embeddings(6, 5, 61)
    torch.testing.assert_close(loss_fn(im, cap), RankingLoss("cosine", max_violation=True)(im, cap))
    torch.testing.assert_close(loss_fn(im, cap, max_violation=False), RankingLoss("cosine")(im, cap))


@pytest.mark.parametrize("kwargs, message", [
    ({"all_im": torch.zeros(6, 5)}, "both"),
    ({"all_im": torch.zeros(6, 5), "all_cap": torch.zeros(6, 5), "image_ids": torch.arange(4)}, "all_ids"),
    ({"all_im": torch.zeros(6, 5), "all_cap": torch.zeros(6, 5), "offset": 3}, "offset"),
    ({"all_ids": torch.arange(4)}, "only make sense"),
    ({"weights": torch.ones(3)}, "weights"),
    ({"image_ids": torch.arange(5)}, "image_ids"),
])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RankingLoss("order")(torch.zeros(4, 5), torch.zeros(4, 5), **kwargs)


def test_constructor_rejects_unknown_measure_and_negative_warmup():
    with pytest.raises(ValueError, match="measure"):
        RankingLoss("dot")
    with pytest.raises(ValueError, match="warmup"):
        RankingLoss("order", warmup=-1)
    with pytest.raises(ValueError, match="ramp"):
        RankingLoss("order", ramp=-1)
    with pytest.raises(ValueError, match="hard_weight"):
        RankingLoss("order")(torch.zeros(4, 5), torch.zeros(4, 5), hard_weight=1.5)


# The hardest-negative ramp: sums over the k hardest negatives, k from all of them down to one.
HARD_WEIGHTS = [0.2, 0.5, 0.85]


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("hard_weight", HARD_WEIGHTS)
def test_ramp_matches_naive_loop(measure, hard_weight):
    loss_fn = RankingLoss(measure, margin=0.3)
    check(loss_fn, hard_weight, b=8)
    check(loss_fn, hard_weight, b=8, ids=torch.tensor([0, 1, 0, 2, 1, 3, 4, 5]),
          weights=torch.tensor([1.0, 0.0, 2.0, 0.5, 1.0, 3.0, 1.0, 1.0], dtype=torch.float64))
    check(loss_fn, hard_weight, b=4, n_gathered=14, offset=6,
          all_ids=torch.tensor([0, 1, 2, 3, 4, 5, 2, 7, 8, 9, 5, 11, 12, 13]))


@pytest.mark.parametrize("measure", MEASURES)
def test_ramp_ends_are_the_sum_and_hardest_forms_exactly(measure):
    im, cap, ids = embeddings(8, 5, 70), embeddings(8, 5, 71), torch.tensor([0, 1, 0, 2, 3, 4, 5, 6])
    loss_fn = RankingLoss(measure, margin=0.3)
    for weight, hardest in ((0.0, False), (1.0, True)):
        got = loss_fn(im, cap, image_ids=ids, hard_weight=weight, per_pair=True)
        assert torch.equal(got, loss_fn(im, cap, image_ids=ids, max_violation=hardest, per_pair=True))
        torch.testing.assert_close(got.sum(), naive_loss(im, cap, measure, 0.3, hardest, ids), rtol=1e-12, atol=1e-12)
    # ... and the loss moves between them continuously and monotonically.
    weights = [0.0, 1e-9, 0.1, 0.3, 0.5, 0.7, 0.9, 1 - 1e-9, 1.0]
    values = [loss_fn(im, cap, image_ids=ids, hard_weight=w).item() for w in weights]
    assert values == sorted(values, reverse=True) and values[0] > values[-1]
    assert values[1] == pytest.approx(values[0], rel=1e-6) and values[-2] == pytest.approx(values[-1], rel=1e-6)


def test_ramp_trains_every_parameter():
    torch.manual_seed(0)
    img_enc, txt_enc = torch.nn.Linear(6, 4), torch.nn.Linear(7, 4)
    im = torch.nn.functional.normalize(img_enc(torch.randn(8, 6)), dim=1)
    cap = torch.nn.functional.normalize(txt_enc(torch.randn(8, 7)), dim=1)
    RankingLoss("cosine", margin=0.5)(im, cap, hard_weight=0.5).backward()
    for name, p in [*img_enc.named_parameters(), *txt_enc.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_ramp_schedule():
    loss_fn = RankingLoss("cosine", max_violation=True, warmup=4, ramp=3)
    steps = [s / 10 for s in range(100)]
    weights = [loss_fn.hard_weight_at(s) for s in steps]
    assert weights == sorted(weights)  # monotone
    assert all(w == 0.0 for s, w in zip(steps, weights) if s <= 4) and loss_fn.hard_weight_at(3.99) == 0.0
    assert all(w == 1.0 for s, w in zip(steps, weights) if s >= 7)
    assert loss_fn.hard_weight_at(5.5) == pytest.approx(0.5)
    assert all(0 < w < 1 for s, w in zip(steps, weights) if 4 < s < 7)
    assert RankingLoss("cosine", warmup=4, ramp=3).hard_weight_at(9) == 0.0  # no max_violation: always the sum
    abrupt = RankingLoss("cosine", max_violation=True, warmup=4)  # ramp 0: the original switch
    assert [abrupt.hard_weight_at(s) for s in (0, 3.99, 4, 4.5, 9)] == [0.0, 0.0, 1.0, 1.0, 1.0]


def test_ramp_ends_at_max_hard():
    """``max_hard`` < 1 stops the ramp at a semi-hard top-k sum: half-way there after half the ramp,
    held after it, and the loss at that point is the naive top-k reduction."""
    loss_fn = RankingLoss("cosine", margin=0.3, max_violation=True, warmup=2, ramp=4, max_hard=0.5)
    assert [loss_fn.hard_weight_at(s) for s in (0, 1.99, 2, 4, 6, 9)] == [0.0, 0.0, 0.0, 0.25, 0.5, 0.5]
    assert RankingLoss("cosine", max_violation=True, warmup=1, max_hard=0.4).hard_weight_at(1) == 0.4
    assert RankingLoss("cosine", warmup=1, max_hard=0.4).hard_weight_at(5) == 0.0  # no max_violation: the sum
    im, cap, ids = embeddings(8, 5, 90), embeddings(8, 5, 91), torch.tensor([0, 1, 0, 2, 3, 4, 5, 6])
    got = loss_fn(im, cap, image_ids=ids, hard_weight=loss_fn.hard_weight_at(9))
    torch.testing.assert_close(got, naive_loss(im, cap, "cosine", 0.3, 0.5, ids), rtol=1e-12, atol=1e-12)
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="max_hard"):
            RankingLoss("cosine", max_hard=bad)


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("hard_weight", [0.0, 0.5, 1.0])
def test_mean_negatives_divides_each_query_by_the_negatives_kept(measure, hard_weight):
    im, cap = embeddings(8, 5, 80), embeddings(8, 5, 81)
    ids = torch.tensor([0, 1, 0, 2, 3, 4, 5, 6])
    summed = RankingLoss(measure, margin=0.3)(im, cap, image_ids=ids, hard_weight=hard_weight, per_pair=True)
    mean = RankingLoss(measure, margin=0.3, mean_negatives=True)(im, cap, image_ids=ids, hard_weight=hard_weight,
                                                                 per_pair=True)
    torch.testing.assert_close(mean, summed / 8 ** (1 - hard_weight), rtol=1e-12, atol=1e-12)
    ref = naive_loss(im, cap, measure, 0.3, hard_weight, ids) / 8 ** (1 - hard_weight)
    torch.testing.assert_close(mean.sum(), ref, rtol=1e-12, atol=1e-12)
