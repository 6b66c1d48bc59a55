r"""Parameters, FLOPs and memory of an :class:`~attnkit.cost.Architecture`, in closed form.

**Parameters** are counted per component exactly as attnkit builds the model (biases,
norms, tied weights counted once); tests compare them with ``sum(p.numel())``.

**FLOPs** count matrix multiplications at 2 FLOPs per multiply-add, as
``torch.utils.flop_counter.FlopCounterMode`` does; softmax, norms, activations,
residual adds and embedding look-ups are left out (a few % of the work, and none of it
matmul). Per token and per attention block (h query heads, h_kv key/value heads,
head width d_k, keys seen L_k):

.. math::

    \text{projections} = 2 d (h d_k) + 2 d (2 h_{kv} d_k) + 2 (h d_k) d \;\propto d^2,
    \qquad
    \text{scores} = \underbrace{2 h d_k L_k}_{QK^\top} + \underbrace{2 h d_k L_k}_{PV} \;\propto L \cdot d

plus ``2 d d_ff`` per feed-forward matrix (two, or three for SwiGLU) and ``2 d V`` for the
output projection. Every query is charged every key (dense), as FlopCounterMode and
kernels without block skipping count it; causal attention with tile skipping (the
tiled backend, FlashAttention) does about half of a decoder's score FLOPs.

**Training** = forward + backward. The backward of a matmul ``Y = X W`` is two matmuls
of the same size (``dX = dY W^T``, ``dW = X^T dY``), so projections cost 3x forward.
Attention's backward is 4 matmuls (dP, dV, dQ, dK) when the probabilities were kept
(3x forward, the materialized backends) and 5 when ``QK^T`` is recomputed (3.5x:
FlashAttention, torch SDPA's fused kernels, attnkit's tiled backend; the convention of
``attnkit.bench``). The reported training FLOPs use 3.5x for the scores.

**Memory** in bytes of ``dtype_bytes`` per element: weights, gradients, Adam's two
moments; the activations autograd keeps for the backward, per layer, with the
``L x L`` probabilities materialized (the reference backend keeps three such matrices per
head: scores, probabilities and the copy the batched matmul saves; a fourth with
attention dropout) or tiled (only ``q, k, v``, the output and one log-sum-exp per row);
and the KV cache of decoding (``2 h_kv d_k`` per token and decoder layer).

Example:
    >>> from attnkit.cost import Architecture
    >>> base = Architecture.preset("paper_base")
    >>> parameter_count(base)
    63082496
    >>> f = forward_flops_per_token(base, 1024)   # a Flops: per token, by how each term grows
    >>> f.projections / 1e6, f.scores / 1e6, f.logits / 1e6
    (88.080384, 37.748736, 37.888)
    >>> isinstance(f, Flops), f.total == f.projections + f.scores + f.logits
    (True, True)
    >>> round(crossover_length(base))     # scores overtake projections here
    2389
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .architecture import Architecture

__all__ = [
    "parameter_counts",
    "parameter_count",
    "Flops",
    "forward_flops_per_token",
    "training_flops_per_token",
    "decode_flops",
    "decode_bytes",
    "crossover_length",
    "Memory",
    "memory",
    "activation_bytes_per_layer",
    "kv_cache_bytes_per_token",
    "SCORE_BACKWARD_RECOMPUTE",
    "SCORE_BACKWARD_STORED",
]

SCORE_BACKWARD_RECOMPUTE = 3.5  #: training / forward FLOPs of QK^T and PV when the backward recomputes QK^T
SCORE_BACKWARD_STORED = 3.0  #: ... when the probabilities were kept (materialized backends)
MATMUL_BACKWARD = 3.0  #: training / forward FLOPs of a projection: forward, dX and dW


# ---------------------------------------------------------------------- parameters
def _attention_weights(arch: Architecture) -> dict[str, int]:
    """Parameters of one attention block's W^Q, W^K, W^V, W^O (with biases)."""
    c = arch.config
    q_out, kv_out = c.num_heads * c.d_head, (c.num_kv_heads or c.num_heads) * c.d_head
    b = int(c.bias)
    return {"W^Q": c.d_model * q_out + b * q_out, "W^K": c.d_model * kv_out + b * kv_out,
            "W^V": c.d_model * kv_out + b * kv_out, "W^O": q_out * c.d_model + b * c.d_model}  # fmt: skip


