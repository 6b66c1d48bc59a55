"""Repetition control in attnkit.generate: no-repeat n-grams and the CTRL repetition penalty.

Oracles: Hugging Face's ``NoRepeatNGramLogitsProcessor`` and ``RepetitionPenaltyLogitsProcessor``
(transformers is a dev dependency), and decoding by full recomputation without a KV cache
with those processors applied to the whole sequence in the test.
"""

import pytest
import torch

from attnkit.generate import GenerationConfig, beam_search, generate, greedy, left_pad, sample
from attnkit.generate.repetition import History, banned_tokens
from attnkit.generate.search import filter_logits
from attnkit.nn import TransformerConfig
from attnkit.nn.transformer import Transformer, TransformerLM

transformers = pytest.importorskip("transformers")
from transformers import NoRepeatNGramLogitsProcessor, RepetitionPenaltyLogitsProcessor  # noqa: E402

V = 11


def _lm(seed=0):
    torch.manual_seed(seed)
    cfg = TransformerConfig(vocab_size=V, d_model=16, num_heads=2, d_ff=32, num_encoder_layers=0,
                            num_decoder_layers=2, dropout=0.0, positional="rotary")  # fmt: skip
    return TransformerLM(cfg).double().eval()


def _hf(ids: list[int], scores: torch.Tensor, n: int, penalty: float) -> torch.Tensor:
    """Hugging Face's processors, in the order its generate() applies them (penalty, then n-gram ban)."""
    input_ids = torch.tensor([ids])
    if penalty != 1.0:
        scores = RepetitionPenaltyLogitsProcessor(penalty)(input_ids, scores)
    if n > 0:
        scores = NoRepeatNGramLogitsProcessor(n)(input_ids, scores)
    return scores


def _repeated(seq: list[int], n: int, start: int = 0) -> bool:
    """Whether an n-gram ending at position ``start`` or later occurred before in ``seq``."""
    grams = [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]
    return any(grams[j] in grams[:j] for j in range(len(grams)) if j + n - 1 >= start)


# ----------------------------------------------------------------------------- the processors
@pytest.mark.parametrize("n, penalty", [(1, 1.0), (2, 1.0), (3, 1.0), (0, 1.3), (0, 0.7), (2, 1.5), (4, 2.0)])
def test_history_processing_matches_hugging_face_processors(n, penalty):
    g = torch.Generator().manual_seed(n * 10 + int(penalty * 10))
    for length in (0, 1, 2, 5, 17):
        ids = torch.randint(0, 4, (length,), generator=g).tolist()  # 4 distinct tokens: many repeats
        scores = torch.randn(1, V, generator=g, dtype=torch.float64)
        history = History([ids], V, no_repeat_ngram_size=n, repetition_penalty=penalty)
        assert torch.equal(history.process(scores.clone()), _hf(ids, scores.clone(), n, penalty)), (length, ids)


def test_history_updated_step_by_step_equals_history_built_at_once():
    g = torch.Generator().manual_seed(0)
    prompt, steps = [1, 2, 1], torch.randint(0, 3, (12,), generator=g).tolist()
    grown = History([prompt, prompt[:1]], V, no_repeat_ngram_size=2, repetition_penalty=1.2)
    for t in steps:
        grown.append(torch.tensor([t, t]))
    scores = torch.randn(2, V, generator=g)
    built = History([prompt + steps, prompt[:1] + steps], V, no_repeat_ngram_size=2, repetition_penalty=1.2)
    assert torch.equal(grown.process(scores), built.process(scores))


def test_banned_tokens_by_hand():
    assert banned_tokens([7, 8, 9, 7, 8], 3) == {9}
    assert banned_tokens([7, 8, 7, 8, 7], 2) == {8}
    assert banned_tokens([7, 7, 7], 1) == {7}
    assert banned_tokens([1, 2], 3) == set()


# ----------------------------------------------------------------------------- decoding against recomputation
def _oracle_decode(model, prompt, steps, n, penalty, choose):
    """Full recomputation each step, Hugging Face's processors on prompt + generated, then ``choose``."""
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            logits = model(torch.tensor([seq]))[:, -1]  # (1, V)
            seq.append(int(choose(_hf(seq, logits, n, penalty))))
    return seq[len(prompt) :]


