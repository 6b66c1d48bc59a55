"""attnkit.generate: greedy, beam search and sampling on the KV cache, against oracles written here.

Oracles: decoding by full recomputation without a cache, exhaustive search over every
sequence of a tiny vocabulary, and the model's softmax filtered in the test.
"""

import itertools
import math

import pytest
import torch

from attnkit import masks
from attnkit.generate import GenerationConfig, beam_search, generate, greedy, left_pad, sample
from attnkit.nn import TransformerConfig
from attnkit.nn.transformer import Transformer, TransformerLM

PAD, BOS, EOS = 0, 1, 2


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one intra-op thread is ~100x faster than two on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(vocab=13, layers=2, positional="sinusoidal", **kw):
    return TransformerConfig(vocab_size=vocab, d_model=16, num_heads=2, d_ff=32, num_encoder_layers=kw.pop("enc", 0),
                             num_decoder_layers=layers, dropout=0.0, positional=positional, **kw)  # fmt: skip


def _lm(vocab=13, layers=2, positional="sinusoidal", seed=0):
    torch.manual_seed(seed)
    return TransformerLM(_config(vocab, layers, positional)).double().eval()


def _seq2seq(vocab=13, layers=2, seed=0):
    torch.manual_seed(seed)
    return Transformer(_config(vocab, layers, enc=layers)).double().eval()


def _src():
    return torch.tensor([[5, 6, 7, 8, 9], [10, 11, 3, PAD, PAD], [4, 12, 6, 6, PAD]])  # right-padded source


def _prompts():
    return [[5, 6, 7, 8], [9], [10, 11, 3], [4, 12, 6, 7]]


# ----------------------------------------------------------------------------- oracles
def _next_logits(model, src_or_prompt, tokens):
    """Logits (V,) of the token after ``tokens``, recomputed from scratch (no cache, batch of one)."""
    with torch.no_grad():
        if isinstance(model, TransformerLM):
            return model(torch.tensor([list(src_or_prompt) + list(tokens)]))[0, -1]
        return model(torch.tensor([list(src_or_prompt)]), torch.tensor([[BOS] + list(tokens)]))[0, -1]


def _naive_greedy(model, src_or_prompt, n, eos):
    tokens = []
    for _ in range(n):
        tokens.append(int(_next_logits(model, src_or_prompt, tokens).argmax()))
        if tokens[-1] == eos:
            break
    return tokens


def _log_prob(model, src_or_prompt, seq):
    """log P(seq | input) by teacher forcing, from scratch."""
    with torch.no_grad():
        if isinstance(model, TransformerLM):
            logits = model(torch.tensor([list(src_or_prompt) + list(seq)]))[0, len(src_or_prompt) - 1 : -1]
        else:
            logits = model(torch.tensor([list(src_or_prompt)]), torch.tensor([[BOS] + list(seq[:-1])]))[0]
        return float(torch.log_softmax(logits, -1)[torch.arange(len(seq)), torch.tensor(seq)].sum())


def _gnmt(length, alpha):
    return ((5 + length) / 6) ** alpha


def _exhaustive(model, src_or_prompt, vocab, max_len, alpha, eos=EOS):
    """Every hypothesis (ends at its first EOS, or is cut at max_len) with its penalized score, best first."""
    scored = []
    for n in range(1, max_len + 1):
        seqs = [s for s in itertools.product(range(vocab), repeat=n)
                if eos not in s[:-1] and (n == max_len or s[-1] == eos)]  # fmt: skip
        log_probs = _log_probs_same_length(model, src_or_prompt, torch.tensor(seqs))
        scored += [(lp / _gnmt(n, alpha), list(s)) for lp, s in zip(log_probs.tolist(), seqs, strict=True)]
    return sorted(scored, key=lambda s: -s[0])


