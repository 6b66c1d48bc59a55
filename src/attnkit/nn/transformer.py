r"""The Transformer: positional encoding + multi-head attention + feed-forward, stacked.

Each layer wraps its sublayers in residual connections (Vaswani et al., 2017, 3.1):

* ``norm_first=False`` (the paper, post-LN): ``x = Norm(x + Dropout(Sublayer(x)))``
* ``norm_first=True`` (pre-LN, the default, stabler to train):
  ``x = x + Dropout(Sublayer(Norm(x)))``, with a final norm after the stack.

:class:`Transformer` is the encoder-decoder of the paper; :class:`TransformerLM`
is a decoder-only language model (GPT/Llama layout). Both decode with a
:class:`DecoderCache` of keys and values.

Shape legend: B batch, S source length, T target length, L length,
d_model width, V vocabulary size.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .. import masks
from ..masks import Mask
from .attention import KVCache, MultiHeadAttention
from .config import TransformerConfig
from .feedforward import FeedForward
from .positional import LearnedPositionalEmbedding, RotaryEmbedding, SinusoidalPositionalEncoding
from .pretrained_io import PretrainedMixin

__all__ = [
    "EncoderLayer",
    "DecoderLayer",
    "Encoder",
    "Decoder",
    "DecoderCache",
    "Transformer",
    "TransformerLM",
    "make_norm",
    "key_padding_mask",
]


def make_norm(kind: str, d_model: int, eps: float) -> nn.Module:
    """``"layernorm"`` or ``"rmsnorm"`` (Zhang & Sennrich, 2019: no mean, no bias)."""
    if kind == "layernorm":
        return nn.LayerNorm(d_model, eps=eps)
    if kind == "rmsnorm":
        return nn.RMSNorm(d_model, eps=eps)
    raise ValueError(f"make_norm(): kind must be 'layernorm' or 'rmsnorm', got {kind!r}")


def key_padding_mask(ids: Tensor, pad_id: int) -> Mask | None:
    """Mask of the keys that are not padding, or None when the batch has no padding.

    Right padding gives a structured :func:`masks.padding` (tiles past the end are
    skipped by the tiled backend); any other layout a dense ``(B, 1, 1, L)`` mask.
    Inside ``torch.compile``/``torch.export`` the mask is always the dense one: which
    case applies depends on the ids' values, which a traced graph cannot branch on.
    """
    real = ids != pad_id  # (B, L)
    if torch.compiler.is_compiling():
        return masks.dense(real[:, None, None, :])  # (B, L) -> (B, 1, 1, L)
    if bool(real.all()):
        return None
    lengths = real.sum(dim=1)  # (B,)
    if torch.equal(real, torch.arange(ids.shape[1], device=ids.device)[None] < lengths[:, None]):
        return masks.padding(lengths)
    return masks.dense(real[:, None, None, :])  # (B, L) -> (B, 1, 1, L)


class _Layer(nn.Module):
    """Residual wiring shared by encoder and decoder layers."""

    norm_first: bool
    dropout: nn.Dropout

    def _residual(self, x: Tensor, norm: nn.Module, sublayer) -> Tensor:
        drop = self.dropout if self.training else _identity  # eval: skip the module call (decoding speed)
        if self.norm_first:
            return x + drop(sublayer(norm(x)))  # pre-LN
        return norm(x + drop(sublayer(x)))  # post-LN (the paper)


def _identity(x: Tensor) -> Tensor:
    return x


def _attention(cfg: TransformerConfig, rotary: RotaryEmbedding | None) -> MultiHeadAttention:
    return MultiHeadAttention(
        cfg.num_heads, cfg.d_model, cfg.d_head, cfg.d_head, cfg.attention_dropout, bias=cfg.bias,
        num_kv_heads=cfg.num_kv_heads, rotary=rotary, alibi=cfg.positional == "alibi", backend=cfg.backend,
    )  # fmt: skip


class EncoderLayer(_Layer):
    """Self-attention then feed-forward, each in a residual block.

    ``need_weights=True`` also returns the self-attention weights ``(B, H, L, L)``
    (computed by a backend that returns them, so slower; for inspection).

    Example:
        >>> layer = EncoderLayer(TransformerConfig(vocab_size=10, d_model=16, num_heads=2, d_ff=32))
        >>> layer(torch.randn(2, 5, 16)).shape
        torch.Size([2, 5, 16])
        >>> layer(torch.randn(2, 5, 16), need_weights=True)[1].shape
        torch.Size([2, 2, 5, 5])
    """

    def __init__(self, config: TransformerConfig, rotary: RotaryEmbedding | None = None):
        super().__init__()
        self.norm_first = config.norm_first
        self.self_attn = _attention(config, rotary)
        self.feed_forward = FeedForward(config.d_model, config.d_ff, config.activation, bias=config.bias)
        self.norm1 = make_norm(config.norm, config.d_model, config.norm_eps)
        self.norm2 = make_norm(config.norm, config.d_model, config.norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self, x: Tensor, mask: Mask | None = None, *, positions: Tensor | None = None, need_weights: bool = False
    ):
        if not need_weights:
            x = self._residual(x, self.norm1, lambda h: self.self_attn(h, mask=mask, positions=positions))
            return self._residual(x, self.norm2, self.feed_forward)  # (B, L, d_model)
        weights: list[Tensor] = []

        def attend(h: Tensor) -> Tensor:
            out, w = self.self_attn(h, mask=mask, positions=positions, need_weights=True)  # w (B, H, L, L)
            weights.append(w)
            return out

        x = self._residual(x, self.norm1, attend)
        return self._residual(x, self.norm2, self.feed_forward), weights[0]  # (B, L, d_model), (B, H, L, L)


class DecoderLayer(_Layer):
    """Masked self-attention, cross-attention over the encoder memory (optional), feed-forward.

    ``cross_attention=False`` gives the decoder-only (GPT/Llama) layer.

    Example:
        >>> from attnkit import masks
        >>> layer = DecoderLayer(TransformerConfig(vocab_size=10, d_model=16, num_heads=2, d_ff=32)).eval()
        >>> x, memory = torch.randn(1, 3, 16), torch.randn(1, 5, 16)  # (B, T, d_model), (B, S, d_model)
        >>> layer(x, memory, self_mask=masks.causal()).shape
        torch.Size([1, 3, 16])
        >>> DecoderLayer(TransformerConfig(vocab_size=10, d_model=16, num_heads=2, d_ff=32),
        ...              cross_attention=False)(x).shape  # decoder-only: no memory
        torch.Size([1, 3, 16])
    """

    def __init__(self, config: TransformerConfig, rotary: RotaryEmbedding | None = None, *, cross_attention=True):
        super().__init__()
        self.norm_first = config.norm_first
        self.self_attn = _attention(config, rotary)
        self.cross_attn = _attention(config.replace(positional="none"), None) if cross_attention else None
        self.feed_forward = FeedForward(config.d_model, config.d_ff, config.activation, bias=config.bias)
        self.norm1 = make_norm(config.norm, config.d_model, config.norm_eps)
        self.norm2 = make_norm(config.norm, config.d_model, config.norm_eps) if cross_attention else None
        self.norm3 = make_norm(config.norm, config.d_model, config.norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        *,
        self_mask: Mask | None = None,
        memory_mask: Mask | None = None,
        self_cache: KVCache | None = None,
        cross_cache: KVCache | None = None,
        positions: Tensor | None = None,
    ) -> Tensor:
        x = self._residual(
            x, self.norm1, lambda h: self.self_attn(h, mask=self_mask, cache=self_cache, positions=positions)
        )  # (B, T, d_model)
        cross_attn, norm2 = self.cross_attn, self.norm2  # both None in a decoder-only layer
        if cross_attn is not None and norm2 is not None:
            if memory is None and (cross_cache is None or cross_cache.length == 0):
                raise ValueError("DecoderLayer.forward(): memory (B, S, d_model) is required for cross-attention")
            x = self._residual(
                x, norm2, lambda h: cross_attn(h, memory, memory, memory_mask, cache=cross_cache)
            )  # (B, T, d_model)
        return self._residual(x, self.norm3, self.feed_forward)  # (B, T, d_model)


class DecoderCache:
    """Per-layer key/value caches of a decoder: self-attention grows, cross-attention is fixed.

    Example:
        >>> cache = DecoderCache(num_layers=2, cross_attention=True)
        >>> cache.length
        0
    """

    def __init__(self, num_layers: int, *, cross_attention: bool):
        self.self_attn = [KVCache() for _ in range(num_layers)]
        self.cross_attn = [KVCache(static=True) for _ in range(num_layers)] if cross_attention else None

    @property
    def length(self) -> int:
        """Number of decoded positions held."""
        return self.self_attn[0].length if self.self_attn else 0

    def select_batch(self, index: Tensor) -> None:
        """Keep (and reorder) batch rows ``index``: used by beam search."""
        for cache in self.self_attn + (self.cross_attn or []):
            cache.select_batch(index)


class _Stack(nn.Module):
    """N layers and, in the pre-LN layout, a final norm."""

    def _final_norm(self, config: TransformerConfig) -> nn.Module | None:
        return make_norm(config.norm, config.d_model, config.norm_eps) if config.norm_first else None


class Encoder(PretrainedMixin, _Stack):
    """``num_encoder_layers`` :class:`EncoderLayer` s on embedded inputs ``(B, S, d_model)``.

    A standalone encoder (e.g. over features that are not token ids) saves and loads with
    ``save_pretrained`` / ``from_pretrained`` (:mod:`attnkit.nn.pretrained_io`).

    Example:
        >>> enc = Encoder(TransformerConfig(vocab_size=10, d_model=16, num_heads=2, d_ff=32, num_encoder_layers=2))
        >>> enc(torch.randn(1, 4, 16)).shape
        torch.Size([1, 4, 16])
    """

    def __init__(self, config: TransformerConfig, rotary: RotaryEmbedding | None = None):
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(EncoderLayer(config, rotary) for _ in range(config.num_encoder_layers))
        self.norm = self._final_norm(config)

    def forward(self, x: Tensor, mask: Mask | None = None, *, positions: Tensor | None = None) -> Tensor:
        for layer in self.layers:
            x = layer(x, mask, positions=positions)  # (B, S, d_model)
        return x if self.norm is None else self.norm(x)


class Decoder(_Stack):
    """``num_decoder_layers`` :class:`DecoderLayer` s; with ``cross_attention`` they read an encoder memory.

    Example:
        >>> from attnkit import masks
        >>> dec = Decoder(TransformerConfig(vocab_size=10, d_model=16, num_heads=2, d_ff=32, num_decoder_layers=2))
        >>> x, memory = torch.randn(1, 3, 16), torch.randn(1, 5, 16)  # (B, T, d_model), (B, S, d_model)
        >>> dec(x, memory, self_mask=masks.causal()).shape, len(dec.layers)
        (torch.Size([1, 3, 16]), 2)
    """

    def __init__(self, config: TransformerConfig, rotary: RotaryEmbedding | None = None, *, cross_attention=True):
        super().__init__()
        self.cross_attention = cross_attention
        self.layers = nn.ModuleList(
            DecoderLayer(config, rotary, cross_attention=cross_attention) for _ in range(config.num_decoder_layers)
        )
        self.norm = self._final_norm(config)

    def new_cache(self) -> DecoderCache:
        return DecoderCache(len(self.layers), cross_attention=self.cross_attention)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        *,
        self_mask: Mask | None = None,
        memory_mask: Mask | None = None,
        cache: DecoderCache | None = None,
        positions: Tensor | None = None,
    ) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(
                x, memory, self_mask=self_mask, memory_mask=memory_mask, positions=positions,
                self_cache=None if cache is None else cache.self_attn[i],
                cross_cache=None if cache is None or cache.cross_attn is None else cache.cross_attn[i],
            )  # fmt: skip
        return x if self.norm is None else self.norm(x)  # (B, T, d_model)


class _Embedding(nn.Module):
    """Token embedding (scaled by sqrt(d_model) as in the paper) plus absolute positions and dropout."""

    def __init__(self, config: TransformerConfig, vocab_size: int, tokens: nn.Embedding | None = None):
        super().__init__()
        self.tokens = tokens if tokens is not None else nn.Embedding(vocab_size, config.d_model)
        if tokens is None:
            std = config.d_model**-0.5 if config.scale_embeddings else 0.02
            nn.init.normal_(self.tokens.weight, std=std)
        self.scale = math.sqrt(config.d_model) if config.scale_embeddings else 1.0
        self.positions: nn.Module | None
        if config.positional == "sinusoidal":
            self.positions = SinusoidalPositionalEncoding(config.d_model)
        elif config.positional == "learned":
            self.positions = LearnedPositionalEmbedding(config.max_len, config.d_model)
        else:
            self.positions = None  # rotary / alibi act inside attention; "none" has no positions
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, ids: Tensor, *, offset: int = 0, positions: Tensor | None = None) -> Tensor:
        x = self.tokens(ids) * self.scale  # (B, L) -> (B, L, d_model)
        if self.positions is not None:
            x = x + _absolute(self.positions, x, offset, positions)
        return self.dropout(x)


def _absolute(encoding: nn.Module, x: Tensor, offset: int, positions: Tensor | None) -> Tensor:
    """The rows that the absolute position ``encoding`` adds to ``x (B, L, d_model)``."""
    zeros = torch.zeros_like(x)
    if positions is None:
        return encoding(zeros, offset=offset)  # (B, L, d_model): the position rows alone
    table = encoding(torch.zeros(1, int(positions.max()) + 1, x.shape[-1], dtype=x.dtype, device=x.device))
    return table[0][positions].expand_as(x)  # (1, P, d) indexed by (B, L) or (L,) -> (B, L, d_model)


def _rotary(config: TransformerConfig) -> RotaryEmbedding | None:
    return RotaryEmbedding(config.d_head, base=config.rope_base) if config.positional == "rotary" else None


class Transformer(PretrainedMixin, nn.Module):
    """The encoder-decoder Transformer of "Attention Is All You Need".

    ``forward(src, tgt)`` returns next-token logits ``(B, T, V)`` for teacher forcing;
    ``encode`` + ``decode`` (with a :class:`DecoderCache`) serve generation. Padding is
    read from ``config.pad_id``. ``save_pretrained(dir)`` / ``Transformer.from_pretrained(dir)``
    store and rebuild it (config JSON + safetensors, :mod:`attnkit.nn.pretrained_io`).

    Example:
        >>> cfg = TransformerConfig(vocab_size=20, d_model=16, num_heads=2, d_ff=32,
        ...                         num_encoder_layers=1, num_decoder_layers=1)
        >>> model = Transformer(cfg)
        >>> model(torch.tensor([[5, 6, 7]]), torch.tensor([[1, 8]])).shape
        torch.Size([1, 2, 20])
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        if config.num_encoder_layers == 0:
            raise ValueError("Transformer: num_encoder_layers must be >= 1; use TransformerLM for decoder-only models")
        self.config = config
        rotary = _rotary(config)
        self.src_embed = _Embedding(config, config.vocab_size)
        shared = self.src_embed.tokens if config.tie_embeddings else None
        self.tgt_embed = _Embedding(config, config.target_vocab_size, tokens=shared)
        self.encoder = Encoder(config, rotary)
        self.decoder = Decoder(config, rotary, cross_attention=True)
        self.generator = nn.Linear(config.d_model, config.target_vocab_size, bias=False)  # pre-softmax projection
        if config.tie_embeddings:
            self.generator.weight = self.tgt_embed.tokens.weight
        _init_linears(self)

    @classmethod
    def from_config(cls, config: TransformerConfig) -> Transformer:
        return cls(config)

    def encode(self, src: Tensor, src_mask: Mask | None = None) -> Tensor:
        """Source ids ``(B, S)`` -> memory ``(B, S, d_model)``; padding keys masked by default."""
        mask = key_padding_mask(src, self.config.pad_id) if src_mask is None else src_mask
        return self.encoder(self.src_embed(src), mask)

    def decode(
        self,
        tgt: Tensor,
        memory: Tensor | None,
        *,
        memory_mask: Mask | None = None,
        tgt_mask: Mask | None = None,
        cache: DecoderCache | None = None,
    ) -> Tensor:
        """Target ids ``(B, T)`` -> logits ``(B, T, V)``; causal self-attention by default.

        With a ``cache``, ``tgt`` holds only the new positions and ``memory`` may be None
        after the first step (cross-attention keys/values are cached).
        """
        offset = 0 if cache is None else cache.length
        if tgt_mask is None:
            tgt_mask = masks.causal()
            padding = key_padding_mask(tgt, self.config.pad_id) if cache is None else None
            tgt_mask = tgt_mask if padding is None else tgt_mask & padding
        x = self.tgt_embed(tgt, offset=offset)  # (B, T, d_model)
        x = self.decoder(x, memory, self_mask=tgt_mask, memory_mask=memory_mask, cache=cache)
        return self.generator(x)  # (B, T, d_model) -> (B, T, V)

    def forward(self, src: Tensor, tgt: Tensor, *, src_mask: Mask | None = None, tgt_mask: Mask | None = None):
        memory_mask = key_padding_mask(src, self.config.pad_id) if src_mask is None else src_mask
        memory = self.encode(src, memory_mask)
        return self.decode(tgt, memory, memory_mask=memory_mask, tgt_mask=tgt_mask)

    def new_cache(self) -> DecoderCache:
        return self.decoder.new_cache()


