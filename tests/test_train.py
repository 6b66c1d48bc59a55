"""attnkit.train: label smoothing and the Noam schedule against their formulas, clipping, and a Trainer
that resumes exactly (after a clean stop, a KeyboardInterrupt in a callback or in the data) and learns."""

import json
import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from attnkit.nn import TransformerConfig, TransformerLM
from attnkit.train import (
    ExponentialMovingAverage,
    NoamSchedule,
    Trainer,
    TrainerConfig,
    clip_grad_norm,
    inverse_sqrt_schedule,
    label_smoothed_cross_entropy,
    lm_loss,
    noam_rate,
    read_history,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the shared machines are oversubscribed; one thread is fastest and deterministic
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------- label smoothing


def _smoothed_loss_by_hand(logits, targets, eps, ignore, over_others):
    """The formula written out token by token in float64 Python arithmetic."""
    total, count = 0.0, 0
    rows = logits.double().reshape(-1, logits.shape[-1]).tolist()  # (B * L, vocab)
    for row, target in zip(rows, targets.reshape(-1).tolist(), strict=True):
        if target == ignore:
            continue
        log_z = math.log(sum(math.exp(x) for x in row))
        log_p = [x - log_z for x in row]
        vocab = len(row)
        if over_others:
            q = [eps / (vocab - 1)] * vocab
            q[target] = 1.0 - eps
        else:
            q = [eps / vocab] * vocab
            q[target] += 1.0 - eps
        total += -sum(qk * lp for qk, lp in zip(q, log_p, strict=True))
        count += 1
    return total / count


@pytest.mark.parametrize("spread", ["others", "all"])
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothing_matches_formula_with_padding(spread, eps):
    torch.manual_seed(1)
    logits = torch.randn(3, 5, 7) * 3
    targets = torch.randint(1, 7, (3, 5))
    targets[0, 3:] = 0  # padding
    targets[2, 4] = 0
    loss = label_smoothed_cross_entropy(logits, targets, smoothing=eps, ignore_index=0, spread=spread)
    expected = _smoothed_loss_by_hand(logits, targets, eps, ignore=0, over_others=spread == "others")
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_label_smoothing_zero_equals_cross_entropy_and_all_equals_torch_label_smoothing():
    torch.manual_seed(2)
    logits, targets = torch.randn(4, 6, 9), torch.randint(0, 9, (4, 6))
    targets[1, :2] = 3
    plain = F.cross_entropy(logits.reshape(-1, 9), targets.reshape(-1), ignore_index=3)
    ours = label_smoothed_cross_entropy(logits, targets, smoothing=0.0, ignore_index=3)
    torch.testing.assert_close(ours, plain)
    smoothed = F.cross_entropy(logits.reshape(-1, 9), targets.reshape(-1), ignore_index=3, label_smoothing=0.2)
    torch.testing.assert_close(label_smoothed_cross_entropy(logits, targets, smoothing=0.2, ignore_index=3,
                                                            spread="all"), smoothed)  # fmt: skip


def test_label_smoothing_ignore_none_counts_every_token():
    logits, targets = torch.randn(2, 3, 5), torch.zeros(2, 3, dtype=torch.long)
    loss = label_smoothed_cross_entropy(logits, targets, smoothing=0.0, ignore_index=None)
    torch.testing.assert_close(loss, F.cross_entropy(logits.reshape(-1, 5), targets.reshape(-1)))


def test_label_smoothing_all_padding_gives_zero_loss_and_zero_grad():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    loss = label_smoothed_cross_entropy(logits, torch.zeros(2, 3, dtype=torch.long), smoothing=0.1)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_label_smoothing_errors_name_argument_and_values():
    with pytest.raises(ValueError, match=r"logits must be \(..., V\).*logits \(2, 3, 5\) and targets \(2, 4\)"):
        label_smoothed_cross_entropy(torch.randn(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"smoothing must be in \[0, 1\), got 1.0"):
        label_smoothed_cross_entropy(torch.randn(2, 5), torch.zeros(2, dtype=torch.long), smoothing=1.0)
    with pytest.raises(TypeError, match="targets must be an integer tensor"):
        label_smoothed_cross_entropy(torch.randn(2, 5), torch.zeros(2))


# ---------------------------------------------------------------------------- schedule


def _paper_lrate(step_num, d_model, warmup):
    """lrate = d_model^-0.5 * min(step_num^-0.5, step_num * warmup_steps^-1.5)  (paper, eq. 3)."""
    return d_model**-0.5 * min(step_num**-0.5, step_num * warmup**-1.5)


def test_noam_rate_hand_computed_values_of_the_paper():
    assert noam_rate(4000, 512, 4000) == pytest.approx(1 / math.sqrt(512 * 4000), rel=1e-12)  # peak 6.98771e-4
    assert noam_rate(1, 512, 4000) == pytest.approx(1 / (math.sqrt(512) * 4000**1.5), rel=1e-12)  # 1.74693e-7
    assert noam_rate(16000, 512, 4000) == pytest.approx(6.98771242e-4 / 2, rel=1e-8)  # 4x the peak step: half
    with pytest.raises(ValueError, match="step_num counts updates from 1, got 0"):
        noam_rate(0, 512, 4000)


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_noam_schedule_lr_follows_formula_at_each_update(scale):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=scale)
    sched = inverse_sqrt_schedule(opt, d_model=64, warmup_steps=10)
    checkpoints = {1, 2, 9, 10, 11, 57, 400}
    for update in range(1, 401):  # the lr in the param group is the one update number `update` uses
        if update in checkpoints:
            assert opt.param_groups[0]["lr"] == pytest.approx(scale * _paper_lrate(update, 64, 10), rel=1e-12)
        opt.step()
        sched.step()


def test_noam_schedule_state_round_trips_through_weights_only_load(tmp_path):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = NoamSchedule(opt, 32, 5)
    for _ in range(7):
        opt.step()
        sched.step()
    torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, tmp_path / "s.pt")
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    opt2 = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched2 = NoamSchedule(opt2, 32, 5)
    opt2.load_state_dict(state["opt"])
    sched2.load_state_dict(state["sched"])
    opt2.step()
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(_paper_lrate(9, 32, 5), rel=1e-12)