def _log_probs_same_length(model, src_or_prompt, seqs):
    """log P(seq | input) for seqs (M, n), teacher-forced in one batch without a cache."""
    M, n = seqs.shape
    inputs = torch.tensor([list(src_or_prompt)]).expand(M, -1)
    with torch.no_grad():
        if isinstance(model, TransformerLM):
            logits = model(torch.cat((inputs, seqs), 1))[:, inputs.shape[1] - 1 : -1]
        else:
            logits = model(inputs, torch.cat((torch.full((M, 1), BOS), seqs[:, :-1]), 1))
    return torch.log_softmax(logits, -1).gather(2, seqs[:, :, None])[:, :, 0].sum(1)


def _rows(out, eos=EOS):
    """(B, T) ids -> per row the tokens up to and including the first EOS, checking pad_id after it."""
    rows = []
    for row in out.tolist():
        n = row.index(eos) + 1 if eos in row else len(row)
        assert all(t == PAD for t in row[n:]), f"tokens after EOS must be pad_id: {row}"
        rows.append(row[:n])
    return rows


def _unpadded(prompt_row):
    row = prompt_row.tolist()
    return row[next(i for i, t in enumerate(row) if t != PAD) :]


# ----------------------------------------------------------------------------- greedy
@pytest.mark.parametrize("positional", ["sinusoidal", "learned", "rotary", "alibi"])
def test_greedy_lm_left_padded_batch_matches_unpadded_recompute_per_row(positional):
    model = _lm(positional=positional)
    prompts = left_pad(_prompts(), PAD)
    out = greedy(model, prompts, max_new_tokens=6, ignore_eos=True)
    assert out.shape == (4, 6)
    for row, prompt in zip(out.tolist(), _prompts(), strict=True):
        assert row == _naive_greedy(model, prompt, 6, eos=None)


def test_greedy_seq2seq_with_cache_matches_full_recompute():
    model = _seq2seq()
    out = greedy(model, _src(), max_new_tokens=7, ignore_eos=True)
    for row, src in zip(out.tolist(), _src().tolist(), strict=True):
        assert row == _naive_greedy(model, src, 7, eos=None)


@pytest.mark.parametrize("kind", ["lm", "seq2seq"])
def test_greedy_stops_rows_at_eos_and_pads_after(kind):
    model = _lm() if kind == "lm" else _seq2seq()
    inputs = left_pad(_prompts(), PAD) if kind == "lm" else _src()
    raw = [_unpadded(r) for r in inputs] if kind == "lm" else inputs.tolist()
    eos = int(greedy(model, inputs, max_new_tokens=3, ignore_eos=True)[0, 2])  # row 0 meets it by step 3
    out = greedy(model, inputs, max_new_tokens=8, eos_id=eos)
    assert _rows(out, eos) == [_naive_greedy(model, r, 8, eos=eos) for r in raw]
    assert len(_rows(out, eos)[0]) <= 3


def test_greedy_lm_prompt_mask_keeps_pad_token_inside_text():
    """A prompt whose real text starts with pad_id: prompt_mask says which tokens are text."""
    model = _lm()
    prompts = torch.tensor([[PAD, 5, 6], [PAD, PAD, 7]])
    keep = torch.tensor([[True, True, True], [False, False, True]])
    out = greedy(model, prompts, max_new_tokens=4, ignore_eos=True, prompt_mask=keep)
    assert out.tolist() == [_naive_greedy(model, [PAD, 5, 6], 4, None), _naive_greedy(model, [7], 4, None)]


# ----------------------------------------------------------------------------- beam search
@pytest.mark.parametrize("kind", ["lm", "seq2seq"])
@pytest.mark.parametrize("alpha", [0.0, 0.6, 3.0])
def test_beam_search_with_every_hypothesis_in_the_beam_is_exhaustive_search(kind, alpha):
    vocab, max_len = 6, 3
    model = _lm(vocab, layers=1) if kind == "lm" else _seq2seq(vocab, layers=1)
    inputs = torch.tensor([[3, 4, 5], [PAD, 5, 3]]) if kind == "lm" else torch.tensor([[3, 4, 5], [5, 3, PAD]])
    beam = vocab * (vocab - 1) ** (max_len - 1)  # every extension of every live hypothesis fits in the beam
    result = beam_search(model, inputs, max_new_tokens=max_len, beam_size=beam, length_penalty=alpha, num_return=3)
    for hyps, row in zip(result, inputs.tolist(), strict=True):
        row = row[row.index(next(t for t in row if t != PAD)) :] if kind == "lm" else row
        best = _exhaustive(model, row, vocab, max_len, alpha)[:3]
        assert [h.tokens.tolist() for h in hyps] == [seq for _, seq in best]
        assert [h.score for h in hyps] == pytest.approx([s for s, _ in best], abs=1e-9)
        assert all(h.finished == (h.tokens[-1].item() == EOS) for h in hyps)


