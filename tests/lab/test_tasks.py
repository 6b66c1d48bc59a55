"""Task generators against evaluators written separately (attnkit.lab.tasks), plus hand-checked cases."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnkit.lab.tasks import (
    IGNORE,
    InductionTask,
    ListOpsTask,
    RecallTask,
    TaskBatch,
    induction_answers,
    insert_distractors,
    listops_value,
    recall_answers,
)

FEW = settings(max_examples=max(5, settings.default.max_examples // 4), deadline=None)


@st.composite
def recall_tasks(draw):
    pairs = draw(st.integers(1, 4))
    return RecallTask(vocab_size=draw(st.integers(2 * pairs + 2, 40)), num_pairs=pairs,
                      distance=draw(st.integers(2 * pairs, 40)), random_non_queries=draw(st.booleans()),
                      shuffle_queries=draw(st.booleans()))  # fmt: skip


@FEW
@given(task=recall_tasks(), seed=st.integers(0, 10**6))
def test_recall_labels_match_independent_evaluator(task, seed):
    batch = task.generate(8, seed=seed)
    assert batch.inputs.shape == (8, task.length)
    assert torch.equal(recall_answers(batch.inputs, task.num_pairs), batch.labels)


@FEW
@given(task=recall_tasks(), seed=st.integers(0, 10**6))
def test_recall_keys_in_first_half_values_in_second(task, seed):
    batch = task.generate(8, seed=seed)
    half = task.vocab_size // 2
    pairs = batch.inputs[:, : 2 * task.num_pairs]
    assert bool(((pairs[:, 0::2] >= 1) & (pairs[:, 0::2] < half)).all())
    assert bool(((pairs[:, 1::2] >= half) & (pairs[:, 1::2] < task.vocab_size)).all())
    keys = pairs[:, 0::2]
    assert all(len(set(row)) == len(row) for row in keys.tolist())  # distinct keys: a unique answer


def _query_distances(inputs: torch.Tensor, labels: torch.Tensor) -> list[int]:
    """For every supervised position, how far back the same token first occurred (found by search)."""
    out = []
    for seq, lab in zip(inputs.tolist(), labels.tolist(), strict=True):
        for t, y in enumerate(lab):
            if y != IGNORE:
                out.append(t - seq.index(seq[t]))
    return out


def test_recall_unshuffled_queries_are_exactly_distance_after_their_keys():
    task = RecallTask(vocab_size=32, num_pairs=3, distance=20, shuffle_queries=False)
    batch = task.generate(50, seed=1)
    assert set(_query_distances(batch.inputs, batch.labels)) == {20}


def test_recall_shuffled_query_distance_averages_distance_within_band():
    task = RecallTask(vocab_size=32, num_pairs=3, distance=20)
    distances = _query_distances(*_fields(task.generate(400, seed=2)))
    assert min(distances) >= 20 - 4 and max(distances) <= 20 + 4 and len(set(distances)) > 1
    assert sum(distances) / len(distances) == 20  # each row's distances sum to 3 * 20 exactly


def _fields(batch: TaskBatch):
    return batch.inputs, batch.labels


def test_recall_hand_written_sequence():
    inputs = torch.tensor([[3, 9, 5, 12, 7, 5, 1, 3]])  # pairs (3, 9), (5, 12); queries 5 at 5 and 3 at 7
    expected = [IGNORE] * 5 + [12, IGNORE, 9]
    assert recall_answers(inputs, num_pairs=2)[0].tolist() == expected


def test_recall_generate_is_seeded():
    task = RecallTask()
    a, b, c = task.generate(4, seed=7), task.generate(4, seed=7), task.generate(4, seed=8)
    assert torch.equal(a.inputs, b.inputs) and not torch.equal(a.inputs, c.inputs)


@FEW
@given(fraction=st.sampled_from([0.1, 0.25, 0.5]), seed=st.integers(0, 1000))
def test_recall_with_distractors_matches_evaluator_that_skips_them(fraction, seed):
    task = RecallTask(vocab_size=24, num_pairs=3, distance=12, distractor_fraction=fraction)
    batch = task.generate(6, seed=seed)
    assert batch.distractor is not None
    share = batch.distractor.float().mean().item()
    assert abs(share - fraction) <= 1 / batch.inputs.shape[1]
    assert torch.equal(recall_answers(batch.inputs, task.num_pairs, batch.distractor), batch.labels)


def test_insert_distractors_keeps_tokens_and_labels_in_order():
    base = RecallTask(vocab_size=16, num_pairs=2, distance=6).generate(5, seed=3)
    out = insert_distractors(base, 0.4, seed=0, tokens=(100, 110))
    assert out.inputs.shape[1] == round(base.inputs.shape[1] / 0.6)
    assert out.distractor is not None
    for row in range(5):
        kept = ~out.distractor[row]
        assert out.inputs[row, kept].tolist() == base.inputs[row].tolist()
        assert out.labels[row, kept].tolist() == base.labels[row].tolist()
        assert bool((out.inputs[row, ~kept] >= 100).all()) and bool((out.labels[row, ~kept] == IGNORE).all())


@FEW
@given(vocab=st.integers(3, 30), distance=st.integers(2, 30), extra=st.integers(1, 10), seed=st.integers(0, 10**6))
def test_induction_labels_match_independent_evaluator(vocab, distance, extra, seed):
    task = InductionTask(vocab_size=vocab, distance=distance, length=distance + extra)
    batch = task.generate(6, seed=seed)
    assert torch.equal(induction_answers(batch.inputs), batch.labels)
    for seq in batch.inputs.tolist():
        assert [i for i, t in enumerate(seq) if t == seq[-1]] == [len(seq) - 1 - distance, len(seq) - 1]


@pytest.mark.parametrize(("text", "value"), [
    ("[MAX 2 9 [MIN 4 7 ] 0 ]", 9),
    ("[MED 1 2 3 4 ]", 2),  # LRA: int(np.median) = int(2.5)
    ("[MED 7 [SM 5 7 ] 9 ]", 7),  # SM 5 7 = 12 mod 10 = 2; median of 7 2 9
    ("[SM [MAX 9 8 ] [MIN 3 5 ] 1 ]", 3),  # 9 + 3 + 1 = 13
    ("4", 4),
])  # fmt: skip
def test_listops_value_hand_computed(text, value):
    from attnkit.lab.tasks import LISTOPS_TOKENS

    assert listops_value([LISTOPS_TOKENS.index(w) for w in text.split()]) == value


@FEW
@given(seed=st.integers(0, 10**6), low=st.integers(0, 20), width=st.integers(4, 40))
def test_listops_labels_match_stack_evaluator_and_lengths(seed, low, width):
    task = ListOpsTask(min_length=low, max_length=low + width)
    batch = task.generate(5, seed=seed)
    lengths = (batch.inputs != 0).sum(dim=1)
    assert bool(((lengths > low) & (lengths < low + width)).all())
    for row, n in zip(range(5), lengths.tolist(), strict=True):
        supervised = (batch.labels[row] != IGNORE).nonzero().flatten().tolist()
        assert supervised == [n - 1]  # the answer sits at the last real token
        assert batch.labels[row, n - 1].item() == listops_value(batch.inputs[row].tolist())


def test_listops_default_lengths_and_class_balance_not_degenerate():
    batch = ListOpsTask().generate(200, seed=0)
    labels = batch.labels[batch.labels != IGNORE]
    assert len(set(labels.tolist())) == 10  # all ten classes occur


def test_task_config_errors_name_the_argument():
    with pytest.raises(ValueError, match="distance must be >= 2 \\* num_pairs"):
        RecallTask(num_pairs=4, distance=6)
    with pytest.raises(ValueError, match="max_length"):
        ListOpsTask(min_length=10, max_length=11)
