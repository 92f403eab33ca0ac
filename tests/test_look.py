"""The look path end to end: joint XE + SCST training, captioning metrics, the caption demo."""
import json

import pytest
import torch
from PIL import Image

import demo
import evaluate
import train
from data.vocab import Vocabulary
from runfolder.checkpoint import CheckpointError
from training.look import CaptionReward, candidate_strings, reference_strings
from metrics import captioning
from tests.test_train import tiny


def test_reward_strings_keep_end_token():
    vocab = Vocabulary(["<pad>", "<start>", "<end>", "<unk>", "a", "red", "circle"])
    tokens = torch.tensor([[4, 5, 6, 2, 0], [4, 3, 6, 6, 6]])  # the second never ends
    assert candidate_strings(tokens, vocab) == ["a red circle <end>", "a <unk> circle circle circle"]
    assert reference_strings(["A red, circle!"], max_len=2) == ["a red <end>"]


def test_caption_reward_uses_training_references():
    from data.records import ArrayImages, Split
    import numpy as np

    caps = [["a red circle"] * 5, ["a blue square"] * 5]
    split = Split("train", ArrayImages(np.zeros((2, 2, 2, 3), np.uint8)), caps)
    vocab = Vocabulary(["<pad>", "<start>", "<end>", "<unk>", "a", "red", "circle", "blue", "square"])
    reward = CaptionReward(split, vocab, max_len=20)
    right = torch.tensor([[4, 5, 6, 2], [4, 7, 8, 2]])
    wrong = torch.tensor([[4, 7, 8, 2], [4, 5, 6, 2]])
    r = reward(torch.tensor([0, 1]), torch.cat([right, wrong]).view(2, 2, 4).transpose(0, 1).reshape(4, 4))
    assert r.shape == (2, 2)
    assert (r[:, 0] > r[:, 1]).all()  # each image's own caption beats the other image's


def test_tiny_run_reports_captioning(tmp_path):
    report = train.main(tiny(tmp_path, **{"train.epochs": 3}))
    cap = report["captioning"]
    for key in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE_L", "CIDEr"):
        assert isinstance(cap[key], float) and cap[key] >= 0
    assert cap["SPICE"] is None and any("SPICE" in n for n in cap["notes"])
    assert set(report["captioning_by_phase"]) == {"xe", "scst"}
    if report["best_epoch"] == 3:  # best is the last epoch: its captions are SCST's, not decoded again
        assert report["captioning_by_phase"]["scst"] == {k: cap[k] for k in ("CIDEr", "BLEU-4")}
    results = json.loads((tmp_path / "run" / "captions_test.json").read_text())
    assert len(results) == 16 and set(results[0]) == {"image_id", "caption"}
    assert (tmp_path / "run" / "xe.pt").exists()
    # the demo captions image files of any mode
    paths = []
    for mode in ("RGB", "RGBA", "L"):
        path = tmp_path / f"img_{mode}.png"
        Image.new(mode, (40, 30)).save(path)
        paths.append(str(path))
    out, errors = demo.caption_images(str(tmp_path / "run"), paths + [str(tmp_path / "missing.png")], beam=2)
    assert [p for p, _ in out] == paths and all(isinstance(c, str) for _, c in out)  # the good ones still captioned
    assert len(errors) == 1 and "missing.png" in errors[0]
    assert demo.main(["caption", str(tmp_path / "run"), str(tmp_path / "missing.png")]) == 2


def test_run_without_decoder(tmp_path, capsys):
    report = train.main(tiny(tmp_path, **{"look.lambda_i2t": 0, "train.epochs": 1}))
    assert "captioning" not in report
    assert "captioning" not in evaluate.evaluate(str(tmp_path / "run"), split="val", progress=False)
    with pytest.raises(CheckpointError, match="no caption decoder"):
        demo.caption_images(str(tmp_path / "run"), ["x.png"])


def test_without_java_metrics_still_reported(monkeypatch):
    monkeypatch.setattr(captioning, "java_available", lambda: False)
    out = captioning.caption_metrics({0: ["a red circle", "a circle"], 1: ["a blue square"]},
                                     {0: "a red circle", 1: "a square"})
    assert out["METEOR"] is None and any("Java" in n for n in out["notes"])
    assert out["CIDEr"] > 0 and out["BLEU-1"] > 0


def test_look_phase_schedule():
    from config import load_config
    from training.steps import look_phase

    def phases(*overrides):
        cfg = load_config(None, list(overrides))
        return [look_phase(cfg, e) for e in range(cfg.train.epochs)]

    assert phases("train.epochs=4", "look.scst_epochs=2") == ["xe", "xe", "scst", "scst"]
    assert phases("train.epochs=2", "look.scst_epochs=5") == ["xe", "scst"]  # the first epoch is always XE
    assert phases("train.epochs=3", "look.scst_epochs=0") == ["xe"] * 3
    assert phases("train.epochs=2", "look.lambda_i2t=0") == ["off", "off"]


def test_captioning_by_phase_reuses_the_last_decoders_metrics(tmp_path, monkeypatch):
    """Given the metrics of a checkpoint with last.pt's decoder, only xe.pt is decoded again."""
    import evaluation.report as report_module
    from config import load_config
    from data import load_split
    from runfolder.folder import RunFolder

    train.main(tiny(tmp_path, **{"train.epochs": 3}))
    run = tmp_path / "run"
    cfg = load_config(str(run / "config.yaml"))
    vocab = Vocabulary.load(str(run / "vocab.json"))
    test = load_split(cfg.data, "test")
    decoded = []

    def fake_evaluate(model, *args, **kwargs):
        decoded.append(model)
        return {"CIDEr": 1.5, "BLEU-4": 0.5}

    monkeypatch.setattr(report_module, "evaluate_captions", fake_evaluate)
    folder = RunFolder(str(run))
    got = report_module.captioning_by_phase(cfg, folder, test, vocab, "cpu", {"CIDEr": 9.0, "BLEU-4": 8.0, "x": 1})
    assert got == {"xe": {"CIDEr": 1.5, "BLEU-4": 0.5}, "scst": {"CIDEr": 9.0, "BLEU-4": 8.0}}
    assert len(decoded) == 1
    assert report_module.captioning_by_phase(cfg, folder, test, vocab, "cpu")["scst"] == {"CIDEr": 1.5, "BLEU-4": 0.5}
    assert len(decoded) == 3  # without them both checkpoints are decoded