def test_beam_search_keeps_searching_while_a_live_beam_can_still_win_under_length_penalty():
    """EOS is the most likely first token, but with alpha=5 a 3-token hypothesis scores higher: the search
    must not stop at step 1 (a live beam's bound is log P / lp(max_new_tokens), not lp(t + 1))."""
    vocab, max_len, alpha, prompt = 6, 3, 5.0, [3, 4, 5]
    model = _lm(vocab, layers=1, seed=11)
    eos = int(_next_logits(model, prompt, []).argmax())
    best = _exhaustive(model, prompt, vocab, max_len, alpha, eos)[0]
    assert len(best[1]) == max_len  # the scenario: the winner is not the early EOS
    beam = vocab * (vocab - 1) ** (max_len - 1)
    hyp = beam_search(model, torch.tensor([prompt]), max_new_tokens=max_len, beam_size=beam, length_penalty=alpha,
                      eos_id=eos)[0][0]  # fmt: skip
    assert hyp.tokens.tolist() == best[1] and hyp.score == pytest.approx(best[0], abs=1e-9)


@pytest.mark.parametrize("kind", ["lm", "seq2seq"])
def test_beam_search_size_one_without_length_penalty_is_greedy(kind):
    model = _lm() if kind == "lm" else _seq2seq()
    inputs = left_pad(_prompts(), PAD) if kind == "lm" else _src()
    for eos in (EOS, None):
        out = greedy(model, inputs, max_new_tokens=8, eos_id=eos, ignore_eos=eos is None)
        result = beam_search(model, inputs, max_new_tokens=8, beam_size=1, length_penalty=0.0, eos_id=eos,
                             ignore_eos=eos is None)  # fmt: skip
        assert [r[0].tokens.tolist() for r in result] == _rows(out, eos)


@pytest.mark.parametrize("kind", ["lm", "seq2seq"])
def test_beam_search_batched_matches_per_row_and_scores_match_recomputed_log_prob(kind):
    model = _lm() if kind == "lm" else _seq2seq()
    inputs = left_pad(_prompts(), PAD) if kind == "lm" else _src()
    batched = beam_search(model, inputs, max_new_tokens=6, beam_size=3, num_return=2)
    for b, hyps in enumerate(batched):
        raw = _unpadded(inputs[b]) if kind == "lm" else inputs[b].tolist()
        alone = beam_search(model, torch.tensor([raw]), max_new_tokens=6, beam_size=3, num_return=2)[0]
        assert [h.tokens.tolist() for h in hyps] == [h.tokens.tolist() for h in alone]
        assert [h.score for h in hyps] == pytest.approx([h.score for h in alone], abs=1e-9)
        assert hyps[0].score >= hyps[1].score
        for h in hyps:
            log_p = _log_prob(model, raw, h.tokens.tolist())
            assert h.log_prob == pytest.approx(log_p, abs=1e-9)
            assert h.score == pytest.approx(log_p / _gnmt(len(h.tokens), 0.6), abs=1e-9)


