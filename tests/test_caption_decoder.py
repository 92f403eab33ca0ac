import pytest
import torch
import torch.nn.functional as F

from data.datasets import pad_captions
from losses.caption_xe import caption_xe
from models.caption_decoder import END, NEVER_EMITTED, PAD, START, CaptionDecoder

V, FEAT = 12, 6  # vocabulary (4 specials + 8 words), feature size


def make_decoder(seed: int = 0, dropout: float = 0.0, max_len: int = 7) -> CaptionDecoder:
    torch.manual_seed(seed)
    return CaptionDecoder(V, FEAT, word_dim=8, hidden=16, dropout=dropout, max_len=max_len)


def make_batch(word_counts=(3, 1, 5, 2), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """features (B, F), captions (B, T) = <start> words <end> <pad>.., lengths (B,)."""
    g = torch.Generator().manual_seed(seed)
    caps = [torch.cat([torch.tensor([START]), torch.randint(3, V, (n,), generator=g), torch.tensor([END])])
            for n in word_counts]
    captions, lengths = pad_captions(caps)
    return torch.randn(len(caps), FEAT, generator=g), captions, lengths


def decoded_as_captions(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoded tokens (N, L) -> captions (N, L+1) with <start> prepended, lengths (N,) up to the first <end>."""
    ended = tokens == END
    generated = torch.where(ended.any(1), ended.long().argmax(1) + 1, tokens.shape[1])  # (N,)
    return torch.cat([torch.full((len(tokens), 1), START), tokens], 1), generated + 1


def policy_log_probs(dec: CaptionDecoder, feats: torch.Tensor, tokens: torch.Tensor,
                     temperature: float = 1.0) -> torch.Tensor:
    """Teacher-forced log-probs (N, L) of decoded tokens under the decoding policy (0 after <end>)."""
    caps, lengths = decoded_as_captions(tokens)
    logits = dec(feats, caps, lengths).index_fill(2, torch.tensor(NEVER_EMITTED), float("-inf"))  # (N, L, V)
    logp = torch.log_softmax(logits / temperature, 2).gather(2, tokens[..., None])[..., 0]  # (N, L)
    return torch.where(torch.arange(tokens.shape[1]) < (lengths - 1)[:, None], logp, 0.0)


def _assert_padded_after_end(tokens: torch.Tensor) -> None:
    for row in tokens.tolist():
        end = row.index(END) if END in row else len(row)
        assert all(t not in NEVER_EMITTED for t in row[:end + 1]), row
        assert all(t == PAD for t in row[end + 1:]), row


def test_forward_shapes_and_every_parameter_gets_xe_gradient():
    dec = make_decoder(dropout=0.5).train()
    feats, caps, lengths = make_batch()
    assert dec(feats, caps, lengths).shape == (4, caps.shape[1] - 1, V)
    loss = caption_xe(dec(feats, caps, lengths), caps, lengths)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in dec.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing
    assert dec.words.weight.grad[PAD].abs().sum() == 0


def test_caption_xe_is_cross_entropy_over_targets_ignoring_padding():
    dec = make_decoder()
    feats, caps, lengths = make_batch()
    logits = dec(feats, caps, lengths)  # (B, T-1, V)
    expected = F.cross_entropy(logits.reshape(-1, V), caps[:, 1:].reshape(-1), ignore_index=PAD)
    torch.testing.assert_close(caption_xe(logits, caps, lengths), expected)


def test_log_likelihood_equals_naive_per_caption_loop():
    dec = make_decoder(dropout=0.5).eval()
    feats, caps, lengths = make_batch()
    # One image scored against every caption, as in pair scoring, and each caption with its own image.
    for f in (feats, feats[:1].expand(len(caps), -1)):
        naive = []
        for i, n in enumerate(lengths.tolist()):
            cap = caps[i:i + 1, :n]  # (1, n): no padding
            logp = torch.log_softmax(dec(f[i:i + 1], cap, lengths[i:i + 1])[0], dim=1)  # (n-1, V)
            naive.append(sum(logp[t, cap[0, t + 1]] for t in range(n - 1)) / (n - 1))
        torch.testing.assert_close(dec.log_likelihood(f, caps, lengths), torch.stack(naive))


def test_decode_shapes_and_padding_after_end():
    dec = make_decoder().eval()
    feats = make_batch()[0]
    greedy = dec.greedy(feats)
    beam = dec.beam_search(feats, beam_size=3)
    tokens, logprobs, mask = dec.sample(feats, n=2)
    assert greedy.shape[0] == beam.shape[0] == 4 and max(greedy.shape[1], beam.shape[1]) <= 7
    assert tokens.shape == logprobs.shape == mask.shape and tokens.shape[0] == 8 and tokens.shape[1] <= 7
    assert dec.greedy(feats, max_len=2).shape == (4, 2)
    for out in (greedy, beam, tokens):
        _assert_padded_after_end(out)


def test_beam_size_one_is_greedy():
    for seed in range(5):
        dec = make_decoder(seed, dropout=0.5).eval()
        feats = torch.randn(6, FEAT)
        assert torch.equal(dec.beam_search(feats, beam_size=1), dec.greedy(feats))


def test_batched_beam_search_equals_one_image_at_a_time():
    dec = make_decoder(dropout=0.5).eval()
    feats = torch.randn(5, FEAT)
    batched = dec.beam_search(feats, beam_size=3)
    for i in range(5):
        alone = dec.beam_search(feats[i:i + 1], beam_size=3)[0]
        assert torch.equal(batched[i, :len(alone)], alone) and (batched[i, len(alone):] == PAD).all()


def test_beam_wide_enough_to_keep_every_hypothesis_is_exhaustive_search():
    dec = make_decoder(dropout=0.5, max_len=3).eval()
    feats = torch.randn(2, FEAT)
    words = [t for t in range(V) if t not in NEVER_EMITTED and t != END]  # <unk> and the 8 words
    seqs = [[END, PAD, PAD]] + [[w, END, PAD] for w in words]
    seqs += [[w, x, y] for w in words for x in words for y in words + [END]]  # 1 + 9 + 9*9*10 = 820
    every = torch.tensor(seqs)  # (S, 3)
    beam = dec.beam_search(feats, beam_size=len(seqs))
    for i in range(2):
        scores = policy_log_probs(dec, feats[i:i + 1].expand(len(seqs), -1), every).sum(1)  # (S,)
        best = every[scores.argmax()]
        assert torch.equal(beam[i], best[:beam.shape[1]]) and (best[beam.shape[1]:] == PAD).all()


def test_greedy_is_argmax_of_teacher_forced_logits_on_its_own_output():
    dec = make_decoder(dropout=0.5).eval()
    feats = torch.randn(6, FEAT)
    tokens = dec.greedy(feats)  # (B, L)
    caps, lengths = decoded_as_captions(tokens)
    logits = dec(feats, caps, lengths).index_fill(2, torch.tensor(NEVER_EMITTED), float("-inf"))
    for i, n in enumerate(lengths.tolist()):
        assert torch.equal(logits[i, :n - 1].argmax(1), tokens[i, :n - 1])


def test_sample_mask_covers_exactly_up_to_first_end():
    dec = make_decoder(max_len=6)
    with torch.no_grad():
        dec.out.bias[END] += 1.5  # rows end at various steps, some not at all
    torch.manual_seed(1)
    tokens, logprobs, mask = dec.sample(torch.randn(10, FEAT), n=3)
    outcomes = set()
    for tok, lp, m in zip(tokens.tolist(), logprobs, mask):
        ended = END in tok
        n = tok.index(END) + 1 if ended else len(tok)  # generated tokens, <end> included
        outcomes.add(n if ended else "never")
        assert m.tolist() == [1.0] * n + [0.0] * (len(tok) - n)
        assert (lp[:n] < 0).all() and (lp[n:] == 0).all()
    assert "never" in outcomes and len(outcomes) >= 3
    _assert_padded_after_end(tokens)


def test_sampling_is_seeded_and_low_temperature_gives_greedy_per_image():
    dec = make_decoder(dropout=0.5).eval()
    feats = torch.randn(4, FEAT)
    torch.manual_seed(7)
    first = dec.sample(feats, n=3)
    torch.manual_seed(7)
    second = dec.sample(feats, n=3)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    cold = dec.sample(feats, n=3, temperature=1e-6)[0]  # (B*n, L): image b owns rows b*n .. b*n+n-1
    greedy = dec.greedy(feats)
    assert torch.equal(cold.view(4, 3, -1), greedy[:, None].expand(4, 3, greedy.shape[1]))


def test_overfits_a_few_pairs_by_greedy_and_beam_search():
    feats, caps, lengths = make_batch(word_counts=(4, 2, 6), seed=3)
    dec = make_decoder(dropout=0.1, max_len=10)
    opt = torch.optim.Adam(dec.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        caption_xe(dec(feats, caps, lengths), caps, lengths).backward()
        opt.step()
    dec.eval()
    assert torch.equal(dec.greedy(feats), caps[:, 1:])
    assert torch.equal(dec.beam_search(feats, beam_size=3), caps[:, 1:])


def test_invalid_arguments():
    dec = make_decoder()
    feats = torch.randn(2, FEAT)
    with pytest.raises(ValueError, match="beam_size"):
        dec.beam_search(feats, beam_size=0)
    with pytest.raises(ValueError, match="temperature"):
        dec.sample(feats, temperature=0.0)
    with pytest.raises(ValueError, match="max_len"):
        dec.greedy(feats, max_len=0)


def test_all_beams_hold_the_best_beam_and_mark_finished_ones():
    dec = make_decoder(3).eval()
    feats = make_batch(seed=3)[0]
    best = dec.beam_search(feats, beam_size=4)
    tokens, scores, done = dec.beam_search(feats, beam_size=4, all_beams=True)
    assert tokens.shape[:2] == scores.shape == done.shape == (len(feats), 4)
    top = tokens[torch.arange(len(feats)), scores.argmax(1)][:, :best.shape[1]]
    assert torch.equal(top, best)
    assert torch.equal(done, (tokens == END).any(2))  # finished exactly when <end> was emitted
