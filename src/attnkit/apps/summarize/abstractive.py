"""Abstractive summaries: SmolLM2-135M-Instruct writes the summary through its chat template.

The document goes in one user message after a short instruction; the system
message asks for plain sentences. Decoding is greedy (deterministic) on the KV
cache via :meth:`attnkit.pretrained.ChatModel.generate`, with a budget of 48 tokens
per requested sentence. The 135M model often writes more sentences than asked (or
copies the text): the reply is cut to the requested number of sentences, and a
last sentence left unfinished by the budget is dropped.

**Repetition.** Plain greedy decoding of the 135M model falls into loops: it wrote
"The above is a simplified version of the above." three times, or the same clause
until the token budget ran out, which is also why a summary took the whole budget
(144 tokens for 3 sentences) instead of stopping at the end of its turn. Decoding
therefore blocks repeated 3-grams (``no_repeat_ngram_size=3``, as fairseq and
Hugging Face use for summarization, :mod:`attnkit.generate.repetition`) over the
prompt and the reply: no phrase of three tokens occurs twice, so no sentence is
repeated and long verbatim copies of the text are impossible.

Example:
    >>> messages("The cat sat. It purred.", sentences=1)[1]["content"].splitlines()[0]
    'Summarize the following text in 1 sentence.'
"""

from __future__ import annotations

__all__ = ["messages", "generate_summary", "SYSTEM_PROMPT", "NO_REPEAT_NGRAM_SIZE"]

NO_REPEAT_NGRAM_SIZE = 3  #: n-gram blocking during decoding (see the module docstring)
SYSTEM_PROMPT = "You are a helpful assistant that writes short, faithful summaries in plain sentences."
_TOKENS_PER_SENTENCE = 48  # generation budget per requested sentence


def messages(text: str, *, sentences: int) -> list[dict[str, str]]:
    """The chat messages that ask for a ``sentences``-sentence summary of ``text``."""
    unit = "sentence" if sentences == 1 else "sentences"
    instruction = f"Summarize the following text in {sentences} {unit}."
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"{instruction}\n\n{text.strip()}"},
    ]


def generate_summary(chat, text: str, *, sentences: int, max_new_tokens: int | None = None) -> str:
    """The model's summary of ``text`` (greedy decoding, no repeated 3-grams), stripped.

    Raises ``ValueError`` when the prompt does not fit the model's context.
    """
    prompt = messages(text, sentences=sentences)
    n_prompt, context = len(chat.prompt_ids(prompt)), chat.model.config.max_len
    budget = max_new_tokens or _TOKENS_PER_SENTENCE * sentences
    if n_prompt + 1 >= context:
        raise ValueError(
            f"summarize(): the text is {n_prompt} tokens with the instruction, but {type(chat).__name__} reads at "
            f"most {context}; use method='extractive' (--extractive), or summarize a shorter part"
        )
    reply = chat.generate(prompt, max_new_tokens=min(budget, context - n_prompt),
                          no_repeat_ngram_size=NO_REPEAT_NGRAM_SIZE).strip()  # fmt: skip
    return " ".join(_first_sentences(reply, sentences))


def _first_sentences(reply: str, k: int) -> list[str]:
    """At most ``k`` sentences of ``reply``; an unfinished last one (cut by the token budget) is dropped."""
    from .text import split_sentences

    kept = split_sentences(reply)[:k]
    if len(kept) > 1 and not kept[-1].rstrip("\"'”’)").endswith((".", "!", "?", "…")):
        kept = kept[:-1]
    return kept
