"""Stage 2 rewarded by another run's frozen matcher (semi.reward_run), the reward forms, and the grades."""
import json

import pytest
import torch

import train
from config import ConfigError, load_config, to_dict
from data import load_split
from data.vocab import Vocabulary
from evaluation.captioning import reference_free_score
from evaluation.graders import grade, load_grader
from models.lim import LIM
from models.similarity import similarity
from runfolder.checkpoint import CheckpointError, load_checkpoint, save_atomic
from runfolder.folder import load_trained
from tests.test_semi import LookupMatcher
from tests.test_train import tiny
from training.reward_run import load_reward_run, vocab_map
from training.stage2 import matcher_reward

SPECIALS = ["<pad>", "<start>", "<end>", "<unk>"]


def test_vocab_map_round_trips_the_shared_words_and_names_the_missing_ones():
    ours = Vocabulary(SPECIALS + ["a", "red", "zebra", "circle"])
    theirs = Vocabulary(SPECIALS + ["circle", "blue", "a", "red", "square"])
    table, missing = vocab_map(ours, theirs)
    assert missing == ["zebra"]
    ids = torch.tensor(ours.encode("a red circle"))
    assert theirs.decode(table[ids].tolist()) == "a red circle"
    assert table[:4].tolist() == [0, 1, 2, 3] and table[ours.index["zebra"]] == theirs.unk_id
    assert theirs.decode(table[torch.tensor(ours.encode("a zebra"))].tolist()) == "a <unk>"


def test_margin_and_clip_s_rewards_match_a_naive_computation():
    torch.manual_seed(0)
    table = torch.randn(12, 8)
    matcher = LookupMatcher(table)
    img = {b: table[4:7].clone() + 0.1 for b in ("abstract", "grounded")}
    tokens = torch.tensor([[4, 2], [9, 2], [5, 2], [4, 2], [6, 2], [6, 2]])
    mask = torch.ones(6, 2)
    owner = [0, 0, 1, 1, 2, 2]
    scores = similarity(img["abstract"], table[tokens[:, 0]], "cosine")  # (3 images, 6 captions)
    margin = matcher_reward(matcher, img, tokens, mask, "margin")
    naive = [float(scores[owner[c], c] - (scores[:, c].sum() - scores[owner[c], c]) / 2) for c in range(6)]
    assert torch.allclose(margin.flatten(), torch.tensor(naive), atol=1e-5)
    clip = matcher_reward(matcher, img, tokens, mask, "clip_s")
    cosine = torch.nn.functional.cosine_similarity(img["abstract"][owner], table[tokens[:, 0]], dim=1)
    naive = [2.5 * max(float(c), 0.0) for c in cosine]  # a true cosine, whatever the matcher's measure
    assert torch.allclose(clip.flatten(), torch.tensor(naive), atol=1e-5)
    # An id map sends our ids through the judge's vocabulary: the same as mapping them first.
    id_map = torch.arange(12).flip(0)
    mapped = matcher_reward(matcher, img, id_map[tokens], mask, "retrieval", 0.1)
    assert torch.allclose(matcher_reward(matcher, img, tokens, mask, "retrieval", 0.1, id_map), mapped)
    assert not torch.allclose(matcher_reward(matcher, img, tokens, mask, "retrieval", 0.1), mapped)


def _fake_precomp_run(folder, vocab_words, feature_dim=6):
    """A run folder whose best.pt is a matcher on precomputed features (never trained)."""
    cfg = load_config(None, ["model.image_encoder=precomp", "data.name=precomp", "data.precomp_dir=x",
                             "imagine.lambda_t2i=0", "look.lambda_i2t=0", "model.embed_dim=16", "model.word_dim=8",
                             "model.text_hidden=8"])
    model = LIM(cfg.model, cfg.look, cfg.imagine, len(vocab_words), feature_dim)
    folder.mkdir()
    save_atomic({"model": model.state_dict(), "config": to_dict(cfg), "vocab": vocab_words,
                 "image_feature_dim": feature_dim}, str(folder / "best.pt"))


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    """A matcher trained on every pair, with another embedding size than the captioner's 16."""
    tmp = tmp_path_factory.mktemp("judge")
    train.main(tiny(tmp, out="judge", **{"imagine.lambda_t2i": 0, "look.lambda_i2t": 0, "train.epochs": 1,
                                         "model.embed_dim": 24}))
    return tmp / "judge"


