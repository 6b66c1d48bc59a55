"""Abstractive summaries: SmolLM2-135M-Instruct writes the summary through its chat template.

The document goes in one user message after a short instruction; the system
message asks for plain sentences. Decoding is greedy (deterministic) on the KV
cache via :meth:`attnkit.pretrained.ChatModel.generate`, with a budget of 48 tokens
per requested sentence. The 135M model often writes more sentences than asked (or
copies the text): the reply is cut to the requested number of sentences, and a
last sentence left unfinished by the budget is dropped.

Example:
    >>> messages("The cat sat. It purred.", sentences=1)[1]["content"].splitlines()[0]
    'Summarize the following text in 1 sentence.'
"""

from __future__ import annotations

__all__ = ["messages", "generate_summary", "SYSTEM_PROMPT"]

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
    """The model's summary of ``text`` (greedy decoding), stripped.

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
    reply = chat.generate(prompt, max_new_tokens=min(budget, context - n_prompt)).strip()
    return " ".join(_first_sentences(reply, sentences))


def _first_sentences(reply: str, k: int) -> list[str]:
    """At most ``k`` sentences of ``reply``; an unfinished last one (cut by the token budget) is dropped."""
    from .text import split_sentences

    kept = split_sentences(reply)[:k]
    if len(kept) > 1 and not kept[-1].rstrip("\"'”’)").endswith((".", "!", "?", "…")):
        kept = kept[:-1]
    return kept
