"""The ablation command on a tiny config: five rows, a table, reuse of finished rows."""
import json
import os

import pytest

import ablate
from engine.checkpoint import CheckpointError
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
