"""Bad input of every kind a user has sent: an ``error:`` line naming the file, line or key (exit 2,
no traceback) or a clear note, and nothing already written lost or rewritten."""
import json
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

import demo
import evaluate
import train
from config import ConfigError, load_config
from data import DataError
from data.__main__ import main as data_main
from data.check import check_dataset
from data.vocab import tokenize
from runfolder.checkpoint import CheckpointError, load_checkpoint
from tests.conftest import write_karpathy
from tests.test_train import tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def karpathy_args(tmp_path, json_path, **extra) -> list[str]:
    return tiny(tmp_path, **{"data.name": "karpathy", "data.json": json_path, "data.image_root": str(tmp_path),
                             "data.batch_size": 2, "train.epochs": 1, "imagine.lambda_t2i": 0, **extra})


# -- the training set and the config ---------------------------------------------------------------

def test_a_train_set_smaller_than_a_batch_shrinks_the_batch(tmp_path, capsys):
    report = train.main(tiny(tmp_path, **{"data.shapes.n_train": 10, "train.epochs": 1, "look.scst_epochs": 0}))
    assert "training with batches of 10" in capsys.readouterr().out
    ckpt = load_checkpoint(str(tmp_path / "run" / "last.pt"))
    assert ckpt["step"] == 1 and report["retrieval"]["embedding"]["rsum"] > 0
    with pytest.raises(DataError, match="a batch needs at least 2"):
        train.main(tiny(tmp_path, out="one", **{"data.shapes.n_train": 1}))


@pytest.mark.parametrize("override, key", [
    ("train.lr=-0.1", "train.lr"), ("data.batch_size=0", "data.batch_size"), ("model.measure=euclid", "model.measure"),
    ("imagine.image_size=48", "imagine.image_size"), ("data.resize=16", "data.resize"),
    ("train.device=cuda:7", "train.device"), ("train.epochs=0", "train.epochs"), ("data.image_size=17", "data.image_size"),
    ("look.beam_size=0", "look.beam_size"), ("train.schedule=parallel", "train.schedule"),
    ("loss.hard_weight_max=0", "loss.hard_weight_max"),
])
def test_a_bad_config_value_names_its_key_before_anything_is_written(tmp_path, override, key):
    if override.startswith("train.device") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as err:
        train.main(tiny(tmp_path) + [override])
    assert "must be" in str(err.value)
    assert not (tmp_path / "run").exists()


def test_an_unwritable_out_dir_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="train.out_dir"):
        train.main(tiny(tmp_path, **{"train.out_dir": str(blocker / "run")}))


def test_train_cli_prints_an_error_line_and_exits_2(tmp_path):
    done = subprocess.run([sys.executable, "train.py", "train.lr=-0.1", f"train.out_dir={tmp_path / 'run'}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("error: train.lr=-0.1")
    assert "Traceback" not in done.stderr and not (tmp_path / "run").exists()


# -- captions ---------------------------------------------------------------------------------------

def test_tokenizer_keeps_unicode_words_and_splits_unspaced_scripts():
    assert tokenize("café crème") == ["café", "crème"]
    assert tokenize("Cafe\u0301 CRÈME!") == ["café", "crème"]  # NFC: the combining accent joins its letter
    assert tokenize("一只猫") == ["一", "只", "猫"]
    assert tokenize("किताब पढ़ो") == ["किताब", "पढ़ो"]  # vowel signs stay inside the word
    assert tokenize("A man's dog, 2 cats.") == ["a", "mans", "dog", "2", "cats"]
    assert tokenize("!!! ...") == []


def test_tokenizer_ascii_fast_path_agrees_with_the_unicode_path():
    text = "A man's dog, 2 cats -- on a sk8board; it's 10:30! tab\there"
    slow = tokenize(text + " é")[:-1]  # the non-ASCII path, the extra word dropped
    assert tokenize(text) == slow


def test_data_check_flags_captions_that_tokenise_to_nothing_and_long_ones(tmp_path):
    json_path = write_karpathy(str(tmp_path))
    data = json.load(open(json_path))
    data["images"][0]["sentences"][0]["raw"] = "!!!"
    data["images"][1]["sentences"][0]["raw"] = "一只猫坐在垫子上"
    data["images"][2]["sentences"][0]["raw"] = " ".join(["word"] * 100)
    json.dump(data, open(json_path, "w"))
    from config import DataConfig

    report = check_dataset(DataConfig(name="karpathy", json=json_path, image_root=str(tmp_path)))
    assert any("caption 1: tokenises to nothing" in p and "train_0.png" in p for p in report.problems)
    assert not any("train_1.png" in p for p in report.problems)  # Chinese characters are tokens
    assert any("longer than data.max_caption_len=50" in w and "longest 100 tokens" in w for w in report.warnings)


# -- images -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["missing", "truncated", "empty", "test_missing"])
def test_a_bad_image_stops_training_before_the_first_step(tmp_path, damage):
    json_path = write_karpathy(str(tmp_path))
    name = "test_0.png" if damage == "test_missing" else "train_1.png"
    path = tmp_path / "imgs" / name
    if damage in ("missing", "test_missing"):
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:60])
    else:
        path.write_bytes(b"")
    with pytest.raises(DataError, match=name):
        train.main(karpathy_args(tmp_path, json_path))
    assert not (tmp_path / "run").exists()