class TransformerLM(PretrainedMixin, nn.Module):
    """Decoder-only language model: embeddings, ``num_decoder_layers`` layers, final norm, LM head.

    ``forward(ids, mask=None, *, positions=None, cache=None)`` returns logits ``(B, L, V)``;
    the mask defaults to :func:`masks.causal` (compose it with ``masks.document`` for packing,
    and pass ``positions`` so positions restart in each document). ``save_pretrained(dir)`` /
    ``TransformerLM.from_pretrained(dir)`` store and rebuild it.

    Example:
        >>> cfg = TransformerConfig(vocab_size=20, d_model=16, num_heads=2, d_ff=32, num_encoder_layers=0,
        ...                         num_decoder_layers=2, positional="rotary")
        >>> TransformerLM(cfg)(torch.tensor([[1, 2, 3]])).shape
        torch.Size([1, 3, 20])
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.embed = _Embedding(config, config.vocab_size)
        self.decoder = Decoder(config, _rotary(config), cross_attention=False)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.tokens.weight
        _init_linears(self)

    @classmethod
    def from_config(cls, config: TransformerConfig) -> TransformerLM:
        return cls(config)

    def forward(
        self,
        ids: Tensor,
        mask: Mask | None = None,
        *,
        positions: Tensor | None = None,
        cache: DecoderCache | None = None,
        logits_to_keep: int = 0,
    ) -> Tensor:
        """Logits ``(B, L, V)``; with ``logits_to_keep=n > 0`` only those of the last ``n`` positions ``(B, n, V)``.

        Generation needs only the last position's logits: ``logits_to_keep=1`` skips the
        LM head (``d_model x vocab``, the largest matmul of a small model) for the rest.
        """
        if isinstance(logits_to_keep, bool) or not isinstance(logits_to_keep, int) or logits_to_keep < 0:
            raise ValueError(f"TransformerLM.forward(): logits_to_keep must be an int >= 0 (0 = all positions), "
                             f"got {logits_to_keep!r}")  # fmt: skip
        offset = 0 if cache is None else cache.length
        x = self.embed(ids, offset=offset, positions=positions)  # (B, L) -> (B, L, d_model)
        if mask is None and not (cache is not None and ids.shape[1] == 1):
            mask = masks.causal()  # (one new query after a cache sees every key: no mask needed)
        x = self.decoder(x, self_mask=mask, cache=cache, positions=positions)  # (B, L, d_model)
        if logits_to_keep:
            x = x[:, -logits_to_keep:]  # (B, L, d_model) -> (B, n, d_model)
        return self.lm_head(x)  # (B, L|n, d_model) -> (B, L|n, V)

    def new_cache(self) -> DecoderCache:
        return self.decoder.new_cache()


def _init_linears(model: nn.Module) -> None:
    """Xavier-uniform projections, as in the reference implementations of the paper."""
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.weight.dim() == 2 and not _is_tied(model, module):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def _is_tied(model: nn.Module, linear: nn.Linear) -> bool:
    return any(linear.weight is emb.weight for emb in model.modules() if isinstance(emb, nn.Embedding))
