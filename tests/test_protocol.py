import numpy as np
import pytest
import torch

from evaluation.retrieval import resolve_protocol, retrieval_metrics
from evaluation.report_md import markdown_table, retrieval_section
from metrics.retrieval import recall_metrics


def test_auto_protocol_is_1k_and_5k_on_coco_test_else_full():
    assert resolve_protocol("auto", 5000) == ["1k", "5k"]
    assert resolve_protocol("auto", 1000) == ["full"]
    assert resolve_protocol("5k", 5000) == ["5k"]
    with pytest.raises(ValueError, match="multiple of 1000"):
        resolve_protocol("1k", 1500)
    with pytest.raises(ValueError, match="5,000"):
        resolve_protocol("5k", 1000)
    with pytest.raises(ValueError, match="not one of"):
        resolve_protocol("10k", 1000)


def test_1k_protocol_is_the_mean_of_diagonal_folds():
    rng = np.random.default_rng(0)
    sims = torch.from_numpy(rng.standard_normal((2000, 10000)).astype(np.float32))
    sims[np.arange(2000), np.arange(2000) * 5] += 3  # some signal
    got = retrieval_metrics(sims, "1k")
    folds = [recall_metrics(sims[f * 1000:(f + 1) * 1000, f * 5000:(f + 1) * 5000]) for f in range(2)]
    assert got["rsum"] == pytest.approx(np.mean([f["rsum"] for f in folds]))
    assert got["i2t"]["r1"] == pytest.approx(np.mean([f["i2t"]["r1"] for f in folds]))
    section = retrieval_section({"protocols": {"1k": got, "5k": retrieval_metrics(sims, "5k")}, "primary": "1k"})
    assert section["embedding"] == section["protocols"]["1k"]
    table = markdown_table({"retrieval": section})
    assert "| 1k |" in table and "| 5k |" in table
