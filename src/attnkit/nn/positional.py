"""Positional information for Transformers: sinusoidal, learned and rotary (RoPE).

Shape legend
------------
B        batch size
L        sequence length (number of positions in the current call)
H        number of attention heads (query or key/value heads)
D        head_dim, features per head (RotaryEmbedding)
d_model  model width (SinusoidalPositionalEncoding, LearnedPositionalEmbedding)

Additive encodings (sinusoidal, learned) act on token embeddings ``(B, L, d_model)``.
RoPE acts on queries and keys after the head split ``(B, H, L, D)``.

Caches of cos/sin tables are float32, computed from float64 angles, kept in
non-persistent buffers (they never enter ``state_dict``) and grown on demand, so
no module here has a hard length limit except ``LearnedPositionalEmbedding``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = [
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEmbedding",
    "RotaryEmbedding",
]


# ---------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------

def _check_int(owner: str, name: str, value: object, minimum: int) -> int:
    """``value``, an int (or the SymInt of a length traced with dynamic shapes) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, torch.SymInt)):
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value}")
    return value  # type: ignore[return-value]  # a SymInt stands for an int


def _check_dropout(owner: str, dropout: float) -> float:
    if not 0.0 <= float(dropout) <= 1.0:
        raise ValueError(f"{owner}: dropout must be a probability in [0, 1], got {dropout}")
    return float(dropout)


def _check_embeddings(owner: str, x: Tensor, d_model: int) -> None:
    if x.dim() != 3 or x.shape[-1] != d_model:
        raise ValueError(
            f"{owner}: x must have shape (B, L, d_model={d_model}), got {tuple(x.shape)}; "
            "batch-first only, add a batch dimension with x.unsqueeze(0) if needed"
        )


def _capacity(length: int) -> int:
    """Cache size for ``length`` positions: the next power of two (at least 16)."""
    return max(16, 1 << max(length - 1, 0).bit_length())


# ---------------------------------------------------------------------------
# sinusoidal (Vaswani et al. 2017, section 3.5)
# ---------------------------------------------------------------------------

def _sinusoid_table(positions: Tensor, d_model: int) -> Tensor:
    """float64 table ``PE[pos, 2i] = sin(pos / 10000^(2i/d_model))``, ``PE[pos, 2i+1] = cos(...)``."""
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64, device=positions.device)  # (ceil(d_model/2),)
    inv_freq = 10000.0 ** (-two_i / d_model)  # (ceil(d_model/2),)
    angles = positions.to(torch.float64)[:, None] * inv_freq[None, :]  # (L, 1) * (1, d/2) -> (L, d/2)
    pe = torch.stack((angles.sin(), angles.cos()), dim=-1)  # (L, d/2) -> (L, d/2, 2)
    return pe.flatten(-2)[:, :d_model]  # (L, d/2, 2) -> (L, 2*ceil(d/2)) -> (L, d_model)


