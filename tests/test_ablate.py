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

    beyond = ablate.main(["--out", out, "--rerank", "5", "--beyond", *overrides])  # four more rows, the rest reused
    assert [r["row"] for r in beyond["rows"]] == ["embedding", "look", "imagine", "full", "full_fused", "robust",
                                                 "mined", "contrast", "invariant"]
    assert "modality" in json.load(open(os.path.join(out, "invariant", "report.json")))

    with pytest.raises(CheckpointError, match="holds a run of another config"):
        ablate.main(["--out", out, *overrides, "model.embed_dim=8"])
