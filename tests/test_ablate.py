"""The ablation command on a tiny config: five rows, a table, reuse of finished rows."""
import json
import os

import pytest

import ablate
from config import ConfigError
from runfolder.checkpoint import CheckpointError
from tests.test_train import tiny


def test_ablation_rows_table_and_reuse(tmp_path, capsys):
    overrides = [o for o in tiny(tmp_path, **{"train.epochs": 1}) if not o.startswith("train.out_dir=")]
    out = str(tmp_path / "ablation")
    result = ablate.main(["--out", out, "--rerank", "5", *overrides])
    assert [r["row"] for r in result["rows"]] == ["embedding", "look", "imagine", "full", "full_fused"]
    for name, has_decoder, has_gan in (("embedding", False, False), ("look", True, False), ("imagine", False, True),
                                       ("full", True, True)):
        report = json.load(open(os.path.join(out, name, "report.json")))
        assert ("captioning" in report) == has_decoder and ("synthesis" in report) == has_gan
    table = open(os.path.join(out, "ablation.md")).read()
    assert table.count("\n| ") == 5 + 1 and "full + fused (top 5" in table  # header + five rows
    assert json.load(open(os.path.join(out, "ablation.json")))["rows"][0]["retrieval"]["rsum"] >= 0

    capsys.readouterr()
    again = ablate.main(["--out", out, "--rerank", "5", *overrides])
    assert capsys.readouterr().out.count("reusing the finished run") == 4
    assert [r["retrieval"] for r in again["rows"]] == [r["retrieval"] for r in result["rows"]]

    # two of the --beyond rows (each is a tiny training run), the rest reused
    beyond = ablate.main(["--out", out, "--rerank", "5", "--beyond", "--rows", "semi10,invariant", *overrides])
    assert [r["row"] for r in beyond["rows"]] == ["embedding", "look", "imagine", "full", "full_fused", "invariant",
                                                 "semi10"]
    assert "modality" in json.load(open(os.path.join(out, "invariant", "report.json")))
    assert "semi" in json.load(open(os.path.join(out, "semi10", "report.json")))
    assert beyond["rows"][-1]["captioning"]["CIDEr"] >= 0 and beyond["rows"][0]["captioning"] is None
    assert "| full, 10% labelled + stage 2 |" in open(os.path.join(out, "ablation.md")).read()

    with pytest.raises(CheckpointError, match="holds a run of another config"):
        ablate.main(["--out", out, *overrides, "model.embed_dim=8"])


def test_beyond_rows_are_picked_by_name():
    from config import ConfigError

    assert [r[0] for r in ablate.beyond_rows(True, None)] == ["robust", "mined", "contrast", "invariant", "imagined",
                                                              "semi10"]
    assert [r[0] for r in ablate.beyond_rows(True, "semi10, robust")] == ["robust", "semi10"]
    assert ablate.beyond_rows(False, None) == ()
    with pytest.raises(ConfigError, match="the --beyond rows are robust, mined"):
        ablate.beyond_rows(True, "robust,nope")
    with pytest.raises(ConfigError, match="add --beyond"):
        ablate.beyond_rows(False, "robust")


def _row(name, rsum, cider=None):
    rec = {d: {"r1": rsum / 6, "r5": rsum / 6, "r10": rsum / 6} for d in ("i2t", "t2i")}
    return {"row": name, "label": name, "retrieval": {**rec, "rsum": rsum, "k": 5},
            "captioning": None if cider is None else {"CIDEr": cider}, "train_seconds": 60.0}


def test_seed_summary_gives_mean_and_sample_sd():
    summary = ablate.seed_summary({0: [_row("embedding", 100.0), _row("full", 110.0, 0.2)],
                                   1: [_row("embedding", 104.0), _row("full", 120.0, 0.4)]})
    emb, full = summary
    assert emb["rsum"] == {"mean": 102.0, "std": 2.8284} and emb["rsums"] == [100.0, 104.0]
    assert "CIDEr" not in emb and full["CIDEr"] == {"mean": 0.3, "std": 0.1414}
    assert full["train_minutes"]["mean"] == 1.0
    table = ablate.seed_table(summary)
    assert "| embedding |" in table and "102.0 ± 2.8" in table and "100.0 / 104.0" in table


def test_small_ciders_keep_their_third_decimal():  # real-set CIDEr is about 0.1-0.3: 2 decimals hid the spread
    summary = ablate.seed_summary({0: [_row("full", 110.0, 0.2695)], 1: [_row("full", 120.0, 0.2647)]})
    assert summary[0]["CIDEr"] == {"mean": 0.2671, "std": 0.0034}
    assert "0.267 ± 0.003" in ablate.seed_table(summary)


def test_seeds_train_each_row_per_seed(tmp_path):
    overrides = [o for o in tiny(tmp_path, **{"train.epochs": 1}) if not o.startswith("train.out_dir=")]
    out = str(tmp_path / "seeds")
    result = ablate.main(["--out", out, "--only", "embedding", "--seeds", "0,1", *overrides])
    rsums = [json.load(open(os.path.join(out, f"seed{s}", "embedding", "report.json")))["retrieval"]["embedding"]["rsum"]
             for s in (0, 1)]
    assert result["summary"][0]["rsums"] == rsums
    assert abs(result["summary"][0]["rsum"]["mean"] - sum(rsums) / 2) < 0.01
    assert "seeds 0, 1" in open(os.path.join(out, "ablation.md")).read()
    with pytest.raises(ConfigError, match="--only: unknown row"):
        ablate.main(["--out", out, "--only", "nope"])