def test_noam_schedule_rejects_bad_warmup():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    with pytest.raises(ValueError, match="warmup_steps must be a positive int, got 0"):
        NoamSchedule(opt, 512, 0)


# ---------------------------------------------------------------------------- clipping


def test_clip_grad_norm_scales_to_max_norm_and_keeps_direction():
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(1, requires_grad=True)
    a.grad, b.grad = torch.tensor([3.0, 4.0]), torch.tensor([12.0])  # global norm sqrt(9 + 16 + 144) = 13
    norm = clip_grad_norm([a, b], max_norm=2.6)
    coef = 2.6 / (13.0 + 1e-6)
    assert norm.item() == pytest.approx(13.0)
    torch.testing.assert_close(a.grad, torch.tensor([3.0, 4.0]) * coef)
    torch.testing.assert_close(b.grad, torch.tensor([12.0]) * coef)
    assert math.sqrt(sum(g**2 for g in a.grad.tolist() + b.grad.tolist())) == pytest.approx(2.6, rel=1e-5)


def test_clip_grad_norm_below_threshold_is_identity_and_skips_missing_grads():
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)
    a.grad = torch.tensor([0.3, 0.4])
    assert clip_grad_norm([a, b], max_norm=1.0).item() == pytest.approx(0.5)
    assert a.grad.tolist() == pytest.approx([0.3, 0.4]) and b.grad is None
    with pytest.raises(ValueError, match="max_norm must be a number > 0, got 0"):
        clip_grad_norm([a], max_norm=0)


# ---------------------------------------------------------------------------- Trainer


def test_trainer_config_validates_fields():
    with pytest.raises(ValueError, match="max_steps must be a positive int, got 0"):
        TrainerConfig(max_steps=0)
    with pytest.raises(ValueError, match=r"grad_clip must be a number > 0 \(not NaN\) or None, got -1"):
        TrainerConfig(grad_clip=-1)
    with pytest.raises(TypeError, match="out_dir must be a str path"):
        TrainerConfig(out_dir=123)


VOCAB = 13


def _random_batch(step):
    """Draws from all three global RNGs, so an exact resume must restore each of them."""
    batch = int(np.random.randint(2, 5))
    length = random.randint(5, 9)
    return torch.randint(3, VOCAB, (batch, length))


