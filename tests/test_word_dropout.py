"""model.word_dropout: words the text encoder reads become <unk> at random while training only."""
import pytest
import torch

from config import ConfigError, ModelConfig, load_config
from data.vocab import Vocabulary
from models.text_encoder import UNK_ID, TextEncoder


def test_unk_id_is_the_vocabularys():
    assert UNK_ID == Vocabulary.unk_id and Vocabulary.pad_id < Vocabulary.start_id < Vocabulary.end_id < UNK_ID


def test_training_reads_words_as_unk_at_the_given_rate_and_eval_reads_them_all():
    torch.manual_seed(0)
    enc = TextEncoder(ModelConfig(embed_dim=8, word_dim=4, text_hidden=4, word_dropout=0.3), vocab_size=50)
    seen = []
    enc.words.register_forward_hook(lambda module, args, out: seen.append(args[0].clone()))
    captions = torch.cat([torch.full((400, 1), Vocabulary.start_id), torch.randint(4, 50, (400, 10)),
                          torch.full((400, 1), Vocabulary.end_id)], 1)
    lengths = torch.full((400,), 12)
    enc.train()(captions, lengths)
    read = seen[-1]
    dropped = read != captions
    assert (read[dropped] == UNK_ID).all()
    assert not dropped[:, 0].any() and not dropped[:, -1].any()  # <start> and <end> stay
    assert dropped[:, 1:-1].float().mean().item() == pytest.approx(0.3, abs=0.02)
    enc.eval()(captions, lengths)
    assert torch.equal(seen[-1], captions)
    plain = TextEncoder(ModelConfig(embed_dim=8, word_dim=4, text_hidden=4), vocab_size=50)
    plain.words.register_forward_hook(lambda module, args, out: seen.append(args[0].clone()))
    plain.train()(captions, lengths)
    assert torch.equal(seen[-1], captions)  # the default reads every word


def test_word_dropout_must_be_a_probability():
    with pytest.raises(ConfigError, match="model.word_dropout"):
        load_config(None, ["model.word_dropout=1.0"])
