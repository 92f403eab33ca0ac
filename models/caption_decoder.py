"""Caption decoder: an LSTM (Show-and-Tell style) conditioned on the image's grounded embedding.

Conditioning: the image feature sets the LSTM's initial state, ``h0 = tanh(W_h f)``,
``c0 = W_c f`` (as in Show, Attend and Tell), and the first input is ``<start>``. The feature
therefore enters once and every later step reads it through the recurrence; teacher forcing,
decoding and scoring all start from the same state.

Decoding (greedy, sampling, beam search) never emits ``<pad>`` or ``<start>`` (:data:`NEVER_EMITTED`):
they are not words, and a generated ``<pad>`` could not be told from the padding after ``<end>``.
Their logits are set to ``-inf`` before the softmax, so sampled log-probabilities are those of the
distribution actually sampled from. Teacher-forced scores (:func:`target_log_probs`, :meth:`CaptionDecoder.log_likelihood`) use the full
softmax, which XE trains.

Every method runs in whatever mode the module is in: put it in ``eval()`` (dropout off) for greedy
baselines, beam search and pair scoring, and in ``train()`` for SCST sampling.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


PAD, START, END = 0, 1, 2  # data/vocab.py ids
NEVER_EMITTED = (PAD, START)


def target_log_probs(logits: torch.Tensor, captions: torch.Tensor,
                     lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of the target tokens and their mask.

    Args:
        logits: ``(B, T-1, V)`` teacher-forced logits (``CaptionDecoder.forward``).
        captions: ``(B, T)`` ids starting with ``<start>``.
        lengths: ``(B,)`` tokens per row, ``<start>`` and ``<end>`` included.

    Returns:
        ``(B, T-1)`` log p(target) (0 at padding) and the ``(B, T-1)`` float mask of real targets.
    """
    targets = captions[:, 1:]  # (B, T-1)
    if logits.shape[:2] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match captions {tuple(captions.shape)}")
    steps = torch.arange(targets.shape[1], device=targets.device)
    mask = (steps[None] < (lengths.to(targets.device) - 1)[:, None]).to(logits.dtype)  # (B, T-1)
    logp = -F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # (B, T-1)
    return logp * mask, mask


State = tuple[torch.Tensor, torch.Tensor]  # LSTM (h, c), each (1, B, H)