class _Batches:
    """A re-iterable with a fixed order (5 batches per epoch) that can raise KeyboardInterrupt once."""

    def __init__(self, interrupt_at=None):
        gen = torch.Generator().manual_seed(11)
        self.batches = [torch.randint(3, VOCAB, (3, 8), generator=gen) for _ in range(5)]
        self.interrupt_at, self.served = interrupt_at, 0

    def __iter__(self):
        for batch in self.batches:
            if self.served == self.interrupt_at:
                self.interrupt_at = None
                raise KeyboardInterrupt
            self.served += 1
            yield batch


def _trainer(out_dir, data, *, max_steps, model_seed=0, log_every=1, callbacks=(), eval_fn=None, eval_every=0,
             max_minutes=None, ema_decay=None):
    torch.manual_seed(model_seed)
    cfg = TransformerConfig(vocab_size=VOCAB, d_model=16, num_heads=2, d_ff=32, num_encoder_layers=0,
                            num_decoder_layers=1, dropout=0.2, attention_dropout=0.1)  # fmt: skip
    model = TransformerLM(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=2.0, betas=(0.9, 0.98), eps=1e-9)
    config = TrainerConfig(max_steps=max_steps, log_every=log_every, checkpoint_every=4, eval_every=eval_every,
                           grad_clip=0.5, out_dir=str(out_dir), seed=5, max_minutes=max_minutes,
                           ema_decay=ema_decay)  # fmt: skip
    return Trainer(model, opt, loss_fn=lm_loss(smoothing=0.1), data=data, config=config, eval_fn=eval_fn,
                   scheduler=inverse_sqrt_schedule(opt, 16, 4), callbacks=callbacks, progress=False)  # fmt: skip


def _losses(history):
    return [(r["step"], r["loss"], r["lr"], r["tokens"]) for r in history if r["kind"] == "train"]


def _resume_and_finish(out_dir, data, max_steps, log_every=1):
    trainer = _trainer(out_dir, data, max_steps=max_steps, model_seed=99, log_every=log_every)  # other init
    step = trainer.resume()
    return step, trainer.fit(), trainer


def _assert_same_run(reference, resumed_history, resumed_trainer):
    ref_history, ref_trainer = reference
    assert _losses(resumed_history) == _losses(ref_history)  # equal to the float bit
    resumed = resumed_trainer.model.state_dict().items()
    for (name, a), (_, b) in zip(ref_trainer.model.state_dict().items(), resumed, strict=True):
        assert torch.equal(a, b), name


@pytest.fixture(scope="module")
def reference_random(tmp_path_factory):
    trainer = _trainer(tmp_path_factory.mktemp("ref"), _random_batch, max_steps=11)
    return trainer.fit(), trainer


@pytest.fixture(scope="module")
def reference_batches(tmp_path_factory):
    trainer = _trainer(tmp_path_factory.mktemp("ref_it"), _Batches(), max_steps=12)
    return trainer.fit(), trainer


def test_trainer_resume_after_clean_stop_matches_uninterrupted_run(tmp_path, reference_random):
    _trainer(tmp_path, _random_batch, max_steps=6).fit()
    step, history, trainer = _resume_and_finish(tmp_path, _random_batch, 11)
    assert step == 6
    _assert_same_run(reference_random, history, trainer)
    assert read_history(tmp_path / "history.jsonl") == history


def test_trainer_keyboard_interrupt_in_callback_saves_and_resumes_exactly(tmp_path, reference_random):
    def interrupt(trainer, record):
        if record["step"] == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _trainer(tmp_path, _random_batch, max_steps=11, callbacks=[interrupt]).fit()
    assert json.loads((tmp_path / "latest.json").read_text())["step"] == 7
    step, history, trainer = _resume_and_finish(tmp_path, _random_batch, 11)
    assert step == 7
    _assert_same_run(reference_random, history, trainer)


def test_trainer_keyboard_interrupt_in_data_after_rng_use_resumes_exactly(tmp_path, reference_random):
    def data(step):
        batch = _random_batch(step)  # the RNGs advance before the interrupt: the checkpoint must not see that
        if step == 5:
            raise KeyboardInterrupt
        return batch

    with pytest.raises(KeyboardInterrupt):
        _trainer(tmp_path, data, max_steps=11).fit()
    step, history, trainer = _resume_and_finish(tmp_path, _random_batch, 11)
    assert step == 5
    _assert_same_run(reference_random, history, trainer)