class SinusoidalPositionalEncoding(nn.Module):
    r"""Fixed sinusoidal positional encoding of "Attention Is All You Need" (2017).

    .. math::
        PE_{(pos, 2i)} = \sin(pos / 10000^{2i/d_{model}}), \quad
        PE_{(pos, 2i+1)} = \cos(pos / 10000^{2i/d_{model}})

    ``forward(x) = dropout(x * s + PE[offset : offset + L])`` with ``s = sqrt(d_model)``
    if ``scale_embeddings`` (the paper multiplies the embedding weights by
    ``sqrt(d_model)``, section 3.4) else ``s = 1``.

    Args:
        d_model: model width. Odd widths are supported: the table is computed for
            ``d_model + 1`` columns and the last (cosine) column is dropped.
        dropout: dropout probability applied to the sum (0.1 in the paper).
        max_len: initial size of the cached table. Not a limit: the cache grows
            on demand for longer inputs or larger offsets.
        scale_embeddings: multiply ``x`` by ``sqrt(d_model)`` before adding.

    Shapes:
        x: (B, L, d_model) -> (B, L, d_model)

    The table holds no parameters and is not saved in ``state_dict``. float64
    inputs get a table computed in float64; other dtypes read a float32 cache.

    Example:
        >>> pe = SinusoidalPositionalEncoding(d_model=4)
        >>> pe.encoding(2)  # position 0: sin 0, cos 0, ...; position 1: sin 1, cos 1, sin .01, cos .01
        tensor([[0.0000, 1.0000, 0.0000, 1.0000],
                [0.8415, 0.5403, 0.0100, 0.9999]])
        >>> pe(torch.zeros(3, 7, 4), offset=5).shape
        torch.Size([3, 7, 4])
    """

    _pe: Tensor  # (capacity, d_model) float32 table, a non-persistent buffer

    def __init__(
        self,
        d_model: int,
        *,
        dropout: float = 0.0,
        max_len: int | None = None,
        scale_embeddings: bool = False,
    ) -> None:
        super().__init__()
        owner = "SinusoidalPositionalEncoding()"
        self.d_model = _check_int(owner, "d_model", d_model, 1)
        self.scale_embeddings = bool(scale_embeddings)
        self.dropout = nn.Dropout(_check_dropout(owner, dropout))
        initial = 0 if max_len is None else _check_int(owner, "max_len", max_len, 0)
        positions = torch.arange(initial, dtype=torch.float64)  # (max_len,)
        self.register_buffer(
            "_pe", _sinusoid_table(positions, d_model).float(), persistent=False
        )  # (max_len, d_model)

    def _ensure_cache(self, length: int, device: torch.device) -> Tensor:
        cache = self._pe
        if cache.shape[0] < length or cache.device != device or cache.dtype != torch.float32:
            positions = torch.arange(_capacity(length), dtype=torch.float64, device=device)  # (capacity,)
            self._pe = _sinusoid_table(positions, self.d_model).float()  # (capacity, d_model)
        return self._pe

    def encoding(
        self,
        length: int,
        *,
        offset: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Rows ``PE[offset : offset + length]`` as a ``(length, d_model)`` tensor.

        ``device`` defaults to the module's device, ``dtype`` to the default dtype.
        """
        owner = "SinusoidalPositionalEncoding.encoding()"
        _check_int(owner, "length", length, 0)
        _check_int(owner, "offset", offset, 0)
        device = self._pe.device if device is None else torch.device(device)
        dtype = torch.get_default_dtype() if dtype is None else dtype
        if dtype == torch.float64 or torch.compiler.is_compiling():  # a traced graph keeps no growing cache
            positions = torch.arange(offset, offset + length, dtype=torch.float64, device=device)  # (L,)
            table = _sinusoid_table(positions, self.d_model)  # (L, d_model) float64
            return table if dtype == torch.float64 else table.float().to(dtype)  # rounded as the cache is
        cache = self._ensure_cache(offset + length, device)  # (>= offset + L, d_model)
        return cache[offset : offset + length].to(dtype)  # (L, d_model)

    def forward(self, x: Tensor, *, offset: int = 0) -> Tensor:
        """Add the encoding of positions ``offset, ..., offset + L - 1`` to ``x`` (B, L, d_model)."""
        _check_embeddings("SinusoidalPositionalEncoding.forward()", x, self.d_model)
        pe = self.encoding(x.shape[1], offset=offset, device=x.device, dtype=x.dtype)  # (L, d_model)
        if self.scale_embeddings:
            x = x * math.sqrt(self.d_model)
        return self.dropout(x + pe)  # (B, L, d_model) + (L, d_model) -> (B, L, d_model)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, scale_embeddings={self.scale_embeddings}"


# ---------------------------------------------------------------------------
# learned absolute positions (BERT, GPT-2)
# ---------------------------------------------------------------------------

class LearnedPositionalEmbedding(nn.Module):
    r"""Learned absolute position embeddings, one trainable vector per position.

    ``forward(x) = dropout(x + weight[offset : offset + L])``. The parameter is
    called ``weight`` (shape ``(max_len, d_model)``) so that a module stored as
    ``position_embeddings`` has the checkpoint key ``position_embeddings.weight``
    used by BERT and GPT-2. Initialised from N(0, 0.02^2) as in those models.

    Learned embeddings cannot extrapolate: positions ``>= max_len`` raise.

    Shapes:
        x: (B, L, d_model) -> (B, L, d_model)

    Example:
        >>> pos = LearnedPositionalEmbedding(max_len=16, d_model=8)
        >>> pos(torch.zeros(2, 5, 8), offset=3).shape
        torch.Size([2, 5, 8])
        >>> torch.equal(pos(torch.zeros(1, 1, 8), offset=3)[0, 0], pos.weight[3])
        True
    """

    def __init__(self, max_len: int, d_model: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        owner = "LearnedPositionalEmbedding()"
        self.max_len = _check_int(owner, "max_len", max_len, 1)
        self.d_model = _check_int(owner, "d_model", d_model, 1)
        self.dropout = nn.Dropout(_check_dropout(owner, dropout))
        self.weight = nn.Parameter(torch.empty(max_len, d_model))  # (max_len, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, mean=0.0, std=0.02)

    def forward(self, x: Tensor, *, offset: int = 0) -> Tensor:
        """Add ``weight[offset : offset + L]`` to ``x`` (B, L, d_model)."""
        owner = "LearnedPositionalEmbedding.forward()"
        _check_embeddings(owner, x, self.d_model)
        _check_int(owner, "offset", offset, 0)
        length = x.shape[1]
        if offset + length > self.max_len:
            raise ValueError(
                f"{owner}: positions offset={offset} .. offset + length - 1 = {offset + length - 1} "
                f"(length={length}) exceed max_len={self.max_len}; learned embeddings exist only for "
                f"positions 0 .. {self.max_len - 1}. Hint: build the module with a larger max_len, "
                "or use SinusoidalPositionalEncoding / RotaryEmbedding, which have no length limit"
            )
        pe = self.weight[offset : offset + length]  # (max_len, d_model) -> (L, d_model)
        return self.dropout(x + pe)  # (B, L, d_model) + (L, d_model) -> (B, L, d_model)

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, d_model={self.d_model}"


# ---------------------------------------------------------------------------
# rotary (Su et al. 2021, RoFormer)
# ---------------------------------------------------------------------------

class RotaryEmbedding(nn.Module):
    r"""Rotary position embedding (RoPE, Su et al. 2021) for queries and keys.

    Features are grouped into ``D/2`` pairs ``(a_i, b_i)``; the pair of a vector
    at position ``m`` is rotated by the angle ``m * theta_i``, with
    ``theta_i = base^(-2i/D)``:

    .. math::
        \begin{pmatrix} a_i' \\ b_i' \end{pmatrix} =
        \begin{pmatrix} \cos m\theta_i & -\sin m\theta_i \\
                        \sin m\theta_i &  \cos m\theta_i \end{pmatrix}
        \begin{pmatrix} a_i \\ b_i \end{pmatrix}

    Relative-position property: rotations compose and are orthogonal, so
    ``<R(m) q, R(n) k> = <q, R(n - m) k>``: attention scores depend on the
    positions only through the offset ``m - n``. Rotations also preserve norms.

    Pair layout:
        * ``interleaved=False`` (default, GPT-NeoX / Llama / HF ``rotate_half``):
          pair ``i`` is ``(x[i], x[i + D/2])``.
        * ``interleaved=True`` (GPT-J, original paper, Meta's ``llama`` repo
          via complex numbers): pair ``i`` is ``(x[2i], x[2i + 1])``.
        Both compute the same function up to a fixed permutation of features;
        use the layout the checkpoint was trained with.

    Positions: ``offset`` (int, e.g. the KV-cache length while decoding) rotates
    the L positions ``offset, ..., offset + L - 1``; ``positions=`` (LongTensor of
    shape (L,) or (B, L), e.g. restarting at 0 per document in packed sequences)
    gives them explicitly.

    Precision: cos/sin are computed from float64 angles and cached in float32
    (grown on demand, not saved in ``state_dict``). Half-precision inputs are
    rotated in float32 and cast back; float64 inputs are rotated in float64
    with uncached float64 tables.

    Shapes:
        q: (B, H, L, D), k: (B, Hkv, L, D) -> same shapes.

    Example:
        >>> rope = RotaryEmbedding(head_dim=8)
        >>> q, k = torch.randn(2, 4, 5, 8), torch.randn(2, 2, 5, 8)
        >>> q_rot, k_rot = rope(q, k, offset=3)
        >>> q_rot.shape, k_rot.shape
        (torch.Size([2, 4, 5, 8]), torch.Size([2, 2, 5, 8]))
        >>> torch.allclose(q_rot.norm(dim=-1), q.norm(dim=-1), atol=1e-5)
        True
        >>> torch.equal(rope.rotate(q, positions=torch.arange(3, 8)), q_rot)
        True
    """

    _cos: Tensor  # (capacity, D/2) float32 table, a non-persistent buffer
    _sin: Tensor  # (capacity, D/2)

    def __init__(self, head_dim: int, *, base: float = 10000.0, interleaved: bool = False) -> None:
        super().__init__()
        owner = "RotaryEmbedding()"
        _check_int(owner, "head_dim", head_dim, 1)
        if head_dim % 2:
            raise ValueError(
                f"{owner}: head_dim must be even, got {head_dim}; RoPE rotates features in pairs. "
                "Hint: use an even head_dim, or rotate only the first (even) part of each head"
            )
        if not float(base) > 0.0:
            raise ValueError(f"{owner}: base must be > 0, got {base}; the usual value is 10000.0")
        self.head_dim = head_dim
        self.base = float(base)
        self.interleaved = bool(interleaved)
        self.register_buffer("_cos", torch.empty(0, head_dim // 2), persistent=False)  # (0, D/2)
        self.register_buffer("_sin", torch.empty(0, head_dim // 2), persistent=False)  # (0, D/2)

    # -- tables --------------------------------------------------------------

    def _angles(self, positions: Tensor) -> Tensor:
        """float64 angles ``pos * theta_i``: (...,) -> (..., D/2)."""
        two_i = torch.arange(0, self.head_dim, 2, dtype=torch.float64, device=positions.device)  # (D/2,)
        inv_freq = self.base ** (-two_i / self.head_dim)  # (D/2,)
        return positions.to(torch.float64)[..., None] * inv_freq  # (...,) -> (..., D/2)

    def _ensure_cache(self, length: int, device: torch.device) -> None:
        cache = self._cos
        if cache.shape[0] < length or cache.device != device or cache.dtype != torch.float32:
            angles = self._angles(torch.arange(_capacity(length), device=device))  # (capacity, D/2)
            self._cos = angles.cos().float()  # (capacity, D/2)
            self._sin = angles.sin().float()  # (capacity, D/2)

    def _cos_sin(self, x: Tensor, offset: int, positions: Tensor | None) -> tuple[Tensor, Tensor]:
        """cos, sin of shape (L, D/2) or (B, 1, L, D/2) in the compute dtype of ``x``.

        Under ``torch.compile``/``torch.export`` the tables are computed in the graph, not cached:
        the cache grows to a power of two above the length, a step that would fix a traced length.
        """
        tracing = torch.compiler.is_compiling()
        if positions is None and x.dtype != torch.float64 and not tracing:  # fast path: views of the tables
            end = offset + x.shape[-2]
            self._ensure_cache(end, x.device)
            return self._cos[offset:end], self._sin[offset:end]  # (L, D/2) each
        if positions is None:
            positions = torch.arange(offset, offset + x.shape[-2], device=x.device)  # (L,)
        else:
            positions = positions.to(x.device)
        if x.dtype == torch.float64 or tracing:
            angles = self._angles(positions)  # (L,) -> (L, D/2) or (B, L) -> (B, L, D/2)
            cos, sin = angles.cos(), angles.sin()  # float64, rounded below as the cached tables are
            if x.dtype != torch.float64:
                cos, sin = cos.float(), sin.float()
        else:
            last = int(positions.max()) + 1 if positions.numel() else 0
            self._ensure_cache(last, x.device)
            cos, sin = self._cos[positions], self._sin[positions]  # (L, D/2) or (B, L, D/2)
        if positions.dim() == 2:
            cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (B, L, D/2) -> (B, 1, L, D/2)
        return cos, sin

    # -- validation ------------------------------------------------------------

    def _check(self, owner: str, name: str, x: Tensor, offset: int, positions: Tensor | None) -> None:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"{owner}: {name} must be a floating-point tensor, got {getattr(x, 'dtype', type(x))}")
        if x.dim() != 4 or x.shape[-1] != self.head_dim:
            raise ValueError(
                f"{owner}: {name} must have shape (B, H, L, head_dim={self.head_dim}), got {tuple(x.shape)}; "
                "apply RoPE after splitting heads: (B, L, H * D) -> (B, H, L, D)"
            )
        _check_int(owner, "offset", offset, 0)
        if positions is None:
            return
        if offset != 0:
            raise ValueError(f"{owner}: give either offset={offset} or positions=, not both")
        if not isinstance(positions, Tensor) or positions.is_floating_point() or positions.is_complex():
            raise TypeError(
                f"{owner}: positions must be an integer tensor (torch.long), got "
                f"{getattr(positions, 'dtype', type(positions).__name__)}"
            )
        batch, length = x.shape[0], x.shape[-2]
        ok_1d = positions.dim() == 1 and positions.shape[0] == length
        ok_2d = positions.dim() == 2 and positions.shape[1] == length and positions.shape[0] in (1, batch)
        if not (ok_1d or ok_2d):
            raise ValueError(
                f"{owner}: positions must have shape (L,) or (B, L) with L={length}, B={batch} "
                f"(from {name} of shape {tuple(x.shape)}), got {tuple(positions.shape)}"
            )
        if positions.numel() and not torch.compiler.is_compiling() and int(positions.min()) < 0:  # eager check
            raise ValueError(f"{owner}: positions must be >= 0, got min {int(positions.min())}")

    # -- public ------------------------------------------------------------------

    def rotate(self, x: Tensor, offset: int = 0, *, positions: Tensor | None = None) -> Tensor:
        """Rotate ``x`` (B, H, L, D) by its positions; returns the same shape and dtype."""
        self._check("RotaryEmbedding.rotate()", "x", x, offset, positions)
        cos, sin = self._cos_sin(x, offset, positions)  # (L, D/2) or (B, 1, L, D/2)
        xc = x if x.dtype == torch.float64 else x.float()  # half inputs: compute in float32
        if self.interleaved:
            pairs = xc.unflatten(-1, (self.head_dim // 2, 2))  # (B, H, L, D) -> (B, H, L, D/2, 2)
            a, b = pairs[..., 0], pairs[..., 1]  # (B, H, L, D/2, 2) -> 2 x (B, H, L, D/2)
            out = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1)  # -> (B, H, L, D/2, 2)
            out = out.flatten(-2)  # (B, H, L, D/2, 2) -> (B, H, L, D)
        else:
            a, b = xc.chunk(2, dim=-1)  # (B, H, L, D) -> 2 x (B, H, L, D/2)
            out = torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1)  # 2 x (B, H, L, D/2) -> (B, H, L, D)
        return out.to(x.dtype)

    def forward(
        self, q: Tensor, k: Tensor, *, offset: int = 0, positions: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Rotate queries and keys at the same positions; ``q`` and ``k`` may differ in heads (GQA).

        For queries and keys at different positions (e.g. a key cache), call
        :meth:`rotate` on each.
        """
        if isinstance(q, Tensor) and isinstance(k, Tensor) and q.dim() == k.dim() == 4 and q.shape[-2] != k.shape[-2]:
            raise ValueError(
                f"RotaryEmbedding.forward(): q has L={q.shape[-2]} positions but k has L={k.shape[-2]}; "
                "forward() rotates both at the same positions. Hint: call rotate(q, offset=...) and "
                "rotate(k, offset=...) separately"
            )
        return self.rotate(q, offset, positions=positions), self.rotate(k, offset, positions=positions)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, base={self.base}, interleaved={self.interleaved}"
