import pytest

from data.records import DataError
from data.vocab import SPECIALS, Vocabulary, build_vocab, oov_rate, tokenize


def test_tokenize_lowercases_and_drops_punctuation():
    assert tokenize("A man's DOG, jumping!  Over 2 logs.") == ["a", "mans", "dog", "jumping", "over", "2", "logs"]
    assert tokenize("   ") == []


def test_build_vocab_threshold_and_specials():
    vocab = build_vocab(["a red circle", "a blue circle", "a red square"], threshold=2)
    assert vocab.words[:4] == list(SPECIALS)
    assert set(vocab.words[4:]) == {"a", "red", "circle"}
    assert vocab.words[4] == "a"  # most frequent first
    assert vocab.encode("a blue circle") == [1, vocab.index["a"], vocab.unk_id, vocab.index["circle"], 2]
    assert vocab.decode(vocab.encode("a red circle") + [0, 0]) == "a red circle"


def test_encode_max_len_keeps_end_token():
    vocab = build_vocab(["one two three four"])
    ids = vocab.encode("one two three four", max_len=2)
    assert ids[0] == vocab.start_id and ids[-1] == vocab.end_id and len(ids) == 4


def test_save_load_roundtrip(tmp_path):
    vocab = build_vocab(["x y z", "x y"])
    path = str(tmp_path / "vocab.json")
    vocab.save(path)
    assert Vocabulary.load(path) == vocab
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_load_errors_name_the_file(tmp_path):
    bad = tmp_path / "v.json"
    bad.write_text('{"words": [\n "a",\n')
    with pytest.raises(DataError, match="v.json: line"):
        Vocabulary.load(str(bad))
    with pytest.raises(DataError, match="not found"):
        Vocabulary.load(str(tmp_path / "missing.json"))
    bad.write_text('{"words": ["a", "b"]}')
    with pytest.raises(DataError, match="must start with"):
        Vocabulary.load(str(bad))


def test_oov_rate():
    vocab = build_vocab(["a b"])
    assert oov_rate(vocab, ["a b c d"]) == 0.5
