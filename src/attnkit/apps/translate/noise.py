"""Input noise for translation: seeded misspellings and case changes, and how much they hurt.

The perturbations and the measures of Niu et al., "Evaluating Robustness to Input
Perturbations for Neural Machine Translation" (ACL 2020):

* **misspelling** (:func:`misspell`): each word (whitespace-separated, with at least one
  letter) is, with probability ``p``, edited once — one letter deleted, inserted or
  substituted — so a perturbed word is at Levenshtein distance exactly 1 from the
  original. Digits are never edited (``1955`` -> ``155`` is another year, not a typo); a
  one-character word is never deleted; a substitute differs from the letter it replaces.
  The paper uses ``p = 0.1``.
* **case change** (:func:`change_case`): each sentence is, with probability ``q``,
  written all in upper case or all in lower case (equal chances). The paper uses ``q = 0.5``.

Given clean sources ``x``, perturbed sources ``x'``, references ``y`` and a model's
translations ``t = M(x)`` and ``t' = M(x')``:

* **robustness** ``= BLEU(t', y) / BLEU(t, y)``: the share of the clean quality kept
  under noise (1 = nothing lost);
* **consistency** ``= harmonic mean of BLEU(t, t') and BLEU(t', t)``: how much the two
  translations agree, with no reference needed (BLEU is not symmetric, so both ways).

Example:
    >>> import random
    >>> misspell("twenty one thousand", 1.0, random.Random(0)) != "twenty one thousand"
    True
    >>> Perturbation(misspell=0.1).name, Perturbation(case=0.5).name
    ('misspell 0.1', 'case 0.5')
    >>> round(consistency(["am ersten März zweitausend"], ["am ersten März zweitausend"]), 1)
    100.0
"""

from __future__ import annotations

import dataclasses
import random
import string
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Perturbation", "misspell", "misspell_word", "change_case", "perturb_sentences", "consistency",
           "RobustnessReport", "robustness", "NoisySources", "LETTERS"]  # fmt: skip

LETTERS = string.ascii_lowercase  #: letters drawn for insertions and substitutions
EDITS = ("delete", "insert", "substitute")  #: the one-letter edits of a misspelling


def misspell_word(word: str, rng: random.Random) -> str:
    """``word`` with exactly one letter deleted, inserted or substituted (the edit chosen uniformly).

    Only letters are edited (deleted or replaced); digits and punctuation stay, since a
    changed digit changes the meaning, not the spelling. A word of one character is only
    inserted into or substituted, so no word vanishes; a substitute differs from the letter
    it replaces; an inserted letter may go anywhere in the word.

    Example:
        >>> import random
        >>> rng = random.Random(3)
        >>> sorted({len(misspell_word("seven", rng)) for _ in range(50)})
        [4, 5, 6]
        >>> misspell_word("1955", rng)
        Traceback (most recent call last):
        ...
        ValueError: misspell_word(): word must contain a letter, got '1955'
    """
    letters = [i for i, c in enumerate(word) if c.isalpha()]
    if not letters:
        raise ValueError(f"misspell_word(): word must contain a letter, got {word!r}")
    edit = rng.choice(EDITS if len(word) > 1 else EDITS[1:])
    if edit == "insert":
        i = rng.randrange(len(word) + 1)
        return word[:i] + rng.choice(LETTERS) + word[i:]
    i = rng.choice(letters)
    if edit == "delete":
        return word[:i] + word[i + 1 :]
    replacement = rng.choice([c for c in LETTERS if c != word[i]])
    return word[:i] + replacement + word[i + 1 :]


def misspell(text: str, p: float, rng: random.Random) -> str:
    """Each whitespace-separated word of ``text`` that has a letter, with probability ``p``, misspelled once.

    See :func:`misspell_word`; numbers such as ``1955`` are left alone. Words are rejoined
    with single spaces (the corpora are already in that normal form).

    Example:
        >>> import random
        >>> misspell("one two three", 0.0, random.Random(0))
        'one two three'
        >>> misspell("May 1955", 1.0, random.Random(0)).split()[1]
        '1955'
    """
    _check_probability("misspell", "p", p)
    return " ".join(misspell_word(w, rng) if _has_letter(w) and rng.random() < p else w for w in text.split())


def _has_letter(word: str) -> bool:
    return any(c.isalpha() for c in word)


