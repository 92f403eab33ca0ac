"""Semi-supervised captioning: labelled fraction, matcher reward, stage 2, distinctiveness."""
import json

import numpy as np
import pytest
import torch

import train
from config import ConfigError, ModelConfig, load_config
from data import load_split
from data.labelled import labelled_captions, labelled_ids, labelled_images, unlabelled_ids
from data.records import DataError
from evaluation.captioning import distinctiveness, fluency
from models.matcher import Matcher
from models.similarity import similarity
from runfolder.checkpoint import CheckpointError, load_checkpoint
from tests.test_train import tiny
from training.loop import epoch_caption_indices
from training.stage2 import matcher_reward, sampled_caption_ids


def test_labelled_images_are_deterministic_and_sized():
    a = labelled_images(1000, 0.02, seed=3)
    assert len(a) == 20 and np.all(np.diff(a) > 0)
    assert np.array_equal(a, labelled_images(1000, 0.02, seed=3))
    assert not np.array_equal(a, labelled_images(1000, 0.02, seed=4))
    assert len(labelled_images(10, 0.001)) == 1  # at least one image
    assert len(labelled_images(10, 1.0)) == 10
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(DataError, match="labelled_fraction"):
            labelled_images(10, bad)


def test_epochs_draw_only_labelled_captions_at_full_length(tmp_path):
    cfg = load_config(None, tiny(tmp_path, **{"data.labelled_fraction": 0.25}))
    split = load_split(cfg.data, "train")
    kept = set(labelled_ids(split).tolist())
    assert len(kept) == 12 and set(unlabelled_ids(split).tolist()) == set(range(48)) - kept
    for one_per_image in (True, False):
        idx = epoch_caption_indices(split, one_per_image, epoch=1, seed=0)
        assert len(idx) == (48 if one_per_image else 48 * 5)
        assert set((idx // 5).tolist()) == kept  # every labelled image, nothing else
    assert set(labelled_captions(split)) == {c for i in kept for c in split.captions[i]}


def test_a_labelled_run_records_its_images_and_learns_words_from_them_only(tmp_path):
    overrides = tiny(tmp_path, **{"data.labelled_fraction": 0.25, "imagine.lambda_t2i": 0, "look.lambda_i2t": 0,
                                  "train.epochs": 1})
    train.main(overrides)
    cfg = load_config(None, overrides)
    split = load_split(cfg.data, "train")
    saved = json.loads((tmp_path / "run" / "labelled_images.json").read_text())
    assert saved["images"] == labelled_ids(split).tolist() and saved["fraction"] == 0.25
    words = json.loads((tmp_path / "run" / "vocab.json").read_text())["words"]
    from data.vocab import tokenize
    seen = {w for c in labelled_captions(split) for w in tokenize(c)}
    assert set(words[4:]) == seen


def test_sampled_caption_ids_prepend_start_and_count_the_end():
    tokens = torch.tensor([[5, 6, 2, 0], [7, 8, 9, 10]])  # second row never ended
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.float)
    ids, lengths = sampled_caption_ids(tokens, mask)
    assert ids[:, 0].tolist() == [1, 1] and ids[0, 1:].tolist() == [5, 6, 2, 0]
    assert lengths.tolist() == [4, 5]


class LookupMatcher(Matcher):
    """A matcher whose caption embedding is a table lookup of the first word (a known answer)."""

    def __init__(self, table: torch.Tensor):
        super().__init__(ModelConfig(measure="cosine", embed_dim=table.shape[1], word_dim=4, text_hidden=4,
                                     small_cnn_width=4), vocab_size=table.shape[0])
        self.table = table

    def encode_captions(self, captions, lengths):
        v = self.table[captions[:, 1]]
        return {"abstract": v, "grounded": v}


def test_retrieval_reward_is_the_log_probability_of_finding_its_own_image():
    torch.manual_seed(0)
    table = torch.nn.functional.normalize(torch.randn(12, 8), dim=1)
    matcher = LookupMatcher(table)
    img = {b: table[4:7].clone() for b in ("abstract", "grounded")}  # image b looks like word 4 + b
    tokens = torch.tensor([[4, 2], [9, 2], [5, 2], [4, 2], [6, 2], [6, 2]])  # 2 samples per image
    mask = torch.ones(6, 2)
    reward = matcher_reward(matcher, img, tokens, mask, "retrieval", temperature=0.1)
    scores = similarity(table[4:7], table[tokens[:, 0]], "cosine")  # one branch = the weighted sum here
    naive = torch.log_softmax(scores / 0.1, dim=0)[[0, 0, 1, 1, 2, 2], torch.arange(6)].view(3, 2)
    assert torch.allclose(reward, naive, atol=1e-5)
    assert reward[0, 0] > reward[0, 1] and reward[1, 0] > reward[1, 1]  # its own word beats another
    raw = matcher_reward(matcher, img, tokens, mask, "similarity")
    assert torch.allclose(raw, scores[[0, 0, 1, 1, 2, 2], torch.arange(6)].view(3, 2), atol=1e-5)
    assert torch.allclose(raw[2], torch.ones(2), atol=1e-5)


def test_distinctiveness_matches_a_brute_force_rank(tmp_path):
    cfg = load_config(None, tiny(tmp_path))
    split = load_split(cfg.data, "test")
    from data.vocab import build_vocab
    vocab = build_vocab(split.flat_captions())
    torch.manual_seed(0)
    matcher = Matcher(cfg.model, len(vocab)).eval()
    captions = [caps[0] for caps in split.captions]
    captions[3] = captions[0]  # a caption that fits another image better is not distinctive
    got = distinctiveness(matcher, split, captions, vocab, cfg.data, torch.device("cpu"), batch_size=5)
    from evaluation.retrieval import encode_split
    img = encode_split(matcher, split, vocab, cfg.data, torch.device("cpu"), 256, False, False)[0]
    from data.datasets import pad_captions
    ids, lengths = pad_captions([torch.tensor(vocab.encode(c)) for c in captions])
    with torch.no_grad():
        scores = matcher.similarity(img, matcher.encode_captions(ids, lengths))
    ranks = [int((scores[:, j] > scores[j, j]).sum()) for j in range(len(captions))]
    assert got["r1"] == pytest.approx(100 * np.mean([r < 1 for r in ranks]), abs=0.01)
    assert got["r5"] == pytest.approx(100 * np.mean([r < 5 for r in ranks]), abs=0.01)


def test_fluency_counts_stutters_and_verbatim_references():
    refs = ["a red circle", "a blue square above a red circle"]
    out = fluency(["a red circle", "red red circle", "a blue square above a red circle", "circle a"], refs)
    assert out == {"mean_words": 3.75, "stutter_pct": 25.0, "repeated_pair_pct": 0.0, "seen_in_references_pct": 50.0}
    again = fluency(["a red circle a red circle", "a red circle"], refs)  # a word pair said twice
    assert again["repeated_pair_pct"] == 50.0 and again["stutter_pct"] == 0.0


def test_stage2_needs_a_decoder_and_a_known_reward(tmp_path):
    with pytest.raises(ConfigError, match="look.lambda_i2t"):
        load_config(None, ["semi.stage2_epochs=1", "look.lambda_i2t=0"])
    with pytest.raises(ConfigError, match="semi.reward"):
        load_config(None, ["semi.stage2_epochs=1", "semi.reward=bleu"])
    with pytest.raises(ConfigError, match="scst_samples"):
        load_config(None, ["semi.stage2_epochs=1", "look.scst_samples=1"])
    load_config(None, ["look.lambda_i2t=0"])  # stage 2 off: nothing to check


def test_stage2_trains_the_decoder_only_and_reports_both_stages(tmp_path):
    report = train.main(tiny(tmp_path, **{"data.labelled_fraction": 0.25, "semi.stage2_epochs": 2,
                                          "imagine.lambda_t2i": 0, "semi.batch_size": 8, "semi.labelled_batch": 4,
                                          "semi.pick": "cider"}))
    run = tmp_path / "run"
    stage1, stage2 = load_checkpoint(str(run / "last.pt")), load_checkpoint(str(run / "stage2.pt"))
    history = stage2["stage2"]["history"]  # epoch 0: stage 1's decoder
    assert stage2["stage2"]["epochs"] == 2 and [h["epoch"] for h in history] == [0, 1, 2]
    best = max(history[1:], key=lambda h: h["cider_d"])["epoch"]  # semi.pick=cider: the first of the best
    assert stage2["stage2"]["picked"] == best
    for name, value in stage1["model"].items():
        assert torch.equal(value, stage2["model"][name]) != name.startswith("decoder."), name
    semi = report["semi"]
    assert semi["labelled_images"] == 12 and semi["stage1"]["checkpoint"] == "last.pt"
    assert semi["stage2"]["checkpoint"] == f"stage2.pt (epoch {best} of 2)" and semi["stage2_val"] == history
    from evaluation.captioning import evaluate_captions
    from runfolder.folder import load_trained
    cfg, vocab, model, _ = load_trained(str(run), str(run / "stage2.pt"))
    again = evaluate_captions(model, load_split(cfg.data, "test"), vocab, cfg.data, torch.device("cpu"),
                              cfg.look.beam_size, progress=False, meteor=False)
    assert semi["stage2"]["CIDEr"] == pytest.approx(again["CIDEr"])
    assert set(semi["stage1"]["distinctiveness"]) == {"r1", "r5"}
    assert "semi-supervised captioning" in (run / "report.md").read_text()


def test_a_finished_run_reruns_stage2_alone_with_other_settings(tmp_path):
    import shutil

    first = tiny(tmp_path, **{"data.labelled_fraction": 0.25, "semi.stage2_epochs": 1, "imagine.lambda_t2i": 0,
                              "look.scst_epochs": 0, "semi.batch_size": 8, "semi.labelled_batch": 4})
    train.main(first)
    shutil.copytree(tmp_path / "run", tmp_path / "copy")
    last = (tmp_path / "copy" / "last.pt").read_bytes()
    again = [o for o in first if not o.startswith(("train.out_dir=", "semi.stage2_epochs="))]
    report = train.main(again + [f"train.out_dir={tmp_path / 'copy'}", "train.resume=true", "semi.stage2_epochs=2",
                                 "semi.cider_weight=0"])
    assert (tmp_path / "copy" / "last.pt").read_bytes() == last  # stage 1 untouched: no step trained again
    stage2 = load_checkpoint(str(tmp_path / "copy" / "stage2.pt"))
    assert stage2["stage2"]["epochs"] == 2 and stage2["config"]["semi"]["cider_weight"] == 0
    assert report["semi"]["stage2_epochs"] == 2


def test_evaluator_grades_caption_distinctiveness_in_its_own_embedding(tmp_path):
    import evaluate
    from runfolder.folder import load_trained

    train.main(tiny(tmp_path, out="captioner", **{"imagine.lambda_t2i": 0, "train.epochs": 1, "look.scst_epochs": 0}))
    train.main(tiny(tmp_path, out="judge", **{"imagine.lambda_t2i": 0, "look.lambda_i2t": 0, "train.epochs": 1}))
    report = evaluate.evaluate(str(tmp_path / "captioner"), checkpoint="last", evaluator=str(tmp_path / "judge"),
                               progress=False, html=False, swap_test=False)
    got = report["captioning"]["distinctiveness_evaluator"]
    results = tmp_path / "captioner" / "eval_test_last_captions.json"  # beside the non-best checkpoint's own report
    captions = [r["caption"] for r in sorted(json.load(open(results)), key=lambda r: r["image_id"])]
    cfg, vocab, judge, _ = load_trained(str(tmp_path / "judge"))
    want = distinctiveness(judge.matcher, load_split(cfg.data, "test"), captions, vocab, cfg.data, torch.device("cpu"))
    assert {k: got[k] for k in ("r1", "r5")} == want and got["evaluator"] == str(tmp_path / "judge")
    embedding_only = str(tmp_path / "judge")
    with pytest.raises(CheckpointError, match="nothing for --evaluator to grade"):
        evaluate.evaluate(embedding_only, evaluator=str(tmp_path / "captioner"), progress=False, html=False,
                          swap_test=False)


@pytest.mark.parametrize("pick", ["cider", "last"])
def test_stage2_keeps_the_decoder_of_the_picked_epoch(tmp_path, monkeypatch, pick):
    """With val CIDEr-D scripted to peak at epoch 1 of 2, semi.pick=cider keeps epoch 1's decoder (the
    one a 1-epoch stage 2 from the same stage 1 ends with) and semi.pick=last epoch 2's."""
    import shutil

    import training.stage2 as stage2_module

    scores = iter([0.5, 0.9, 0.3, 0.5, 0.9])  # epoch 0, 1, 2 of the first stage 2; epoch 0, 1 of the second

    def scripted(*args, **kwargs):
        return {"cider_d": next(scores), "r1": 1.0}

    monkeypatch.setattr(stage2_module, "validate_stage2", scripted)
    first = tiny(tmp_path, **{"data.labelled_fraction": 0.25, "semi.stage2_epochs": 2, "imagine.lambda_t2i": 0,
                              "look.scst_epochs": 0, "semi.batch_size": 8, "semi.labelled_batch": 4,
                              "semi.pick": pick})
    train.main(first)
    shutil.copytree(tmp_path / "run", tmp_path / "copy")
    kept = load_checkpoint(str(tmp_path / "run" / "stage2.pt"))
    assert kept["stage2"]["picked"] == (1 if pick == "cider" else 2) and kept["stage2"]["epochs"] == 2
    again = [o for o in first if not o.startswith(("train.out_dir=", "semi.stage2_epochs="))]
    train.main(again + [f"train.out_dir={tmp_path / 'copy'}", "train.resume=true", "semi.stage2_epochs=1"])
    one = load_checkpoint(str(tmp_path / "copy" / "stage2.pt"))
    same = all(torch.equal(v, one["model"][k]) for k, v in kept["model"].items() if k.startswith("decoder."))
    assert same == (pick == "cider")
