"""torch.compile(fullgraph=True): attention() on every backend, MultiHeadAttention and TransformerLM
trace into one graph with no graph break and print nothing; the compiled results equal eager ones.

Compiling is slow on two shared cores, so the shapes are tiny and most cases use dynamo's ``eager``
backend (the graph capture, which is where graph breaks happen) or ``aot_eager`` (adds AOTAutograd's
functionalization and the backward graph); one test runs inductor end to end.
"""

import warnings

import pytest
import torch
from torch._dynamo.utils import counters

from attnkit import masks
from attnkit.functional import attention
from attnkit.functional.reference import reference_attention
from attnkit.functional.tiled import Band, TiledCall, _work_items
from attnkit.nn import MultiHeadAttention, TransformerConfig, TransformerLM

POSITION_MASKS = {  # masks whose tile plan follows from Python ints
    "none": None,
    "causal": masks.causal(),
    "sliding": masks.sliding_window(5),
    "prefix": masks.prefix_lm(4),
    "causal&sliding|prefix": (masks.causal() & masks.sliding_window(5, causal=False)) | masks.prefix_lm(2),
}
TENSOR_MASKS = {  # masks built from tensor values
    "padding": masks.padding(torch.tensor([19, 6])),
    "document": masks.document(torch.tensor([0] * 8 + [1] * 11)),
    "dense&causal": masks.dense(torch.arange(19)[None, :] % 3 != 1) & masks.causal(),
}


def compiled(fn, backend="eager"):
    """``fn`` compiled with fullgraph=True (any graph break raises) on a fresh dynamo cache."""
    torch._dynamo.reset()
    counters.clear()
    return torch.compile(fn, fullgraph=True, backend=backend)


def breaks() -> int:
    return sum(counters["graph_break"].values())


def qkv(B=2, H=4, Hkv=2, Lq=19, Lk=19, D=8, dtype=torch.float32, grad=False):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(B, h, L, D, generator=g, dtype=dtype).requires_grad_(grad)
            for h, L in ((H, Lq), (Hkv, Lk), (Hkv, Lk))]  # fmt: skip


def _torch_deprecation(w: warnings.WarningMessage) -> bool:
    """A DeprecationWarning torch raises inside its own tracing machinery (hidden by Python's default filters)."""
    return issubclass(w.category, DeprecationWarning) and "/torch/" in w.filename


def oracle(q, k, v, mask):
    """The reference in float64 (the spec), with GQA heads repeated."""
    G = q.shape[1] // k.shape[1]
    k64, v64 = (t.double().repeat_interleave(G, dim=1) for t in (k, v))
    return reference_attention(q.double(), k64, v64, mask)[0]


@pytest.mark.parametrize("mask_name", sorted(POSITION_MASKS))
@pytest.mark.parametrize("backend", ["auto", "sdpa", "tiled", "reference"])
def test_attention_compiles_in_one_graph_for_position_masks(backend, mask_name, capfd):
    mask = POSITION_MASKS[mask_name]
    q, k, v = qkv(Lq=7 if mask_name == "causal" else 19)  # causal also with Lq != Lk (bottom-right)
    fn = compiled(lambda q, k, v: attention(q, k, v, mask, backend=backend))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = fn(q, k, v)
    assert breaks() == 0
    assert capfd.readouterr().err == ""  # dynamo prints graph-break warnings to stderr
    assert [str(w.message) for w in seen if not _torch_deprecation(w)] == []
    torch.testing.assert_close(out, attention(q, k, v, mask, backend=backend), rtol=0, atol=1e-6)
    torch.testing.assert_close(out.double(), oracle(q, k, v, mask), rtol=0, atol=1e-5)


@pytest.mark.parametrize("mask_name", sorted(TENSOR_MASKS))
@pytest.mark.parametrize("backend", ["auto", "tiled"])
def test_attention_compiles_in_one_graph_for_tensor_masks(backend, mask_name, capfd):
    """Their tiles follow from tensor values: under compile auto picks sdpa, and tiled skips no tile."""
    mask = TENSOR_MASKS[mask_name]
    q, k, v = qkv()
    fn = compiled(lambda q, k, v: attention(q, k, v, mask, backend=backend))
    out = fn(q, k, v)
    assert breaks() == 0 and capfd.readouterr().err == ""
    torch.testing.assert_close(out.double(), oracle(q, k, v, mask), rtol=0, atol=1e-5)