def _feed_forward_weights(arch: Architecture) -> int:
    c = arch.config
    b = int(c.bias)
    up = (2 if c.activation == "swiglu" else 1) * (c.d_model * c.d_ff + b * c.d_ff)  # w_1, or w_gate and w_up
    return up + c.d_ff * c.d_model + b * c.d_model


def _norm_weights(arch: Architecture) -> int:
    c = arch.config
    per_norm = c.d_model * (2 if c.norm == "layernorm" else 1)  # weight and bias; RMSNorm has no bias
    norms = 2 * arch.encoder_layers + (3 if arch.cross_attention else 2) * arch.decoder_layers
    if c.norm_first:  # pre-LN stacks end in a final norm
        norms += (arch.encoder_layers > 0) + (arch.decoder_layers > 0)
    total = norms * per_norm
    return total + (2 * c.d_model if arch.embedding_norm else 0)  # BERT's embedding LayerNorm


def _embedding_weights(arch: Architecture) -> dict[str, int]:
    c = arch.config
    tokens = c.vocab_size * c.d_model
    if arch.kind == "encoder-decoder" and not c.tie_embeddings:
        tokens += c.target_vocab_size * c.d_model  # a separate target table
    tables = 2 if arch.kind == "encoder-decoder" else 1  # Transformer: one learned table per embedding
    positions = tables * c.max_len * c.d_model if c.positional == "learned" else 0
    if arch.kind == "encoder-only" and c.positional == "learned":
        positions = c.max_len * c.d_model  # BERT: one table
    return {"token embeddings": tokens, "position embeddings": positions,
            "token-type embeddings": arch.token_types * c.d_model}  # fmt: skip


def parameter_counts(arch: Architecture) -> dict[str, int]:
    """Parameters per component (tied weights counted once, where they are first built).

    Example:
        >>> counts = parameter_counts(Architecture.preset("paper_base"))
        >>> counts["token embeddings"], counts["W^Q"], counts["output projection"]
        (18944000, 4727808, 0)
    """
    c = arch.config
    blocks = arch.encoder_layers + arch.decoder_layers * (2 if arch.cross_attention else 1)
    counts = {name: n for name, n in _embedding_weights(arch).items()}
    counts.update({name: blocks * n for name, n in _attention_weights(arch).items()})
    counts["feed-forward"] = (arch.encoder_layers + arch.decoder_layers) * _feed_forward_weights(arch)
    counts["norms"] = _norm_weights(arch)
    counts["output projection"] = 0 if c.tie_embeddings or not arch.has_lm_head else c.d_model * c.target_vocab_size
    counts["pooler"] = c.d_model * c.d_model + c.d_model if arch.pooler else 0
    return counts


def parameter_count(arch: Architecture) -> int:
    """The total of :func:`parameter_counts`."""
    return sum(parameter_counts(arch).values())


# ---------------------------------------------------------------------- FLOPs
@dataclass(frozen=True)
class Flops:
    """FLOPs per token, split by how they grow: ``projections`` (∝ d²), ``scores`` (∝ L·d), ``logits`` (∝ d·V)."""

    projections: float  # W^Q, W^K, W^V, W^O and the feed-forward matrices of every layer
    scores: float  # QK^T and PV of every attention block
    logits: float  # the output projection to the vocabulary (BERT: the pooler, once per sequence)

    @property
    def total(self) -> float:
        return self.projections + self.scores + self.logits

    def to_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


