"""One METEOR process serves every caption_metrics call until close_meteor()."""
import pytest

from metrics import captioning


class FakeMeteor:
    started = 0

    def __init__(self):
        FakeMeteor.started += 1

    def compute_score(self, gts, res):
        return 0.25, [0.25] * len(res)


@pytest.fixture
def fake_meteor(monkeypatch):
    import pycocoevalcap.meteor.meteor as meteor_module

    monkeypatch.setattr(meteor_module, "Meteor", FakeMeteor)
    FakeMeteor.started = 0
    captioning.close_meteor()
    yield
    captioning.close_meteor()


def test_two_scorings_start_one_meteor_process_and_close_ends_it(fake_meteor, monkeypatch):
    gts, res = {0: ["a red circle", "a circle"], 1: ["a blue square"]}, {0: "a red circle", 1: "a square"}
    plain = captioning._tokenized
    monkeypatch.setattr(captioning, "java_available", lambda: True)  # METEOR on, the tokenizer without Java
    monkeypatch.setattr(captioning, "_tokenized", lambda g, r, java: plain(g, r, False))
    assert captioning.caption_metrics(gts, res)["METEOR"] == 0.25
    assert captioning.caption_metrics(gts, res)["METEOR"] == 0.25
    assert FakeMeteor.started == 1
    captioning.close_meteor()
    assert captioning._meteor is None
    captioning.caption_metrics(gts, res)
    assert FakeMeteor.started == 2
    assert captioning.caption_metrics(gts, res, meteor=False)["METEOR"] is None and FakeMeteor.started == 2
