"""``python -m data check``: vocabulary coverage at data.vocab_threshold and the OOV warning."""
import json

from data.__main__ import main as data_main
from tests.conftest import write_karpathy


def _check(json_path: str, root: str, capsys, threshold: int) -> str:
    rc = data_main(["check", "--no-images", "data.name=karpathy", f"data.json={json_path}", f"data.image_root={root}",
                    f"data.vocab_threshold={threshold}"])
    out = capsys.readouterr().out
    assert rc == 0, out
    return out


def test_coverage_of_every_split(tmp_path, capsys):
    json_path = write_karpathy(str(tmp_path))
    out = _check(json_path, str(tmp_path), capsys, 2)
    # Train captions "a photo number K of a train thing view J" (K < 4, J < 5): every token is seen
    # at least 4 times, so threshold 2 keeps them all.
    assert "vocabulary coverage at data.vocab_threshold=2" in out and "train 100.00%" in out
    assert "WARNING" not in out


def test_warns_when_most_val_tokens_become_unk(tmp_path, capsys):
    json_path = write_karpathy(str(tmp_path))
    data = json.load(open(json_path))
    for img in data["images"]:
        if img["split"] == "val":  # 4 of 5 tokens never seen in train: 80% <unk>
            for j, s in enumerate(img["sentences"]):
                s["raw"] = f"a zebra grazing near waterhole{j}"
    json.dump(data, open(json_path, "w"))
    out = _check(json_path, str(tmp_path), capsys, 1)
    assert "val 20.00%" in out and "OOV rate val: 80.00%" in out
    assert "WARNING: 80.0% of val caption tokens would become <unk>" in out and "data.vocab_threshold=1" in out
    assert "of test caption tokens" not in out  # test is untouched and well covered


def test_a_high_threshold_is_named(tmp_path, capsys):
    json_path = write_karpathy(str(tmp_path))
    out = _check(json_path, str(tmp_path), capsys, 1000)  # nothing is seen 1000 times: all <unk>
    assert "train 0.00%" in out and "test 0.00%" in out
    assert "of val caption tokens would become <unk>" in out and "of test caption tokens would become <unk>" in out