def test_beam_search_keeps_a_hypothesis_finished_at_the_first_step():
    """EOS as the most likely first token: with alpha=0 the one-token hypothesis beats every longer one,
    even though the beam goes on with the live hypotheses after storing it."""
    model = _lm()
    prompt = [5, 6, 7]
    eos = int(_next_logits(model, prompt, []).argmax())
    hyps = beam_search(model, torch.tensor([prompt]), max_new_tokens=5, beam_size=2, length_penalty=0.0,
                       eos_id=eos, num_return=2)[0]  # fmt: skip
    assert hyps[0].tokens.tolist() == [eos] and hyps[0].finished
    assert hyps[0].log_prob == pytest.approx(float(torch.log_softmax(_next_logits(model, prompt, []), -1)[eos]))
    assert hyps[1].score <= hyps[0].score and eos not in hyps[1].tokens.tolist()[:-1]


def test_beam_search_ignore_eos_returns_full_length_unfinished_hypotheses():
    hyps = beam_search(_seq2seq(), _src(), max_new_tokens=4, beam_size=3, num_return=3, ignore_eos=True)
    assert all(len(h.tokens) == 4 and not h.finished for row in hyps for h in row)


# ----------------------------------------------------------------------------- sampling
def _filtered_softmax(logits, temperature=1.0, top_k=None, top_p=None):
    """The sampling distribution, written out: softmax(z / T), keep top-k, keep the top-p nucleus, renormalize."""
    p = torch.softmax(logits / temperature, -1)
    order = sorted(range(len(p)), key=lambda i: -float(p[i]))
    kept = order[:top_k] if top_k is not None else order
    if top_p is not None:
        q = p[kept] / p[kept].sum()
        mass, nucleus = 0.0, []
        for i, qi in zip(kept, q.tolist(), strict=True):
            nucleus.append(i)
            mass += qi
            if mass >= top_p:
                break
        kept = nucleus
    out = torch.zeros_like(p)
    out[kept] = p[kept] / p[kept].sum()
    return out


@pytest.mark.parametrize(
    "temperature, top_k, top_p",
    [(1.0, None, None), (0.5, None, None), (2.0, None, None), (1.0, 4, None), (1.0, None, 0.3), (1.0, None, 0.6),
     (1.0, None, 0.9), (1.5, 6, 0.8)],
)
def test_sample_first_token_frequencies_match_filtered_softmax(temperature, top_k, top_p):
    model, prompt, n = _lm(), [5, 6, 7], 20000
    expected = _filtered_softmax(_next_logits(model, prompt, []), temperature, top_k, top_p)
    out = sample(model, torch.tensor([prompt] * n), max_new_tokens=1, temperature=temperature, top_k=top_k,
                 top_p=top_p, seed=1234)  # fmt: skip
    freq = torch.bincount(out[:, 0], minlength=len(expected)).double() / n
    assert torch.all(freq[expected == 0] == 0), "filtered-out tokens must never be drawn"
    tolerance = 5 * torch.sqrt(expected * (1 - expected) / n) + 1e-12  # 5 standard errors per token
    assert torch.all((freq - expected).abs() <= tolerance), (freq, expected)


@pytest.mark.parametrize("kind", ["lm", "seq2seq"])
def test_sample_top_k_one_is_greedy(kind):
    model = _lm() if kind == "lm" else _seq2seq()
    inputs = left_pad(_prompts(), PAD) if kind == "lm" else _src()
    expected = greedy(model, inputs, max_new_tokens=6)
    assert torch.equal(sample(model, inputs, max_new_tokens=6, top_k=1, temperature=0.7, seed=3), expected)


def test_sample_is_reproducible_with_seed_or_generator():
    model, inputs = _lm(), left_pad(_prompts(), PAD)
    a = sample(model, inputs, max_new_tokens=8, seed=11, ignore_eos=True)
    b = sample(model, inputs, max_new_tokens=8, seed=11, ignore_eos=True)
    c = sample(model, inputs, max_new_tokens=8, generator=torch.Generator().manual_seed(11), ignore_eos=True)
    d = sample(model, inputs, max_new_tokens=8, seed=12, ignore_eos=True)
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.equal(a, d)