def test_a_decompression_bomb_is_named_everywhere(tmp_path, reported_run, capsys):
    json_path = write_karpathy(str(tmp_path))
    Image.new("1", (15000, 15000)).save(tmp_path / "imgs" / "train_2.png")
    assert data_main(["check", "data.name=karpathy", f"data.json={json_path}", f"data.image_root={tmp_path}"]) == 1
    assert "train_2.png: image too large" in capsys.readouterr().out
    with pytest.raises(DataError, match="train_2.png: image too large"):
        train.main(karpathy_args(tmp_path, json_path))
    assert demo.main(["caption", str(reported_run), str(tmp_path / "imgs" / "train_2.png")]) == 2
    assert "image too large" in capsys.readouterr().err


def test_the_image_check_is_remembered_until_a_file_changes(tmp_path):
    from config import DataConfig
    from data import load_split
    from data.check import preflight

    json_path = write_karpathy(str(tmp_path))
    cfg = DataConfig(name="karpathy", json=json_path, image_root=str(tmp_path), cache_dir=str(tmp_path / "cache"))
    splits = [load_split(cfg, s) for s in ("train", "val", "test")]
    preflight(cfg, splits)
    assert len(os.listdir(tmp_path / "cache" / "checked")) == 1
    (tmp_path / "imgs" / "val_0.png").write_bytes(b"broken")  # size and time change: checked again
    with pytest.raises(DataError, match="val_0.png"):
        preflight(cfg, splits)


# -- checkpoints ------------------------------------------------------------------------------------

def test_empty_and_code_holding_checkpoints_are_refused_clearly(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty file"):
        load_checkpoint(str(empty))
    code = tmp_path / "code.pt"
    torch.save({"model": {}, "config": {}, "x": print}, code)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(str(code))
    assert "not loaded" in str(err.value) and "weights_only=False" not in str(err.value)


# -- the command-line tools -------------------------------------------------------------------------

def test_evaluate_writes_only_beside_its_out(tmp_path, reported_run):
    before = {name: (reported_run / name).read_bytes() for name in ("captions_test.json", "report.json")}
    listing = sorted(os.listdir(reported_run))
    out = tmp_path / "elsewhere" / "beam1.json"
    evaluate.main([str(reported_run), "--beam", "1", "--out", str(out), "--no-html", "--no-swaps"])
    assert out.exists() and (tmp_path / "elsewhere" / "beam1_captions.json").exists()
    assert sorted(os.listdir(reported_run)) == listing
    assert {name: (reported_run / name).read_bytes() for name in before} == before
    for bad in (["--beam", "0"], ["--rerank", "-1"]):
        with pytest.raises(SystemExit) as err:
            evaluate.main([str(reported_run), *bad])
        assert err.value.code == 2


def test_demo_score_names_a_non_utf8_line_and_scores_the_rest(tmp_path, reported_run, capsys):
    Image.new("RGB", (30, 30), "red").save(tmp_path / "a.png")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_bytes(b'{"image": "a.png", "caption": "a red circle"}\n{"image": "a.png", "caption": "caf\xe9"}\n'
                      b'{"image": "a.png", "caption": "a blue square"}\n')
    out = tmp_path / "new" / "scores.jsonl"
    assert demo.main(["score", str(reported_run), str(pairs), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert f"{pairs}:2: not UTF-8" in captured.err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["line"] for line in lines] == [1, 2, 3] and "score" in lines[0] and "error" in lines[1]
    assert demo.main(["score", str(reported_run), str(pairs), "--out", "/proc/no/such/scores.jsonl"]) == 2
    assert "cannot write /proc/no/such/scores.jsonl" in capsys.readouterr().err


def test_demo_imagine_makes_its_out_folder(tmp_path, reported_run):
    out = tmp_path / "new" / "deeper" / "grid.png"
    assert demo.main(["imagine", str(reported_run), "a red circle", "-n", "2", "--out", str(out)]) == 0
    assert Image.open(out).size[0] > 0


def test_demo_retrieve_warns_on_unknown_words_and_checks_k(reported_run, capsys):
    assert demo.main(["retrieve", str(reported_run), "--text", "zebra xylophone", "-k", "2"]) == 0
    captured = capsys.readouterr()
    assert "none of the words" in captured.err and len(captured.out.splitlines()) == 2
    assert demo.main(["retrieve", str(reported_run), "--text", "a red circle", "-k", "0"]) == 2
    assert "-k must be at least 1" in capsys.readouterr().err


def test_evaluate_and_audit_refuse_an_unwritable_out_before_the_work(reported_run, capsys):
    import audit

    with pytest.raises(DataError, match="cannot write /proc/no/such/eval.json"):
        evaluate.evaluate(str(reported_run), out="/proc/no/such/eval.json", progress=False)
    with pytest.raises(DataError, match="cannot write /proc/no/such/audit_train.json"):
        audit.audit(str(reported_run), out="/proc/no/such", progress=False)


def test_cross_key_rules_live_in_the_config_checks():
    with pytest.raises(ConfigError, match="model.image_encoder=precomp"):
        load_config(None, ["model.image_encoder=precomp", "data.name=precomp", "data.precomp_dir=x"])
    with pytest.raises(ConfigError, match="loss.imagined_weight"):
        load_config(None, ["loss.imagined_weight=1", "imagine.lambda_t2i=0"])
