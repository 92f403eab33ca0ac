"""An offline tokenizer and the word vocabulary (built from the training split only)."""
from __future__ import annotations

import json
import re
import sys
import unicodedata
from collections import Counter
from typing import Iterable, Sequence

from .atomic import write_json_atomic
from .records import DataError

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNK)

# Lower-case words and numbers; apostrophes are dropped inside words ("man's" -> "mans") and all
# other punctuation is removed, as in the Karpathy splits' own `tokens`. Needs no downloaded data
# (nltk's word_tokenize needs the punkt models). Any script works: text is NFC-normalised and
# lower-cased, a word is a run of Unicode letters, combining marks and digits ("café crème" ->
# "café", "crème"), and scripts written without spaces (Chinese, Japanese kana, Thai, Lao, Khmer,
# Myanmar) give one token per character (with its marks), as character-level captioning work on them does.
_WORD = re.compile(r"[a-z0-9]+")
_APOSTROPHES = str.maketrans("", "", "'\u2019")
_UNSPACED = ((0x0E00, 0x0EFF), (0x1000, 0x109F), (0x1780, 0x17FF), (0x3040, 0x30FF), (0x3400, 0x4DBF),
             (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F))


def _unspaced(char: str) -> bool:
    code = ord(char)
    return any(lo <= code <= hi for lo, hi in _UNSPACED)


def _word_char(char: str) -> bool:
    return unicodedata.category(char)[0] in "LMN"


def tokenize(text: str) -> list[str]:
    """Split a caption into lower-case word tokens (see above for scripts other than Latin)."""
    text = unicodedata.normalize("NFC", text).lower().translate(_APOSTROPHES)
    if text.isascii():
        return _WORD.findall(text)
    tokens, word = [], []
    for char in text:
        if _word_char(char) and _unspaced(char):
            if unicodedata.category(char)[0] == "M" and tokens and not word:
                tokens[-1] += char  # a vowel or tone mark stays with its letter
                continue
            if word:
                tokens.append("".join(word))
                word = []
            tokens.append(char)
        elif _word_char(char):
            word.append(char)
        elif word:
            tokens.append("".join(word))
            word = []
    if word:
        tokens.append("".join(word))
    return tokens


class Vocabulary:
    """Word <-> index map with ``<pad>``=0, ``<start>``=1, ``<end>``=2, ``<unk>``=3."""

    def __init__(self, words: Sequence[str]):
        if tuple(words[: len(SPECIALS)]) != SPECIALS:
            raise DataError(f"a vocabulary must start with {SPECIALS}, got {list(words[:4])}")
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise DataError("vocabulary has duplicate words")

    pad_id, start_id, end_id, unk_id = 0, 1, 2, 3

    def __len__(self) -> int:
        return len(self.words)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.words == other.words

    def ids(self, tokens: Iterable[str]) -> list[int]:
        return [self.index.get(t, self.unk_id) for t in tokens]

    def encode(self, text: str, max_len: int = 0) -> list[int]:
        """``<start> w1 .. wn <end>`` ids; ``max_len`` > 0 keeps at most that many words."""
        tokens = tokenize(text)
        if max_len > 0:
            tokens = tokens[:max_len]
        return [self.start_id] + self.ids(tokens) + [self.end_id]

    def decode(self, ids: Iterable[int]) -> str:
        """Words up to the first ``<end>``; ``<start>`` and ``<pad>`` are skipped."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.end_id:
                break
            if i in (self.pad_id, self.start_id):
                continue
            out.append(self.words[i] if 0 <= i < len(self.words) else UNK)
        return " ".join(out)

    def save(self, path: str) -> None:
        """Write the word list as JSON, atomically."""
        write_json_atomic(path, {"words": self.words}, indent=None)

    @classmethod
    def load(cls, path: str) -> "Vocabulary":
        try:
            with open(path) as f:
                data = json.load(f)
        except FileNotFoundError:
            raise DataError(f"vocabulary file not found: {path}") from None
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: line {err.lineno}: not valid JSON ({err.msg})") from None
        if not isinstance(data, dict) or "words" not in data:
            raise DataError(f"{path}: expected an object with a 'words' list")
        return cls(data["words"])


def build_vocab(captions: Iterable[str], threshold: int = 1) -> Vocabulary:
    """Vocabulary of the words seen at least ``threshold`` times, most frequent first.

    Pass the training captions only: words of val/test must not leak into the model.
    """
    counts = Counter(t for c in captions for t in tokenize(c))
    kept = sorted((w for w, n in counts.items() if n >= threshold), key=lambda w: (-counts[w], w))
    return Vocabulary(list(SPECIALS) + [w for w in kept if w not in SPECIALS])


def oov_rate(vocab: Vocabulary, captions: Iterable[str]) -> float:
    """Fraction of word tokens that map to ``<unk>``."""
    total = unknown = 0
    for c in captions:
        for t in tokenize(c):
            total += 1
            unknown += t not in vocab.index
    return unknown / total if total else 0.0


def warn_unknown_words(text: str, vocab) -> None:
    """Name the query's words the run never saw (they are read as ``<unk>``)."""
    words = tokenize(text)
    unknown = sorted({w for w in words if w not in vocab.index})
    if unknown and len(unknown) == len(set(words)):
        print(f"warning: none of the words of {text!r} is in the run's vocabulary (all read as <unk>): the results "
              "say nothing about the text", file=sys.stderr)
    elif unknown:
        print(f"note: not in the run's vocabulary (read as <unk>): {', '.join(unknown)}", file=sys.stderr)
