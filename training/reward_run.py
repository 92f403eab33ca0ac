"""Stage 2's judge: the frozen matcher whose score rewards the sampled captions.

By default it is the run's own matcher. ``semi.reward_run=RUN_DIR`` takes another run's (trained on
other data or on every pair: the role CLIP plays for the semi-supervised systems this follows), loaded
by :func:`evaluation.graders.load_grader`: it reads the images with its own image encoder, so its
embedding size may differ from ours, but not the kind of input. Our caption ids are mapped onto its
vocabulary word by word; words it does not know become its ``<unk>`` and are named once in the log.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from config import Config
from data.records import Split
from data.vocab import Vocabulary
from evaluation.graders import load_grader
from evaluation.retrieval import encode_split

SHOWN_WORDS = 20  # missing words named in the log line


def vocab_map(ours: Vocabulary, theirs: Vocabulary) -> tuple[torch.Tensor, list[str]]:
    """``(len(ours),)`` ids in ``theirs`` of each of our ids (``<unk>`` where it lacks the word;
    the four specials map onto themselves), and our words it lacks, in our order."""
    table = torch.tensor(theirs.ids(ours.words), dtype=torch.long)
    table[:4] = torch.arange(4)  # pad, start, end, unk: the same slots in every vocabulary
    missing = [w for w in ours.words[4:] if w not in theirs.index]
    return table, missing


@dataclass
class RewardMatcher:
    """A frozen matcher, the map from our caption ids to its ids (None: our own matcher), the data
    settings it reads images with, and where it came from ("own" or the reward run's folder)."""

    matcher: torch.nn.Module
    id_map: Optional[torch.Tensor]
    data_cfg: object
    source: str

    def image_features(self, split: Split, vocab: Vocabulary, device: torch.device, batch: int) -> dict:
        return encode_split(self.matcher, split, vocab, self.data_cfg, device, batch, False, False)[0]


def load_reward_run(run_dir: str, own_run: str, cfg: Config, vocab: Vocabulary, feature_dim: Optional[int],
                    log=print) -> RewardMatcher:
    """``semi.reward_run``'s frozen matcher for this run (folder ``own_run``, ``cfg``, ``vocab``;
    ``feature_dim``: this run's precomputed feature width, or None).

    Raises:
        CheckpointError: see :func:`evaluation.graders.load_grader`.
    """
    grader = load_grader(run_dir, own_run, cfg, feature_dim, "semi.reward_run")
    table, missing = vocab_map(vocab, grader.vocab)
    if missing:
        shown = ", ".join(missing[:SHOWN_WORDS]) + (" ..." if len(missing) > SHOWN_WORDS else "")
        log(f"semi.reward_run: {len(missing)} of our {len(vocab) - 4} words are not in {run_dir}'s vocabulary "
            f"and reach its matcher as <unk>: {shown}")
    return RewardMatcher(grader.matcher, table, grader.data_cfg, run_dir)


def own_reward_matcher(model, cfg: Config) -> RewardMatcher:
    """This run's frozen matcher as stage 2's judge (the default)."""
    return RewardMatcher(model.matcher, None, cfg.data, "own")