def test_sample_stops_rows_at_eos_and_pads_after():
    out = sample(_seq2seq(), _src().repeat(20, 1), max_new_tokens=30, temperature=2.0, seed=0)
    rows = _rows(out)  # checks pad_id after every EOS
    assert any(r[-1] == EOS and len(r) < out.shape[1] for r in rows)


# ----------------------------------------------------------------------------- front door
def test_generate_dispatches_to_each_strategy():
    model, src = _seq2seq(), _src()
    assert torch.equal(generate(model, src, max_new_tokens=5), greedy(model, src, max_new_tokens=5))
    cfg = GenerationConfig(strategy="sample", max_new_tokens=5, top_p=0.9, seed=4)
    assert torch.equal(generate(model, src, cfg), sample(model, src, max_new_tokens=5, top_p=0.9, seed=4))
    beams = generate(model, src, cfg, strategy="beam", beam_size=3, num_return=2)
    hyps = beam_search(model, src, max_new_tokens=5, beam_size=3, num_return=2)
    assert beams.shape[0] == 6
    for i, h in enumerate(h for row in hyps for h in row):
        n = len(h.tokens)
        assert beams[i, :n].tolist() == h.tokens.tolist() and all(t == PAD for t in beams[i, n:].tolist())


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda m, x: sample(m, x, max_new_tokens=3, temperature=0.0), ValueError, "temperature must be a float > 0"),
        (lambda m, x: sample(m, x, max_new_tokens=3, top_p=0.0), ValueError, r"top_p must be in \(0, 1\]"),
        (lambda m, x: sample(m, x, max_new_tokens=3, top_p=1.5), ValueError, "top_p"),
        (lambda m, x: sample(m, x, max_new_tokens=3, top_k=0), ValueError, "top_k must be an int >= 1"),
        (lambda m, x: sample(m, x, max_new_tokens=3, seed=1, generator=torch.Generator()), ValueError, "not both"),
        (lambda m, x: beam_search(m, x, max_new_tokens=3, beam_size=0), ValueError, "beam_size must be an int >= 1"),
        (lambda m, x: beam_search(m, x, max_new_tokens=3, beam_size=2, num_return=3), ValueError, "num_return=3"),
        (lambda m, x: greedy(m, x, max_new_tokens=0), ValueError, r"greedy\(\): max_new_tokens must be an int >= 1"),
        (lambda m, x: greedy(m, x, max_new_tokens=3, eos_id=99), ValueError, "outside the vocabulary"),
        (lambda m, x: greedy(torch.nn.Linear(2, 2), x, max_new_tokens=3), TypeError, "Transformer"),
        (lambda m, x: greedy(m.train(), x, max_new_tokens=3), ValueError, r"model\.eval\(\)"),
        (lambda m, x: greedy(m, x[0], max_new_tokens=3), ValueError, r"ids\[None\]"),
        (lambda m, x: greedy(m, x + 50, max_new_tokens=3), ValueError, r"\[0, 13\)"),
        (lambda m, x: greedy(m, torch.tensor([[5, 6, PAD]]), max_new_tokens=3), ValueError, "LEFT"),
        (lambda m, x: greedy(m, x, max_new_tokens=3, src_mask=masks.causal()), ValueError, "prompt_mask"),
        (lambda m, x: generate(m, x, strategy="nucleus"), ValueError, "strategy must be one of"),
        (lambda m, x: generate(m, x, max_tokens=3), TypeError, r"unknown option\(s\) \['max_tokens'\]"),
        (lambda m, x: generate(m, x, generator=torch.Generator()), ValueError, "only used by strategy='sample'"),
    ],
)
def test_generate_rejects_bad_arguments_with_teaching_errors(call, error, match):
    with pytest.raises(error, match=match):
        call(_lm(), torch.tensor([[5, 6, 7]]))


def test_gnmt_length_penalty_matches_the_paper_formula():
    from attnkit.generate import gnmt_length_penalty

    assert gnmt_length_penalty(1, 0.6) == 1.0
    assert gnmt_length_penalty(10, 0.6) == pytest.approx(math.pow(15 / 6, 0.6))
