"""Data layer: datasets of every kind as :class:`Split` records, vocabulary, torch datasets."""
from .records import ArrayImages, DataError, ImageSource, Split, fix_captions_per_image
from .sources import DATASET_KINDS, load_split
from .vocab import SPECIALS, Vocabulary, build_vocab, oov_rate, tokenize

__all__ = [
    "ArrayImages",
    "DATASET_KINDS",
    "DataError",
    "ImageSource",
    "SPECIALS",
    "Split",
    "Vocabulary",
    "build_vocab",
    "fix_captions_per_image",
    "load_split",
    "oov_rate",
    "tokenize",
]