def test_trainer_sigint_inside_update_applies_it_whole_then_resumes_exactly(
    tmp_path, reference_random, monkeypatch, sigint_handler
):
    import os
    import signal

    sigint_handler(signal.default_int_handler)  # Ctrl-C as in a terminal, however this process was started

    scheduler_step = NoamSchedule.step

    def step_then_ctrl_c(self):
        scheduler_step(self)
        if self.last_epoch == 6:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C between scheduler.step() and the step counter

    monkeypatch.setattr(NoamSchedule, "step", step_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        _trainer(tmp_path, _random_batch, max_steps=11).fit()
    monkeypatch.undo()
    step, history, resumed = _resume_and_finish(tmp_path, _random_batch, 11)
    assert step == 6
    _assert_same_run(reference_random, history, resumed)


def test_trainer_keyboard_interrupt_in_iterable_resumes_data_position_across_epochs(tmp_path, reference_batches):
    with pytest.raises(KeyboardInterrupt):
        _trainer(tmp_path, _Batches(interrupt_at=7), max_steps=12).fit()  # epoch 1, batch 2
    step, history, trainer = _resume_and_finish(tmp_path, _Batches(), 12)
    assert step == 7
    _assert_same_run(reference_batches, history, trainer)


def test_trainer_resume_mid_log_window_reproduces_window_means(tmp_path):
    reference = _trainer(tmp_path / "ref", _random_batch, max_steps=9, log_every=3)
    ref_history = reference.fit()

    def interrupt(trainer, record):
        if record["step"] == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _trainer(tmp_path / "run", _random_batch, max_steps=9, log_every=3, callbacks=[interrupt]).fit()
    _, history, trainer = _resume_and_finish(tmp_path / "run", _random_batch, 9, log_every=3)
    assert [r["step"] for r in history] == [3, 6, 9]
    _assert_same_run((ref_history, reference), history, trainer)


def test_trainer_eval_hook_runs_in_eval_mode_and_is_logged(tmp_path):
    calls = []

    def eval_fn(model, step):
        calls.append((step, model.training, torch.is_grad_enabled()))
        return {"val_score": step / 10, "val_loss": torch.tensor(0.5)}

    trainer = _trainer(tmp_path, _random_batch, max_steps=5, log_every=5, eval_fn=eval_fn, eval_every=2)
    history = trainer.fit()
    assert calls == [(2, False, False), (4, False, False)]
    evals = [r for r in history if r["kind"] == "eval"]
    assert evals == [{"kind": "eval", "step": 2, "val_score": 0.2, "val_loss": 0.5},
                     {"kind": "eval", "step": 4, "val_score": 0.4, "val_loss": 0.5}]  # fmt: skip
    assert trainer.model.training and read_history(tmp_path / "history.jsonl") == history


def test_trainer_keeps_one_checkpoint_and_refuses_fresh_run_over_it(tmp_path):
    _trainer(tmp_path, _random_batch, max_steps=9).fit()  # checkpoints at 4, 8 and the end (9)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-00000009"]
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]
    with pytest.raises(FileExistsError, match="already holds a checkpoint; call trainer.resume"):
        _trainer(tmp_path, _random_batch, max_steps=9).fit()


def test_trainer_max_minutes_stops_with_a_checkpoint(tmp_path):
    trainer = _trainer(tmp_path, _random_batch, max_steps=1000, max_minutes=1e-9)  # the budget is spent at once
    trainer.fit()
    assert trainer.stop_reason == "max_minutes" and trainer.step == 1
    assert (tmp_path / "checkpoints" / "step-00000001" / "trainer.json").is_file()


def test_trainer_request_stop_ends_fit_after_the_update_with_a_checkpoint(tmp_path):
    stop_at_3 = lambda trainer, record: record["step"] == 3 and trainer.request_stop("budget")  # noqa: E731
    trainer = _trainer(tmp_path, _random_batch, max_steps=1000, callbacks=[stop_at_3])
    trainer.fit()
    assert trainer.stop_reason == "budget" and trainer.step == 3
    assert (tmp_path / "checkpoints" / "step-00000003" / "trainer.json").is_file()