def change_case(text: str, q: float, rng: random.Random) -> str:
    """With probability ``q``, ``text`` all upper case or all lower case (equal chances); else unchanged.

    Example:
        >>> import random
        >>> change_case("March 3, 2021", 1.0, random.Random(1)) in ("MARCH 3, 2021", "march 3, 2021")
        True
    """
    _check_probability("change_case", "q", q)
    if rng.random() >= q:
        return text
    return text.upper() if rng.random() < 0.5 else text.lower()


def _check_probability(fn: str, name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{fn}(): {name} must be a probability in [0, 1], got {value!r}")


@dataclass(frozen=True)
class Perturbation:
    """A kind and amount of input noise: ``misspell`` per word, then ``case`` per sentence.

    Example:
        >>> import random
        >>> Perturbation()("seven", random.Random(0))  # no noise
        'seven'
        >>> Perturbation(misspell=2.0)
        Traceback (most recent call last):
        ...
        ValueError: Perturbation(): misspell must be a probability in [0, 1], got 2.0
    """

    misspell: float = 0.0  # probability that a word gets one one-letter edit (Niu et al.: 0.1)
    case: float = 0.0  # probability that a sentence becomes all upper or all lower case (Niu et al.: 0.5)

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            _check_probability("Perturbation", field.name, getattr(self, field.name))

    @property
    def name(self) -> str:
        """``"misspell 0.1"``, ``"case 0.5"``, ``"misspell 0.1 + case 0.5"`` or ``"clean"``."""
        parts = [f"{f.name} {getattr(self, f.name):g}" for f in dataclasses.fields(self) if getattr(self, f.name)]
        return " + ".join(parts) or "clean"

    def __call__(self, text: str, rng: random.Random) -> str:
        if self.misspell:
            text = misspell(text, self.misspell, rng)
        if self.case:
            text = change_case(text, self.case, rng)
        return text


def perturb_sentences(sentences: Sequence[str], perturbation: Perturbation, *, seed: int = 0) -> list[str]:
    """Each sentence perturbed with its own generator, seeded by ``(seed, index)``: reproducible, order-independent.

    Example:
        >>> perturb_sentences(["one", "two"], Perturbation(misspell=0.5), seed=1) == perturb_sentences(
        ...     ["one", "two"], Perturbation(misspell=0.5), seed=1)
        True
    """
    return [perturbation(text, random.Random(f"noise:{seed}:{i}")) for i, text in enumerate(sentences)]


def consistency(translations: Sequence[str], perturbed_translations: Sequence[str]) -> float:
    """Niu et al.'s consistency: the harmonic mean of corpus BLEU(t, t') and BLEU(t', t), in percent.

    Example:
        >>> round(consistency(["a b c d e"], ["x y z w v"]), 1)
        0.0
    """
    from .evaluate import score

    forward = score(perturbed_translations, translations).bleu
    backward = score(translations, perturbed_translations).bleu
    return 0.0 if forward + backward == 0 else 2 * forward * backward / (forward + backward)


@dataclass(frozen=True)
class RobustnessReport:
    """One model under one perturbation (BLEU in percent).

    Example:
        >>> RobustnessReport("misspell 0.1", 200, 0.3, 80.0, 60.0, 0.75, 70.0, 12).to_dict()["robustness"]
        0.75
    """

    perturbation: str  # e.g. "misspell 0.1"
    sentences: int  # test pairs translated (clean and perturbed)
    changed: float  # share of sources the perturbation changed
    bleu_clean: float  # BLEU(t, y)
    bleu_perturbed: float  # BLEU(t', y)
    robustness: float | None  # bleu_perturbed / bleu_clean (None when bleu_clean is 0)
    consistency: float  # harmonic mean of BLEU(t, t') and BLEU(t', t)
    translations_changed: int  # sentences whose translation differs from the clean one

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def robustness(
    model, tokenizer, pairs: Sequence[tuple[str, str]], perturbation: Perturbation, *, seed: int = 0,
    beam_size: int = 1, clean_translations: Sequence[str] | None = None,
) -> RobustnessReport:  # fmt: skip
    """Translate the sources of ``pairs`` clean and perturbed; robustness and consistency (Niu et al., 2020).

    ``clean_translations`` reuses the clean translations of an earlier call (same pairs, same beam).

    Example (an untrained model):
        >>> from attnkit.nn import Transformer, TransformerConfig
        >>> from attnkit.apps.translate import SubwordTokenizer
        >>> tok = SubwordTokenizer.train(["one", "eins", "two", "zwei"], vocab_size=30)
        >>> cfg = TransformerConfig(vocab_size=tok.vocab_size, d_model=16, num_heads=2, d_ff=32,
        ...                         num_encoder_layers=1, num_decoder_layers=1)
        >>> r = robustness(Transformer(cfg), tok, [("one", "eins"), ("two", "zwei")], Perturbation(misspell=1.0))
        >>> r.sentences, r.changed
        (2, 1.0)
    """
    from .evaluate import score, translate_batch

    if not pairs:
        raise ValueError("robustness(): pairs is empty; pass (source, reference) test pairs")
    sources, references = [s for s, _ in pairs], [t for _, t in pairs]
    noisy = perturb_sentences(sources, perturbation, seed=seed)
    clean = list(clean_translations) if clean_translations is not None else translate_batch(
        model, tokenizer, sources, beam_size=beam_size)  # fmt: skip
    if len(clean) != len(sources):
        raise ValueError(f"robustness(): clean_translations has {len(clean)} sentences, pairs {len(sources)}")
    perturbed = translate_batch(model, tokenizer, noisy, beam_size=beam_size)
    bleu_clean, bleu_noisy = score(clean, references).bleu, score(perturbed, references).bleu
    return RobustnessReport(
        perturbation=perturbation.name,
        sentences=len(sources),
        changed=round(sum(a != b for a, b in zip(sources, noisy, strict=True)) / len(sources), 4),
        bleu_clean=bleu_clean,
        bleu_perturbed=bleu_noisy,
        robustness=round(bleu_noisy / bleu_clean, 4) if bleu_clean else None,
        consistency=round(consistency(clean, perturbed), 2),
        translations_changed=sum(a != b for a, b in zip(clean, perturbed, strict=True)),
    )


class NoisySources:
    """Trainer data ``step -> Batch``: the batches of ``batches``, every source re-drawn under ``perturbation``.

    The augmentation of ``attnkit translate train --noise p``. The noise of example ``i`` at
    ``step`` comes from a generator seeded by ``(seed, step, i)``: fresh each time a pair is
    seen (every epoch), yet a pure function of the step, so a resumed run sees exactly the
    batches of an uninterrupted one. Batches are planned on the clean lengths; a misspelled
    source may be a few subword tokens longer (cut at ``max_len``), so a batch can pass
    ``max_tokens`` by those few tokens. Targets stay clean.

    Args:
        batches: the clean :class:`~.batching.TokenBatches` (its plan, targets and shard).
        sources: the source sentence of each of ``batches.examples``, as text.
        tokenizer: encodes the perturbed sources.
        perturbation: the noise drawn for each source.
        seed: seeds the noise with the step and the example index.
        max_len: perturbed sources are cut to this many tokens.

    Example:
        >>> from attnkit.apps.translate import SubwordTokenizer
        >>> from attnkit.apps.translate.batching import TokenBatches
        >>> texts = ["one", "two", "three", "four"]
        >>> tok = SubwordTokenizer.train(texts + ["eins", "zwei"], vocab_size=40)
        >>> clean = TokenBatches([(tok.encode(t), [5]) for t in texts], max_tokens=64, min_batch=1)
        >>> noisy = NoisySources(clean, texts, tok, Perturbation(misspell=1.0), seed=0)
        >>> noisy(0).src.shape[0] == clean(0).src.shape[0], bool((noisy(0).src == noisy(0).src).all())
        (True, True)
    """

    def __init__(self, batches, sources: Sequence[str], tokenizer, perturbation: Perturbation, *, seed: int = 0,
                 max_len: int = 128):  # fmt: skip
        if len(sources) != len(batches.examples):
            raise ValueError(f"NoisySources(): {len(sources)} sources for {len(batches.examples)} examples; give "
                             "the source text of every example, in order")  # fmt: skip
        self.batches, self.sources, self.tokenizer = batches, list(sources), tokenizer
        self.perturbation, self.seed, self.max_len = perturbation, seed, max_len

    def __call__(self, step: int):
        from .batching import Batch, collate

        b = self.batches
        indices = b.global_indices(step)
        tokens = sum(b.lengths[i][1] - 1 for i in indices)  # predicted target tokens: ids + EOS (clean targets)
        mine = indices[b.rank :: b.world_size]
        noisy = [self.perturbation(self.sources[i], random.Random(f"augment:{self.seed}:{step}:{i}")) for i in mine]
        ids = [s[: self.max_len] or [self.tokenizer.unk_id] for s in self.tokenizer.encode_batch(noisy)]
        src, tgt = collate([(s, b.examples[i][1]) for s, i in zip(ids, mine, strict=True)], **b.special)
        return Batch(src, tgt, tokens)