def _projection_flops(arch: Architecture) -> float:
    """Forward FLOPs per token of all attention projections and feed-forward networks."""
    blocks = arch.encoder_layers + arch.decoder_layers * (2 if arch.cross_attention else 1)
    attention = 2 * sum(_attention_weights(arch.replace(bias=False)).values())
    ffn = 2 * _feed_forward_weights(arch.replace(bias=False))
    return blocks * attention + (arch.encoder_layers + arch.decoder_layers) * ffn


def _score_flops_per_key(arch: Architecture) -> float:
    """Forward FLOPs per token per key seen, summed over the attention blocks: ``4 h d_k`` each."""
    c = arch.config
    blocks = arch.encoder_layers + arch.decoder_layers * (2 if arch.cross_attention else 1)
    return blocks * 4 * c.num_heads * c.d_head


def _logit_flops(arch: Architecture, L: int) -> float:
    c = arch.config
    if arch.has_lm_head:
        return 2 * c.d_model * c.target_vocab_size
    return 2 * c.d_model * c.d_model / L if arch.pooler else 0.0  # the pooler sees one token per sequence


def forward_flops_per_token(arch: Architecture, L: int) -> Flops:
    """Forward FLOPs per token at sequence length ``L`` (encoder-decoder: source = target = L, per target token).

    Example:
        >>> lm = Architecture.preset("smollm2")
        >>> f = forward_flops_per_token(lm, 2048)
        >>> f.projections == 2 * (parameter_count(lm) - parameter_counts(lm)["token embeddings"]
        ...                       - parameter_counts(lm)["norms"])
        True
    """
    _check_length("forward_flops_per_token", L)
    return Flops(_projection_flops(arch), _score_flops_per_key(arch) * L, _logit_flops(arch, L))


def training_flops_per_token(arch: Architecture, L: int, *, recompute: bool = True) -> Flops:
    """Forward + backward FLOPs per token: 3x the projections and logits, 3.5x the scores (3x with ``recompute=False``).

    Example:
        >>> f = training_flops_per_token(Architecture.preset("paper_base"), 1024, recompute=False)
        >>> f.total / forward_flops_per_token(Architecture.preset("paper_base"), 1024).total
        3.0
    """
    fwd = forward_flops_per_token(arch, L)
    factor = SCORE_BACKWARD_RECOMPUTE if recompute else SCORE_BACKWARD_STORED
    return Flops(MATMUL_BACKWARD * fwd.projections, factor * fwd.scores, MATMUL_BACKWARD * fwd.logits)


def decode_flops(arch: Architecture, context: int, source: int | None = None) -> Flops:
    """FLOPs of one decoding step: one new token attending to ``context`` cached keys (itself included).

    An encoder-decoder's cross-attention also reads ``source`` memory keys (default ``context``);
    the encoder's own work happened once, before decoding, and is not part of a step.

    Example:
        >>> decode_flops(Architecture.preset("smollm2"), 1).logits
        56623104
    """
    _check_length("decode_flops", context)
    if arch.kind == "encoder-only":
        raise ValueError("decode_flops(): an encoder-only model does not decode; choose a decoder architecture")
    c = arch.config
    source = context if source is None else source
    per_key = 4 * c.num_heads * c.d_head
    proj = 2 * sum(_attention_weights(arch.replace(bias=False)).values()) + 2 * _feed_forward_weights(
        arch.replace(bias=False))
    if arch.cross_attention:  # only W^Q and W^O of cross-attention: its keys and values are cached
        weights = _attention_weights(arch.replace(bias=False))
        proj += 2 * (weights["W^Q"] + weights["W^O"])
    scores = per_key * (context + (source if arch.cross_attention else 0))
    return Flops(arch.decoder_layers * proj, arch.decoder_layers * scores, 2 * c.d_model * c.target_vocab_size)