# ---------------------------------------------------------------------- weight average
def test_ema_matches_the_written_out_recursion_over_the_weight_trajectory():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).double()  # parameters and buffers
    ema = ExponentialMovingAverage(model, decay=0.9)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    expected = {n: t.detach().clone() for n, t in model.state_dict().items() if t.is_floating_point()}
    for t in range(1, 31):
        opt.zero_grad()
        model(torch.randn(5, 3, dtype=torch.float64)).pow(2).sum().backward()
        opt.step()
        ema.update(model)
        d = min(0.9, (1 + t) / (10 + t))  # the ramp, then the decay
        for n, w in model.state_dict().items():
            if n in expected:
                expected[n] = d * expected[n] + (1 - d) * w
    for n, want in expected.items():
        torch.testing.assert_close(ema.shadow[n], want, rtol=0, atol=1e-12)
    before = [p.detach().clone() for p in model.parameters()]
    with ema.applied(model):
        torch.testing.assert_close(model[0].weight, expected["0.weight"], rtol=0, atol=1e-12)
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))  # own weights are back


def test_ema_rejects_a_bad_decay():
    with pytest.raises(ValueError, match=r"decay must be a number in \(0, 1\), e.g. 0.995, got 1.5"):
        ExponentialMovingAverage(torch.nn.Linear(2, 2), decay=1.5)
    with pytest.raises(ValueError, match="ema_decay must be in"):
        TrainerConfig(ema_decay=0.0)


def test_trainer_resume_keeps_the_weight_average_exact(tmp_path):
    reference = _trainer(tmp_path / "ref", _random_batch, max_steps=9, ema_decay=0.8)
    reference.fit()
    _trainer(tmp_path / "run", _random_batch, max_steps=5, ema_decay=0.8).fit()
    resumed = _trainer(tmp_path / "run", _random_batch, max_steps=9, model_seed=99, ema_decay=0.8)
    resumed.resume()
    resumed.fit()
    assert resumed.ema.updates == reference.ema.updates == 9
    for name, want in reference.ema.shadow.items():
        assert torch.equal(resumed.ema.shadow[name], want), name
    without = _trainer(tmp_path / "run", _random_batch, max_steps=12)
    with pytest.raises(ValueError, match="saved with a weight average but this Trainer has ema_decay=None"):
        without.resume()


def test_trainer_rejects_one_shot_iterator_and_bad_loss():
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="one-shot iterator or generator cannot be resumed"):
        Trainer(model, opt, loss_fn=lambda m, b: m(b).sum(), data=iter([torch.zeros(2)]), progress=False)
    trainer = Trainer(model, opt, loss_fn=lambda m, b: m(b), data=lambda step: torch.zeros(3, 2), progress=False,
                      config=TrainerConfig(max_steps=1))  # fmt: skip
    with pytest.raises(TypeError, match=r"loss_fn must return a scalar tensor or \(loss, tokens\), got Tensor\(3, 2\)"):
        trainer.fit()


def test_trainer_learns_copy_task_lm():
    """Decoder-only copy: [BOS x1..x6 SEP x1..x6]; loss on the copied half must fall below 0.1."""
    n, vocab, bos, sep = 6, 12, 1, 2
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=vocab, d_model=32, num_heads=4, d_ff=64, num_encoder_layers=0,
                            num_decoder_layers=2, dropout=0.0, positional="rotary")  # fmt: skip
    model = TransformerLM(cfg)

    def data(step):
        x = torch.randint(3, vocab, (32, n), generator=torch.Generator().manual_seed(step))
        return torch.cat([torch.full((32, 1), bos), x, torch.full((32, 1), sep), x], dim=1)  # (32, 2n + 2)

    def loss_fn(model, ids):
        targets = ids[:, 1:].clone()  # (32, 2n + 1)
        targets[:, :n] = 0  # the random first half cannot be predicted: ignore it
        return label_smoothed_cross_entropy(model(ids[:, :-1]), targets, smoothing=0.0), int((targets != 0).sum())

    opt = torch.optim.Adam(model.parameters(), lr=1.0, betas=(0.9, 0.98), eps=1e-9)
    trainer = Trainer(model, opt, loss_fn=loss_fn, data=data, scheduler=inverse_sqrt_schedule(opt, 32, 50),
                      config=TrainerConfig(max_steps=80, log_every=10), progress=False)  # fmt: skip
    history = trainer.fit()
    assert history[0]["loss"] > 1.5  # about log(9) at the start
    assert history[-1]["loss"] < 0.1