@pytest.mark.parametrize("n, penalty", [(2, 1.0), (0, 1.5), (3, 1.3), (1, 1.0)])
def test_greedy_with_repetition_control_matches_recomputed_oracle(n, penalty):
    model, prompt = _lm(), [3, 4, 3, 5]
    steps = 6 if n == 1 else 12  # n = 1 forbids every token seen: at most V - |prompt tokens| new ones
    out = greedy(model, torch.tensor([prompt]), max_new_tokens=steps, ignore_eos=True, no_repeat_ngram_size=n,
                 repetition_penalty=penalty)  # fmt: skip
    expected = _oracle_decode(model, prompt, steps, n, penalty, lambda s: s.argmax(dim=-1)[0])
    assert out[0].tolist() == expected
    if n:
        assert not _repeated(prompt + expected, n, start=len(prompt))


def test_greedy_without_control_repeats_on_this_model():
    """The case above is a real test: unconstrained greedy decoding of this model repeats bigrams."""
    out = greedy(_lm(), torch.tensor([[3, 4, 3, 5]]), max_new_tokens=12, ignore_eos=True)[0].tolist()
    assert _repeated([3, 4, 3, 5] + out, 2)


def test_left_padded_rows_decode_as_they_would_alone():
    model, prompts = _lm(), [[3, 4, 3, 5], [6, 2], [1]]
    batch = greedy(model, left_pad(prompts, model.config.pad_id), max_new_tokens=8, ignore_eos=True,
                   no_repeat_ngram_size=2, repetition_penalty=1.2)  # fmt: skip
    for row, prompt in zip(batch, prompts, strict=True):
        alone = greedy(model, torch.tensor([prompt]), max_new_tokens=8, ignore_eos=True, no_repeat_ngram_size=2,
                       repetition_penalty=1.2)  # fmt: skip
        assert row.tolist() == alone[0].tolist()


def test_sampling_with_repetition_control_matches_oracle_drawing_with_the_same_generator():
    model, prompt, steps = _lm(1), [2, 3, 2], 10
    out = sample(model, torch.tensor([prompt]), max_new_tokens=steps, ignore_eos=True, temperature=0.7, top_p=0.9,
                 seed=5, no_repeat_ngram_size=2, repetition_penalty=1.3)  # fmt: skip
    g = torch.Generator().manual_seed(5)

    def draw(scores):
        probs = torch.softmax(filter_logits(scores, 0.7, None, 0.9), dim=-1)
        return torch.multinomial(probs, 1, generator=g)[0, 0]

    expected = _oracle_decode(model, prompt, steps, 2, 1.3, draw)
    assert out[0].tolist() == expected and not _repeated(prompt + expected, 2, start=len(prompt))


@pytest.mark.parametrize("n", [2, 3])
def test_beam_search_hypotheses_never_repeat_an_ngram(n):
    model, prompt = _lm(2), [3, 4, 3, 5]
    results = beam_search(model, torch.tensor([prompt]), max_new_tokens=10, beam_size=4, num_return=4,
                          ignore_eos=True, no_repeat_ngram_size=n)  # fmt: skip
    assert len(results[0]) == 4
    for h in results[0]:
        assert not _repeated(prompt + h.tokens.tolist(), n, start=len(prompt))


def test_beam_size_one_without_length_penalty_is_greedy_with_the_same_control():
    model, prompt = _lm(3), torch.tensor([[3, 4, 3, 5]])
    options = dict(max_new_tokens=10, ignore_eos=True, no_repeat_ngram_size=2, repetition_penalty=1.4)
    beam = beam_search(model, prompt, beam_size=1, length_penalty=0.0, **options)[0][0].tokens
    assert beam.tolist() == greedy(model, prompt, **options)[0].tolist()


def test_encoder_decoder_counts_only_generated_tokens():
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=V, d_model=16, num_heads=2, d_ff=32, num_encoder_layers=1,
                            num_decoder_layers=1, dropout=0.0)  # fmt: skip
    model = Transformer(cfg).double().eval()
    out = generate(model, torch.tensor([[5, 6, 7, 8]]), strategy="greedy", max_new_tokens=10, ignore_eos=True,
                   no_repeat_ngram_size=2)[0].tolist()  # fmt: skip
    assert not _repeated(out, 2)


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(no_repeat_ngram_size=-1), "no_repeat_ngram_size must be an int >= 0, got -1"),
        (dict(no_repeat_ngram_size=2.5), "no_repeat_ngram_size must be an int >= 0, got 2.5"),
        (dict(repetition_penalty=0.0), "repetition_penalty must be > 0, got 0.0; 1.0 is off"),
    ],
)
def test_repetition_options_are_validated(options, match):
    with pytest.raises(ValueError, match=match):
        GenerationConfig(**options)