def decode_bytes(arch: Architecture, context: int, source: int | None = None, dtype_bytes: int = 4,
                 batch: int = 1) -> int:  # fmt: skip
    """Bytes one decoding step reads from memory: each weight it multiplies once, plus the KV cache.

    With ``batch`` sequences the weights are read once for all of them, the cache of each.

    A step multiplies one token (matrix-vector products), so unlike a training step its time is
    set by how fast these bytes stream from memory, not by the matmul rate. The weights: every
    decoder layer (cross-attention without W^K and W^V, whose outputs are cached), the final
    norm, the output projection (``d x V``, tied or not) and one embedding row.

    Example:
        >>> lm = Architecture.preset("smollm2")
        >>> weights = (decode_bytes(lm, 1000) - 1000 * kv_cache_bytes_per_token(lm)) // 4
        >>> weights == parameter_count(lm) + 576  # tied: the embedding is read whole as the output projection
        True
    """
    _check_length("decode_bytes", context)
    if arch.kind == "encoder-only":
        raise ValueError("decode_bytes(): an encoder-only model does not decode; choose a decoder architecture")
    c = arch.config
    attention = _attention_weights(arch)
    per_layer = sum(attention.values()) + _feed_forward_weights(arch)
    per_norm = c.d_model * (2 if c.norm == "layernorm" else 1)
    per_layer += (3 if arch.cross_attention else 2) * per_norm
    if arch.cross_attention:
        per_layer += attention["W^Q"] + attention["W^O"]  # cross-attention's W^K, W^V ran once, on the memory
    weights = arch.decoder_layers * per_layer + per_norm * c.norm_first + c.d_model * c.target_vocab_size + c.d_model
    source = context if source is None else source
    cached = kv_cache_bytes_per_token(arch, batch, dtype_bytes) * (context + (source if arch.cross_attention else 0))
    return weights * dtype_bytes + cached


def crossover_length(arch: Architecture) -> float:
    """The length at which the score terms (∝ L·d) equal the projections (∝ d²), the output projection left out.

    For one layer of the paper's shape (d_ff = 4 d, h d_k = d) it is ``24 d² / 4 d = 6 d`` in an encoder
    and ``32 d² / 8 d = 4 d`` in a decoder layer with cross-attention.

    Example:
        >>> crossover_length(Architecture.preset("minilm"))  # 6 x 384
        2304.0
    """
    return _projection_flops(arch) / _score_flops_per_key(arch)


# ---------------------------------------------------------------------- memory
@dataclass(frozen=True)
class Memory:
    """Bytes for one training step or one decoding session of ``batch`` sequences of length ``L``."""

    weights: int  # parameters
    gradients: int  # one gradient per parameter
    adam: int  # Adam's first and second moments
    activations_materialized: int  # per layer (the largest), kept for the backward, L x L probabilities stored
    activations_tiled: int  # per layer, tiled/flash backend: O(L)
    logits: int  # the (batch, L, V) logits and their log-softmax, kept by the loss
    kv_cache_per_token: int  # bytes the KV cache grows by per decoded token (all layers, whole batch)
    kv_cache: int  # at L tokens (encoder-decoder: plus the cross-attention cache of an L-token source)

    def to_dict(self) -> dict:
        return asdict(self)


def _attention_activations(arch: Architecture, L: int, tiled: bool) -> float:
    """Elements one attention block keeps per query token (for the backward)."""
    c = arch.config
    q, kv = c.num_heads * c.d_head, (c.num_kv_heads or c.num_heads) * c.d_head
    inputs = c.d_model + q  # the projections' input x, and W^O's input (the heads concatenated)
    if tiled:
        return inputs + 2 * q + 2 * kv + 2 * c.num_heads  # q, out, k, v, log-sum-exp and row maxima
    matrices = 3 + (c.attention_dropout > 0)  # scores, probabilities, their batched-matmul copy (+ dropout)
    return inputs + q + 2 * kv + matrices * c.num_heads * L + 4 * c.num_heads  # q, k, v, L x L rows, softmax stats