def test_a_reward_run_is_loaded_for_what_it_can_score_and_refused_otherwise(tmp_path, judge):
    cfg = load_config(None, tiny(tmp_path))
    _, jvocab, jmodel, _ = load_trained(str(judge))
    lines = []
    ours = Vocabulary(jvocab.words + ["zebra"])
    got = load_reward_run(str(judge), str(tmp_path / "run"), cfg, ours, None, log=lines.append)
    assert len(lines) == 1 and "1 of our" in lines[0] and "zebra" in lines[0]
    assert got.id_map[ours.index["zebra"]] == jvocab.unk_id and got.data_cfg.image_size == 32
    assert not any(p.requires_grad for p in got.matcher.parameters())
    with pytest.raises(CheckpointError, match="not found"):
        load_reward_run(str(tmp_path / "nowhere"), str(tmp_path / "run"), cfg, ours, None)
    with pytest.raises(CheckpointError, match="is this run"):
        load_reward_run(str(judge), str(judge), cfg, ours, None)
    _fake_precomp_run(tmp_path / "precomp", jvocab.words)
    with pytest.raises(CheckpointError, match=r"semi.reward_run=.*precomputed features of width 6 \(embedding size "
                                              r"16\), this run reads pixels"):
        load_reward_run(str(tmp_path / "precomp"), str(tmp_path / "run"), cfg, ours, None)
    with pytest.raises(ConfigError, match="same run"):
        load_config(None, [f"semi.reward_run={judge}", f"semi.evaluator_run={judge}/"])


def test_grades_match_the_judges_own_embedding(tmp_path, judge):
    cfg = load_config(None, tiny(tmp_path))
    jcfg, jvocab, jmodel, _ = load_trained(str(judge))
    test = load_split(cfg.data, "test")
    captions = [c[0] for c in test.captions]
    captions[1] = captions[0]
    got = grade(load_grader(str(judge), str(tmp_path / "run"), cfg, None, "semi.evaluator_run"), test, captions,
                torch.device("cpu"))
    from evaluation.captioning import distinctiveness
    want = distinctiveness(jmodel.matcher, test, captions, jvocab, jcfg.data, torch.device("cpu"))
    assert {k: got[k] for k in ("r1", "r5")} == want
    from evaluation.retrieval import encode_split
    img = encode_split(jmodel.matcher, test, jvocab, jcfg.data, torch.device("cpu"), 256, False, False)[0]
    from data.datasets import encode_texts
    ids, lengths = encode_texts(captions, jvocab, cfg.data.max_caption_len)
    with torch.no_grad():
        cap = jmodel.matcher.encode_captions(ids, lengths)
    naive = [2.5 * max(sum(0.5 * float(torch.nn.functional.cosine_similarity(img[b][i], cap[b][i], dim=0))
                           for b in ("abstract", "grounded")), 0.0) for i in range(len(captions))]
    assert jmodel.matcher.branch_weights == {"abstract": 0.5, "grounded": 0.5}  # equal: the naive mean above
    assert got["clip_s"] == pytest.approx(sum(naive) / len(naive), abs=1e-3)
    assert reference_free_score(jmodel.matcher, test, captions, jvocab, jcfg.data, torch.device("cpu")) == \
        got["clip_s"]


def test_stage2_with_a_reward_run_never_updates_that_run(tmp_path, judge):
    before = (judge / "best.pt").read_bytes()
    weights = {k: v.clone() for k, v in load_checkpoint(str(judge / "best.pt"))["model"].items()}
    train.main(tiny(tmp_path, out="evaluator", **{"imagine.lambda_t2i": 0, "look.lambda_i2t": 0, "train.epochs": 1,
                                                  "train.seed": 1}))
    report = train.main(tiny(tmp_path, **{"data.labelled_fraction": 0.25, "semi.stage2_epochs": 1,
                                          "imagine.lambda_t2i": 0, "semi.batch_size": 8, "semi.labelled_batch": 4,
                                          "semi.reward": "margin", "semi.reward_run": str(judge),
                                          "semi.evaluator_run": str(tmp_path / "evaluator")}))
    assert (judge / "best.pt").read_bytes() == before
    after = load_checkpoint(str(judge / "best.pt"))["model"]
    assert all(torch.equal(weights[k], after[k]) for k in weights)
    run = tmp_path / "run"
    stage1, stage2 = load_checkpoint(str(run / "last.pt")), load_checkpoint(str(run / "stage2.pt"))
    changed = {k.split(".")[0] for k in stage1["model"] if not torch.equal(stage1["model"][k], stage2["model"][k])}
    assert changed == {"decoder"}
    semi = report["semi"]
    assert semi["reward_run"] == str(judge) and semi["reward"] == "margin"
    for stage in ("stage1", "stage2"):
        assert set(semi[stage]["reward_run"]) == {"r1", "r5", "clip_s"}
        assert set(semi[stage]["evaluator"]) == {"r1", "r5", "clip_s"}
        assert semi[stage]["clip_s"] >= 0 and "repeated_pair_pct" in semi[stage]["fluency"]
    md = (run / "report.md").read_text()
    assert "CLIP-S (evaluator)" in md and f"reward margin from {judge}" in md
    assert json.loads((run / "report.json").read_text())["semi"]["evaluator_run"] == str(tmp_path / "evaluator")
