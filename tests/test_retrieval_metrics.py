"""Retrieval metrics against a per-query loop that implements docs/DESIGN.md section 5 literally."""
import math

import numpy as np
import pytest
import torch

import metrics.retrieval as retrieval
from metrics import ranks_i2t, ranks_t2i, recall_metrics, recall_metrics_folds


@pytest.fixture(params=["numba", "numpy"])
def backend(request, monkeypatch):
    """Run a test with the numba kernel and with the numpy fallback."""
    if request.param == "numpy":
        monkeypatch.setattr(retrieval, "numba", None)
    elif retrieval.numba is None:
        pytest.skip("numba is not installed")
    return request.param


def brute_force(s: np.ndarray, k: int) -> dict:
    """One query at a time: a rank counts every wrong item scoring >= the right one."""
    n_images, n_captions = s.shape
    i2t, i2t_ties = [], 0
    for i in range(n_images):
        best = max(s[i, c] for c in range(n_captions) if c // k == i)
        wrong = [s[i, c] for c in range(n_captions) if c // k != i]
        i2t.append(sum(1 for v in wrong if v >= best))
        i2t_ties += any(v == best for v in wrong)
    t2i, t2i_ties = [], 0
    for j in range(n_captions):
        right = s[j // k, j]
        wrong = [s[m, j] for m in range(n_images) if m != j // k]
        t2i.append(sum(1 for v in wrong if v >= right))
        t2i_ties += any(v == right for v in wrong)

    def summary(ranks):
        out = {f"r{K}": 100.0 * sum(r < K for r in ranks) / len(ranks) for K in (1, 5, 10)}
        out["medr"] = math.floor(np.median(ranks)) + 1
        out["meanr"] = sum(ranks) / len(ranks) + 1
        return out

    a, b = summary(i2t), summary(t2i)
    return {"i2t": a, "t2i": b, "rsum": sum(a[f"r{K}"] + b[f"r{K}"] for K in (1, 5, 10)),
            "ties": {"i2t": i2t_ties, "t2i": t2i_ties}, "n_images": n_images, "n_captions": n_captions,
            "ranks": (i2t, t2i)}


def assert_same(got: dict, ref: dict) -> None:
    for direction in ("i2t", "t2i"):
        assert got[direction] == pytest.approx(ref[direction], abs=1e-9)
    assert got["rsum"] == pytest.approx(ref["rsum"], abs=1e-9)
    assert got["ties"] == ref["ties"]
    assert (got["n_images"], got["n_captions"]) == (ref["n_images"], ref["n_captions"])


def random_sims(n: int, k: int, seed: int) -> np.ndarray:
    """Continuous scores with a planted signal, so that recalls are neither 0 nor 100."""
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((n, k * n))
    s[np.arange(k * n) // k, np.arange(k * n)] += 1.5
    return s


def tied_sims(n: int, k: int, seed: int) -> np.ndarray:
    """Integer scores (ties everywhere), duplicated caption columns and a duplicated image row."""
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 4, size=(n, k * n)).astype(np.float64)
    s[np.arange(k * n) // k, np.arange(k * n)] += rng.integers(0, 2, size=k * n)
    s[:, k:2 * k] = s[:, 0:k]  # image 1's captions duplicate image 0's, e.g. "a flag" twice
    s[:, -1] = s[:, 2]
    s[3] = s[2]
    return s


@pytest.mark.parametrize("k", [1, 5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_on_random_scores(k, seed, backend):
    s = random_sims(40, k, seed)
    ref = brute_force(s, k)
    assert_same(recall_metrics(s, k), ref)
    np.testing.assert_array_equal(ranks_i2t(s, k), ref["ranks"][0])
    np.testing.assert_array_equal(ranks_t2i(s, k), ref["ranks"][1])


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_with_many_ties(k, seed, backend):
    s = tied_sims(12, k, seed)
    ref = brute_force(s, k)
    assert ref["ties"]["i2t"] > 0 and ref["ties"]["t2i"] > 0
    assert_same(recall_metrics(s, k), ref)
    np.testing.assert_array_equal(ranks_i2t(s, k), ref["ranks"][0])
    np.testing.assert_array_equal(ranks_t2i(s, k), ref["ranks"][1])


def test_numpy_row_chunks_give_the_same_answer(monkeypatch):
    s = tied_sims(9, 5, 3)
    whole = recall_metrics(s, 5)
    monkeypatch.setattr(retrieval, "numba", None)
    monkeypatch.setattr(retrieval, "CHUNK_ELEMENTS", 7)  # one image row per pass
    assert_same(recall_metrics(s, 5), whole)


@pytest.mark.parametrize("convert", [
    lambda s: s.astype(np.float32),
    lambda s: torch.from_numpy(s),
    lambda s: torch.from_numpy(s).to(torch.bfloat16),
    lambda s: s.astype(np.int64),
])
def test_input_types_keep_ties(convert, backend):
    s = tied_sims(10, 5, 4)  # small integers: exact in every one of these types
    assert_same(recall_metrics(convert(s), 5), brute_force(s, 5))


def test_hand_computed_example(backend):
    # 2 images x 2 captions each; image 0 owns captions 0, 1 and image 1 owns captions 2, 3.
    s = np.array([[0.9, 0.1, 0.9, 0.5],
                  [0.8, 0.1, 0.3, 0.7]])
    # i2t: image 0's best is 0.9 and wrong caption 2 ties it (rank 1, tied); image 1's best 0.7
    # is beaten by caption 0 (rank 1).
    np.testing.assert_array_equal(ranks_i2t(s, 2), [1, 1])
    # t2i: caption 0: 0.9 vs 0.8 -> 0; caption 1: 0.1 vs 0.1 -> 1 (tied); caption 2: 0.3 vs 0.9
    # -> 1; caption 3: 0.7 vs 0.5 -> 0.
    np.testing.assert_array_equal(ranks_t2i(s, 2), [0, 1, 1, 0])
    m = recall_metrics(s, 2)
    assert m["i2t"] == {"r1": 0.0, "r5": 100.0, "r10": 100.0, "medr": 2.0, "meanr": 2.0}
    assert m["t2i"] == {"r1": 50.0, "r5": 100.0, "r10": 100.0, "medr": 1.0, "meanr": 1.5}
    assert m["rsum"] == 450.0
    assert m["ties"] == {"i2t": 1, "t2i": 1}
    assert (m["n_images"], m["n_captions"]) == (2, 4)


def test_constant_scores_rank_every_query_last(backend):
    m = recall_metrics(np.zeros((3, 15)), 5)
    assert m["i2t"]["medr"] == 11.0 and m["t2i"]["medr"] == 3.0  # 10 wrong captions, 2 wrong images
    assert m["rsum"] == 200.0  # t2i R@5 and R@10 only (rank 2); i2t rank 10 misses even R@10
    assert m["ties"] == {"i2t": 3, "t2i": 15}


def test_agrees_with_classic_argsort_loop_without_ties():
    s = random_sims(30, 5, 5)
    i2t = [min(np.where(np.argsort(s[i])[::-1] == c)[0][0] for c in range(5 * i, 5 * i + 5)) for i in range(30)]
    t2i = [np.where(np.argsort(s[:, j])[::-1] == j // 5)[0][0] for j in range(150)]
    np.testing.assert_array_equal(ranks_i2t(s), i2t)
    np.testing.assert_array_equal(ranks_t2i(s), t2i)


def test_folds_are_the_mean_of_diagonal_blocks():
    s = tied_sims(20, 5, 6)
    s[:4, 20:] = 100.0  # off-diagonal blocks never count
    got = recall_metrics_folds(s, 5, n_folds=5)
    blocks = [recall_metrics(s[4 * f:4 * f + 4, 20 * f:20 * f + 20], 5) for f in range(5)]
    assert len(got["folds"]) == 5
    for f in range(5):
        assert_same(got["folds"][f], blocks[f])
    for direction in ("i2t", "t2i"):
        for key in ("r1", "r5", "r10", "medr", "meanr"):
            assert got[direction][key] == pytest.approx(np.mean([b[direction][key] for b in blocks]))
    assert got["rsum"] == pytest.approx(np.mean([b["rsum"] for b in blocks]))
    assert got["ties"]["t2i"] == pytest.approx(np.mean([b["ties"]["t2i"] for b in blocks]))
    assert (got["n_images"], got["n_captions"]) == (4, 20)


@pytest.mark.parametrize("shape, k", [((4, 19), 5), ((4, 20), 4), ((20,), 5), ((0, 0), 5), ((2, 2, 10), 5)])
def test_bad_shapes_raise(shape, k):
    with pytest.raises(ValueError, match="sims"):
        recall_metrics(np.zeros(shape), k)


def test_nan_and_bad_folds_raise(backend):
    s = random_sims(10, 5, 7)
    s[3, 7] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        recall_metrics(s, 5)
    with pytest.raises(ValueError, match="folds"):
        recall_metrics_folds(random_sims(10, 5, 8), 5, n_folds=3)
