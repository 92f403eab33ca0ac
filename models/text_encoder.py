"""Text encoder: word embeddings -> 2-layer bidirectional GRU -> abstract and grounded heads."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from config import ModelConfig

from .image_encoder import embed

UNK_ID = 3  # data.vocab.Vocabulary.unk_id; ids above it are words (0-2: <pad>, <start>, <end>)


class TextEncoder(nn.Module):
    """Captions ``(B, T)`` with lengths ``(B,)`` -> ``{"abstract", "grounded"}`` ``(B, D)``.

    The abstract head reads the final forward and backward states (the sentence as a whole);
    the grounded head reads the mean of the per-word states (every word keeps a say).
    """

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        self.measure = cfg.measure
        self.word_dropout = cfg.word_dropout
        self.words = nn.Embedding(vocab_size, cfg.word_dim, padding_idx=0)
        nn.init.uniform_(self.words.weight, -0.1, 0.1)
        self.gru = nn.GRU(
            cfg.word_dim, cfg.text_hidden, num_layers=cfg.text_layers, batch_first=True, bidirectional=True
        )
        self.abstract = nn.Linear(2 * cfg.text_hidden, cfg.embed_dim)
        self.grounded = nn.Linear(2 * cfg.text_hidden, cfg.embed_dim)

    def forward(self, captions: torch.Tensor, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.training and self.word_dropout > 0:  # words -> <unk> at random, as unseen words read at test time
            drop = (torch.rand(captions.shape, device=captions.device) < self.word_dropout) & (captions > UNK_ID)
            captions = captions.masked_fill(drop, UNK_ID)
        x = self.words(captions)  # (B, T, W)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, h = self.gru(packed)  # h: (layers * 2, B, H)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=captions.shape[1])  # (B, T, 2H)
        last = torch.cat([h[-2], h[-1]], dim=1)  # (B, 2H): last layer, forward and backward
        mask = (torch.arange(captions.shape[1], device=captions.device)[None] < lengths.to(captions.device)[:, None])
        mean = (out * mask[..., None]).sum(1) / lengths.to(out.device, out.dtype)[:, None]  # (B, 2H)
        return {
            "abstract": embed(self.abstract(last), self.measure),
            "grounded": embed(self.grounded(mean), self.measure),
        }
