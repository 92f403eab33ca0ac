import json
import os

from data.__main__ import main as data_main
from tests.conftest import write_karpathy


def _break(json_path: str, root: str) -> None:
    """Plant one of each problem the check must name."""
    data = json.load(open(json_path))
    imgs = data["images"]
    os.remove(os.path.join(root, "imgs", imgs[0]["filename"]))  # missing file
    with open(os.path.join(root, "imgs", imgs[1]["filename"]), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n garbage")  # unreadable image
    good = open(os.path.join(root, "imgs", imgs[2]["filename"]), "rb").read()
    with open(os.path.join(root, "imgs", imgs[2]["filename"]), "wb") as f:
        f.write(good[: len(good) // 2])  # truncated image
    imgs[3]["sentences"][2]["raw"] = "   "  # empty caption
    del imgs[4]["split"]  # missing field
    del imgs[6]["filename"]
    json.dump(data, open(json_path, "w"))


def test_check_passes_on_good_data(tmp_path, capsys):
    json_path = write_karpathy(str(tmp_path))
    preset = os.path.join(os.path.dirname(__file__), "..", "configs", "custom.yaml")
    rc = data_main(["check", "--config", preset, f"data.json={json_path}", f"data.image_root={tmp_path}"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "| train | 4 | 20 |" in out and "| val | 2 | 10 |" in out and "no problems found" in out
    assert "OOV rate val" in out and "vocabulary" in out


def test_check_names_every_bad_entry(tmp_path, capsys):
    json_path = write_karpathy(str(tmp_path))
    _break(json_path, str(tmp_path))
    rc = data_main(["check", "data.name=karpathy", f"data.json={json_path}", f"data.image_root={tmp_path}"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "train_0.png: image file is missing" in out
    assert "train_1.png: unreadable" in out
    assert "train_2.png: unreadable or truncated image" in out
    assert "images[3] (train_3.png): sentences[2]: empty caption" in out
    assert "images[4] (val_0.png): missing field 'split'" in out
    assert "images[6]: missing field 'filename'" in out
    assert "6 problem(s)" in out


def test_check_config_errors_exit_2(tmp_path, capsys):
    assert data_main(["check", "data.nme=karpathy"]) == 2
    assert "unknown key 'data.nme'" in capsys.readouterr().err
    assert data_main(["check", "data.name=karpathy", f"data.json={tmp_path}/none.json", f"data.image_root={tmp_path}"]) == 2
    assert "none.json: dataset JSON not found" in capsys.readouterr().err