def test_auto_compiles_tensor_masks_at_lengths_where_eager_would_count_tiles():
    """At Lq * Lk >= TILED_MIN_PAIRS eager auto reads the mask's tile codes; a graph cannot, so it picks sdpa."""
    q, k, v = qkv(B=1, H=2, Hkv=1, Lq=600, Lk=600)
    for mask in (masks.padding(torch.tensor([450])), masks.sliding_window(64) & masks.padding(torch.tensor([450]))):
        out = compiled(lambda q, k, v: attention(q, k, v, mask))(q, k, v)  # noqa: B023 (called at once)
        assert breaks() == 0
        torch.testing.assert_close(out.double(), oracle(q, k, v, mask), rtol=0, atol=1e-5)


@pytest.mark.parametrize("mask_name", ["causal", "sliding"])
def test_tiled_forward_and_backward_compile_with_aot_autograd(mask_name):
    """aot_eager adds functionalization and the backward graph; L=200 makes sliding run as a band."""
    mask = POSITION_MASKS[mask_name]
    q, k, v = qkv(B=1, H=2, Hkv=1, Lq=200, Lk=200, grad=True)
    if mask_name == "sliding":
        call = TiledCall.build(q, k, mask)
        assert any(isinstance(item, Band) for grp in call.plan.groups for item in _work_items(grp, call))
    fn = compiled(lambda q, k, v: attention(q, k, v, mask, backend="tiled"), backend="aot_eager")
    out = fn(q, k, v)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    assert breaks() == 0
    expected = oracle(q, k, v, mask)
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=1e-5)
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    want = torch.autograd.grad(oracle(q64, k64, v64, mask).square().sum(), (q64, k64, v64))
    for got, ref in zip(grads, want, strict=True):
        torch.testing.assert_close(got.double(), ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize("backend", ["auto", "tiled"])
def test_multi_head_attention_compiles_in_one_graph(backend, capfd):
    torch.manual_seed(0)
    mha = MultiHeadAttention(4, 16, num_kv_heads=2, backend=backend).eval()
    x = torch.randn(2, 9, 16)
    fn = compiled(mha, backend="aot_eager")
    with torch.no_grad():
        for mask in (None, masks.causal(), masks.sliding_window(3)):
            torch.testing.assert_close(fn(x, mask=mask), mha(x, mask=mask), rtol=0, atol=1e-6)
    assert breaks() == 0 and capfd.readouterr().err == ""


def tiny_lm(positional="rotary", backend="auto", seed=0, layers=2):
    torch.manual_seed(seed)
    cfg = TransformerConfig(vocab_size=31, d_model=16, num_heads=4, num_kv_heads=2, d_ff=32, num_encoder_layers=0,
                            num_decoder_layers=layers, positional=positional, backend=backend, dropout=0.0)  # fmt: skip
    return TransformerLM(cfg).eval()


@pytest.mark.parametrize(("positional", "backend"), [("rotary", "tiled"), ("alibi", "auto"), ("sinusoidal", "sdpa")])
def test_transformer_lm_compiles_in_one_graph(positional, backend, capfd):
    lm = tiny_lm(positional, backend=backend)
    ids = torch.randint(0, 31, (2, 11), generator=torch.Generator().manual_seed(1))
    fn = compiled(lm, backend="aot_eager")
    with torch.no_grad():  # inference: AOTAutograd traces no backward for the parameters
        torch.testing.assert_close(fn(ids), lm(ids), rtol=0, atol=1e-5)
        window = masks.sliding_window(4)
        torch.testing.assert_close(fn(ids, window), lm(ids, window), rtol=0, atol=1e-5)
    assert breaks() == 0 and capfd.readouterr().err == ""


@pytest.mark.slow
def test_multi_head_attention_compiles_with_inductor_forward_and_backward(capfd):
    """The default backend end to end (generated C++ kernels): outputs and gradients equal eager ones."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(2, 8, dropout=0.0, backend="tiled")
    x = torch.randn(1, 9, 8, requires_grad=True)
    fn = compiled(mha, backend="inductor")
    out = fn(x, mask=masks.causal())
    grads = torch.autograd.grad(out.square().sum(), [x, *mha.parameters()])
    want_out = mha(x, mask=masks.causal())
    want = torch.autograd.grad(want_out.square().sum(), [x, *mha.parameters()])
    assert breaks() == 0 and capfd.readouterr().err == ""
    torch.testing.assert_close(out, want_out, rtol=1e-5, atol=1e-6)
    for got, ref in zip(grads, want, strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