def _ffn_activations(arch: Architecture) -> float:
    c = arch.config
    hidden = {"relu": 1, "gelu": 2, "gelu_tanh": 2, "swiglu": 4}[c.activation]  # relu's output is W_2's input
    return c.d_model + hidden * c.d_ff  # W_1's input and the hidden activations


def activation_bytes_per_layer(arch: Architecture, L: int, batch: int = 1, *, tiled: bool,
                               dtype_bytes: int = 4) -> int:  # fmt: skip
    """Bytes autograd keeps for the backward of the largest layer (a decoder layer when there is one).

    Per token: each norm keeps its input and two statistics; each attention block its
    inputs, ``q, k, v`` and either ``3 h L`` probabilities-sized values (materialized)
    or the output and log-sum-exp (tiled); the feed-forward network its input and
    hidden activations; each residual dropout its mask (torch on CPU keeps it in the
    activation dtype; CUDA's fused dropout keeps one byte, so there this overstates).

    Example:
        >>> base = Architecture.preset("paper_base")
        >>> activation_bytes_per_layer(base, 4096, tiled=False) // activation_bytes_per_layer(base, 4096, tiled=True)
        16
    """
    _check_length("activation_bytes_per_layer", L)
    c = arch.config
    blocks = 2 if arch.cross_attention and arch.decoder_layers else 1
    norms = blocks + 1
    elements = norms * (c.d_model + 2) + blocks * _attention_activations(arch, L, tiled) + _ffn_activations(arch)
    elements += (blocks - 1) * c.d_model  # cross-attention: W^K and W^V read the encoder memory (S = L tokens)
    elements += (blocks + 1) * c.d_model if c.dropout > 0 else 0  # residual dropout masks (CPU: in the dtype)
    return int(batch * L * elements * dtype_bytes)


def kv_cache_bytes_per_token(arch: Architecture, batch: int = 1, dtype_bytes: int = 4) -> int:
    """Bytes of keys and values cached per decoded token, all decoder layers: ``2 h_kv d_k`` each (GQA aware).

    Example:
        >>> kv_cache_bytes_per_token(Architecture.preset("smollm2"))  # 30 layers x 2 x 3 heads x 64 x 4 bytes
        46080
    """
    c = arch.config
    return batch * arch.decoder_layers * 2 * (c.num_kv_heads or c.num_heads) * c.d_head * dtype_bytes


def memory(arch: Architecture, L: int, batch: int = 1, dtype_bytes: int = 4) -> Memory:
    """Weights, gradients, Adam state, activations per layer (materialized vs tiled), logits and KV cache.

    Example:
        >>> m = memory(Architecture.preset("paper_base"), 1024)
        >>> isinstance(m, Memory), m.weights, m.adam == 2 * m.weights
        (True, 252329984, True)
    """
    _check_length("memory", L)
    params = parameter_count(arch)
    per_token = kv_cache_bytes_per_token(arch, batch, dtype_bytes)
    cache = per_token * L * (2 if arch.cross_attention else 1)  # cross-attention caches the L-token source too
    logits = 2 * batch * L * arch.config.target_vocab_size * dtype_bytes if arch.has_lm_head else 0
    return Memory(
        weights=params * dtype_bytes, gradients=params * dtype_bytes, adam=2 * params * dtype_bytes,
        activations_materialized=activation_bytes_per_layer(arch, L, batch, tiled=False, dtype_bytes=dtype_bytes),
        activations_tiled=activation_bytes_per_layer(arch, L, batch, tiled=True, dtype_bytes=dtype_bytes),
        logits=logits, kv_cache_per_token=per_token, kv_cache=cache,
    )  # fmt: skip


def _check_length(owner: str, L) -> None:
    if isinstance(L, bool) or not isinstance(L, int) or L < 1:
        raise ValueError(f"{owner}(): L must be a positive int (tokens), got {L!r}")