def test_seq2seq_loss_shifts_target_and_counts_real_tokens():
    from attnkit.nn import Transformer
    from attnkit.train import seq2seq_loss

    torch.manual_seed(3)
    model = Transformer(TransformerConfig(vocab_size=VOCAB, d_model=16, num_heads=2, d_ff=32, num_encoder_layers=1,
                                          num_decoder_layers=1, dropout=0.0)).eval()  # fmt: skip
    src, tgt = torch.tensor([[5, 6, 7, 0]]), torch.tensor([[1, 8, 9, 2, 0]])  # BOS 8 9 EOS PAD
    loss, tokens = seq2seq_loss(smoothing=0.1)(model, (src, tgt))
    expected = _smoothed_loss_by_hand(model(src, tgt[:, :-1]).detach(), tgt[:, 1:], 0.1, ignore=0, over_others=True)
    assert tokens == 3 and loss.item() == pytest.approx(expected, rel=1e-5)


def test_trainer_progress_bar_runs(tmp_path):
    trainer = _trainer(tmp_path, _random_batch, max_steps=3)
    trainer.progress = True
    assert [r["step"] for r in trainer.fit()] == [1, 2, 3]


@pytest.fixture
def sigint_handler():
    """Install a SIGINT handler for one test, whatever the process started with (a background job of a
    shell starts with SIGINT ignored), and put the original back afterwards."""
    import signal

    original = signal.getsignal(signal.SIGINT)
    yield lambda handler: signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGINT, original)