class CaptionDecoder(nn.Module):
    """Image feature ``(B, F)`` -> caption logits, samples, decodes and log-likelihoods.

    Args:
        vocab_size: ``V``, specials included.
        feature_dim: ``F``, the image feature size (the matcher's embedding size).
        word_dim: word embedding size.
        hidden: LSTM hidden size ``H``.
        dropout: on the LSTM output, before the vocabulary layer.
        max_len: default cap on generated tokens, ``<end>`` included.
    """

    def __init__(self, vocab_size: int, feature_dim: int, word_dim: int = 300, hidden: int = 512,
                 dropout: float = 0.5, max_len: int = 20):
        super().__init__()
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        self.max_len = max_len
        self.feature_to_state = nn.Linear(feature_dim, 2 * hidden)
        self.words = nn.Embedding(vocab_size, word_dim, padding_idx=PAD)
        with torch.no_grad():
            self.words.weight.uniform_(-0.1, 0.1)
            self.words.weight[PAD].zero_()
        self.lstm = nn.LSTM(word_dim, hidden, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, vocab_size)
        self.register_buffer("never_emitted", torch.tensor(NEVER_EMITTED), persistent=False)

    def _init(self, features: torch.Tensor) -> State:
        """The LSTM's initial state from image features ``(B, F)``."""
        # Unit-norm embeddings have entries of about 1/sqrt(F): rescale them to unit scale so the
        # image reaches the state as strongly as a word embedding reaches the input.
        scaled = features * features.shape[1] ** 0.5  # (B, F)
        h, c = self.feature_to_state(scaled).chunk(2, dim=1)  # (B, H) each
        return torch.tanh(h)[None].contiguous(), c[None].contiguous()  # h lives in (-1, 1) like LSTM outputs

    def forward(self, features: torch.Tensor, captions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: reads ``captions[:, :-1]`` ``(B, T)``, returns logits ``(B, T-1, V)``.

        Logits at step ``t`` predict ``captions[:, t + 1]``; ``lengths`` ``(B,)`` (``<start>`` and
        ``<end>`` counted) lets the LSTM skip padding, whose logits (the output bias) the losses mask.
        """
        x = self.words(captions[:, :-1])  # (B, T-1, W)
        packed = pack_padded_sequence(x, (lengths - 1).cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed, self._init(features))
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (B, T-1, H)
        return self.out(self.drop(out))  # (B, T-1, V)

    def log_likelihood(self, features: torch.Tensor, captions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Length-normalised log-likelihood ``(B,)`` of each caption given its row's feature.

        The sum of teacher-forced log p over the ``length - 1`` targets (words and ``<end>``) divided
        by their number. To score many captions against one image, repeat its feature per caption.

        Only the real targets reach the vocabulary layer: the LSTM's packed outputs, not the padded
        ``(B, T-1, V)`` logits of :meth:`forward` (same values, a fraction of the work when lengths vary).
        """
        steps = (lengths - 1).cpu()  # (B,) targets per row
        packed = pack_padded_sequence(self.words(captions[:, :-1]), steps, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed, self._init(features))  # out.data (N, H): real positions, time-major
        targets = pack_padded_sequence(captions[:, 1:], steps, batch_first=True, enforce_sorted=False).data  # (N,)
        rows = out.sorted_indices[torch.cat([torch.arange(int(b)) for b in out.batch_sizes]).to(targets.device)]
        logp = -F.cross_entropy(self.out(self.drop(out.data)), targets, reduction="none")  # (N,)
        total = torch.zeros(len(captions), dtype=logp.dtype, device=logp.device).index_add_(0, rows, logp)
        return total / steps.to(total.device, total.dtype)

    def _step(self, words: torch.Tensor, state: State, temperature: float = 1.0) -> tuple[torch.Tensor, State]:
        """One decoding step: previous words ``(N,)`` -> log-probs ``(N, V)`` of the next, new state."""
        out, state = self.lstm(self.words(words)[:, None], state)  # (N, 1, H)
        logits = self.out(self.drop(out[:, 0]))  # (N, V)
        logits = logits.index_fill(1, self.never_emitted, float("-inf"))
        return torch.log_softmax(logits / temperature, dim=1), state

    def _steps(self, max_len: Optional[int]) -> int:
        steps = self.max_len if max_len is None else max_len
        if steps < 1:
            raise ValueError(f"max_len must be >= 1, got {steps}")
        return steps

    @torch.no_grad()
    def greedy(self, features: torch.Tensor, max_len: Optional[int] = None) -> torch.Tensor:
        """Argmax decoding: tokens ``(B, L)``, ``L <= max_len``, without ``<start>``.

        Tokens after a row's first ``<end>`` are ``<pad>``; decoding stops once every row has ended.
        """
        state = self._init(features)
        words = torch.full((features.shape[0],), START, dtype=torch.long, device=features.device)
        done = torch.zeros_like(words, dtype=torch.bool)
        tokens = []
        for _ in range(self._steps(max_len)):
            logp, state = self._step(words, state)  # (B, V)
            words = logp.argmax(1).masked_fill(done, PAD)  # (B,)
            tokens.append(words)
            done = done | (words == END)
            if done.all():
                break
        return torch.stack(tokens, 1)

    def sample(self, features: torch.Tensor, n: int = 1, temperature: float = 1.0,
               max_len: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Multinomial sampling of ``n`` captions per image (for SCST).

        Args:
            features: ``(B, F)``.
            n: samples per image; image ``b`` owns rows ``b*n .. b*n+n-1`` of every output.
            temperature: the logits are divided by it before the softmax.

        Returns:
            ``tokens`` ``(B*n, L)`` (``<pad>`` after the first ``<end>``), ``logprobs`` ``(B*n, L)``:
            log-probabilities of the chosen tokens under the distribution sampled from, with grad
            (0 after ``<end>``), and ``mask`` ``(B*n, L)`` float: 1 up to and including the first
            ``<end>`` (everywhere if the row never ends), 0 after.
        """
        if n < 1 or temperature <= 0:
            raise ValueError(f"need n >= 1 and temperature > 0, got n={n}, temperature={temperature}")
        state = self._init(features.repeat_interleave(n, dim=0))
        words = torch.full((features.shape[0] * n,), START, dtype=torch.long, device=features.device)
        done = torch.zeros_like(words, dtype=torch.bool)
        tokens, logprobs, masks = [], [], []
        for _ in range(self._steps(max_len)):
            logp, state = self._step(words, state, temperature)  # (N, V)
            words = torch.multinomial(logp.detach().exp(), 1)[:, 0].masked_fill(done, PAD)  # (N,)
            masks.append(~done)
            logprobs.append(logp.gather(1, words[:, None])[:, 0].masked_fill(done, 0.0))
            tokens.append(words)
            done = done | (words == END)
            if done.all():
                break
        return torch.stack(tokens, 1), torch.stack(logprobs, 1), torch.stack(masks, 1).to(features.dtype)

    @torch.no_grad()
    def beam_search(self, features: torch.Tensor, beam_size: int = 3, max_len: Optional[int] = None,
                    all_beams: bool = False):
        """Batched beam search: the best caption per image, tokens ``(B, L)`` as in :meth:`greedy`;
        with ``all_beams``, every beam ``(tokens (B, K, L), scores (B, K), finished (B, K))`` instead
        (finished: the beam ended with ``<end>``; an unfinished one is a cut-off prefix).

        Hypotheses are ranked by their plain summed log-probability (no length normalisation, as
        in Show-and-Tell; it slightly favours short captions). A finished hypothesis stays in its
        beam with a fixed score, extended by ``<pad>`` only; the search stops once every image's best
        finished hypothesis outscores its live ones. With ``beam_size=1`` this is exactly :meth:`greedy`.
        """
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        b, k = features.shape[0], beam_size
        state = self._init(features.repeat_interleave(k, dim=0))  # rows b*k .. b*k+k-1 are image b's beams
        words = torch.full((b * k,), START, dtype=torch.long, device=features.device)
        # The K start hypotheses are identical: only the first is live, or the beam would hold K copies.
        scores = torch.full((b, k), float("-inf"), dtype=features.dtype, device=features.device)
        scores[:, 0] = 0.0
        done = torch.zeros(b, k, dtype=torch.bool, device=features.device)
        tokens = torch.zeros(b, k, 0, dtype=torch.long, device=features.device)
        parent_base = torch.arange(b, device=features.device)[:, None] * k  # (B, 1)
        vocab = self.out.out_features
        pad_only = torch.full((vocab,), float("-inf"), dtype=features.dtype, device=features.device)  # (V,)
        pad_only[PAD] = 0.0
        for _ in range(self._steps(max_len)):
            logp, state = self._step(words, state)  # (B*K, V)
            logp = torch.where(done[..., None], pad_only, logp.view(b, k, vocab))  # (B, K, V)
            scores, best = (scores[..., None] + logp).view(b, k * vocab).topk(k, dim=1)  # (B, K) each
            parent, next_words = best // vocab, best % vocab  # (B, K) each
            tokens = torch.cat([tokens.gather(1, parent[..., None].expand_as(tokens)), next_words[..., None]], 2)
            done = done.gather(1, parent) | (next_words == END)
            rows = (parent_base + parent).view(-1)  # (B*K,) parent row of each new hypothesis
            state = (state[0][:, rows], state[1][:, rows])
            words = next_words.view(-1)
            # Scores only fall as hypotheses grow: once an image's best finished hypothesis is at
            # least its best live one, its result is settled.
            finished_best = scores.masked_fill(~done, float("-inf")).max(1).values  # (B,)
            live_best = scores.masked_fill(done, float("-inf")).max(1).values  # (B,)
            if (finished_best >= live_best).all():
                break
        if all_beams:
            return tokens, scores, done
        best = tokens[torch.arange(b, device=features.device), scores.argmax(1)]  # (B, L)
        return best[:, :int((best != PAD).any(0).nonzero().max()) + 1]  # drop columns that are padding only