def test_sigint_during_update_is_deferred_until_update_ends(sigint_handler):
    import os
    import signal

    from attnkit.train.trainer import _sigint_deferred

    sigint_handler(signal.default_int_handler)
    done = []
    with pytest.raises(KeyboardInterrupt):
        with _sigint_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("update finished")
    assert done == ["update finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigint_ignored_before_an_update_stays_ignored(sigint_handler):
    import os
    import signal

    from attnkit.train.trainer import _sigint_deferred

    sigint_handler(signal.SIG_IGN)
    done = []
    with _sigint_deferred():  # no KeyboardInterrupt: the process chose to ignore SIGINT
        os.kill(os.getpid(), signal.SIGINT)
        done.append("update finished")
    assert done == ["update finished"]
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


# ---------------------------------------------------------------------------- trainer state on disk: no pickle


def _strict_json(path):
    def refuse(constant):
        raise ValueError(f"{path.name} holds {constant}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_trainer_checkpoint_is_safetensors_and_json_only(tmp_path):
    from safetensors import safe_open

    _trainer(tmp_path, _random_batch, max_steps=4).fit()
    ckpt = tmp_path / "checkpoints" / "step-00000004"
    assert sorted(p.name for p in ckpt.iterdir()) == ["config.json", "model.safetensors", "trainer.json",
                                                      "trainer.safetensors"]  # fmt: skip
    for path in ckpt.iterdir():
        head = path.read_bytes()[:2]
        assert head != b"PK" and head[:1] != b"\x80", f"{path.name} is a torch zip or a pickle"
        if path.suffix == ".json":
            _strict_json(path)
        else:
            with safe_open(str(path), framework="pt") as f:
                assert list(f.keys())
    with safe_open(str(ckpt / "trainer.safetensors"), framework="pt") as f:
        rng = f.get_tensor("torch_rng")
        assert rng.dtype == torch.uint8 and any(k.startswith("optimizer.state.") for k in f.keys())
    meta = _strict_json(ckpt / "trainer.json")
    assert meta["format_version"] == 2 and meta["state"]["optimizer"]["param_groups"][0]["betas"] == {
        "__tuple__": [0.9, 0.98]}  # fmt: skip


def _make_legacy(ckpt):
    """Rewrite a checkpoint as attnkit wrote it before format 2: the state pickled in trainer.pt."""
    from attnkit.train.state import read_checkpoint

    _, meta, state = read_checkpoint(ckpt)
    torch.save(state, ckpt / "trainer.pt")
    (ckpt / "trainer.safetensors").unlink()
    (ckpt / "trainer.json").write_text(json.dumps({**meta, "format_version": 1}))


def test_trainer_resume_of_legacy_pickle_checkpoint_refuses_then_converts_exactly(tmp_path, reference_random):
    from attnkit.train.state import convert_legacy_checkpoint

    _trainer(tmp_path, _random_batch, max_steps=6).fit()
    ckpt = tmp_path / "checkpoints" / "step-00000006"
    _make_legacy(ckpt)
    with pytest.raises(ValueError, match=r"holds trainer.pt, the pickled trainer state.*convert_legacy_checkpoint"):
        _trainer(tmp_path, _random_batch, max_steps=11).resume()
    assert convert_legacy_checkpoint(tmp_path) == ckpt
    assert not (ckpt / "trainer.pt").exists() and (ckpt / "trainer.safetensors").is_file()
    step, history, trainer = _resume_and_finish(tmp_path, _random_batch, 11)
    assert step == 6
    _assert_same_run(reference_random, history, trainer)


def test_trainer_checkpoint_files_follow_umask(tmp_path):
    import os

    old = os.umask(0o027)
    try:
        _trainer(tmp_path, _random_batch, max_steps=4).fit()
    finally:
        os.umask(old)
    ckpt = tmp_path / "checkpoints" / "step-00000004"
    assert oct(ckpt.stat().st_mode & 0o777) == oct(0o750)
    for path in [*ckpt.iterdir(), tmp_path / "latest.json", tmp_path / "history.jsonl"]:
        assert oct(path.stat().st_mode & 0o777) == oct(0o640), path.name


def test_statefile_round_trips_optimizer_shapes_and_refuses_objects():
    from attnkit.train import statefile

    shared = torch.arange(4.0)
    state = {"state": {0: {"step": torch.tensor(3.0), "m": shared}, 1: {"m": shared[:2]}},
             "groups": [{"betas": (0.9, 0.98), "lr": float("inf"), "foreach": None, "nesterov": False, "name": "a"}],
             "rng": [torch.tensor([1, 2], dtype=torch.uint8)], "__tuple__": 1}  # fmt: skip
    tree, tensors = statefile.split(state)
    json.loads(json.dumps(tree, allow_nan=False))  # strict JSON: inf is tagged
    back = statefile.join(json.loads(json.dumps(tree)), tensors)
    assert back["state"][0]["step"].item() == 3.0 and list(back["state"]) == [0, 1]
    assert torch.equal(back["state"][1]["m"], torch.tensor([0.0, 1.0])) and back["groups"][0]["betas"] == (0.9, 0.98)
    assert back["groups"][0]["lr"] == math.inf and back["__tuple__"] == 1 and back["rng"][0].dtype == torch.uint8
    with pytest.raises(TypeError, match=r"trainer state: groups.0.fn is a function; only tensors"):
        statefile.split({"groups": [{"fn": lambda: 0}]})


@pytest.mark.parametrize("name", ["attnkit.train.statefile", "attnkit.train.state"])
def test_trainer_state_docstring_examples_run(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("name", ["grad_clip", "max_minutes"])
def test_trainer_config_rejects_nan_budgets(name):
    with pytest.raises(ValueError, match=rf"{name} must be a number > 0 \(not NaN\) or None, got nan"):
        TrainerConfig(**{name: float("nan")})


@pytest.mark.filterwarnings("ignore:get_state and legacy can only be used with the MT19937")  # numpy's own note
def test_capture_rng_refuses_a_numpy_generator_whose_state_is_not_the_mt19937_tuple():
    """Checkpoints save numpy's legacy (MT19937) state tuple; another bit generator gets a clear TypeError."""
    from attnkit.train.state import capture_rng

    previous = np.random.get_bit_generator()
    np.random.set_bit_generator(np.random.PCG64(0))
    try:
        with pytest.raises(TypeError, match="numpy's global generator is PCG64; expected MT19937"):
            capture_rng()
    finally:
        np.random.set_bit_generator(previous)
    assert isinstance(capture_rng()["numpy"]["keys"], list)  # back to MT19937
