"""Kronecker mask attention (CLAVER, ICLR 2025): masks over frame-major `T·L` token sequences and a
transformer layer that applies them through the transformers attention interface.

Nothing here depends on the rest of CLAVER: any transformer whose sequence is `T` frames of `L` tokens
laid out frame-major (token `i` of frame `t` at index `t * L + i`) can use it.

Example: a KMTA layer on top of features of 8 frames × 50 tokens, width 256.

```python
>>> import torch
>>> from transformers import CLIPVisionConfig
>>> from claver_hf.modeling.kronecker import KroneckerEncoderLayer
>>> config = CLIPVisionConfig(hidden_size=256, intermediate_size=1024, num_attention_heads=4)
>>> config._attn_implementation = "sdpa"
>>> layer = KroneckerEncoderLayer(config, mask_type="kmta")
>>> tokens = torch.randn(2, 8 * 50, 256)  # (batch, T·L, width)
>>> layer(tokens, num_frames=8).shape
torch.Size([2, 400, 256])

```

Mask semantics (docs/kronecker-masks.md, `1` = blocked, rows = queries): with `I` identity, `J` all-ones,
`U = triu(J_T, 1)`,

| type           | blocked set                                |
|----------------|--------------------------------------------|
| `kmta`         | `I_T ⊗ (J_L − I_L)`                         |
| `kmcta`        | `I_T ⊗ (J_L − I_L) + U_T ⊗ J_L`             |
| `joint`        | nothing                                    |
| `spatial`      | `(J_T − I_T) ⊗ J_L`                         |
| `divided`      | `J_T ⊗ (J_L − I_L)`                         |
| `cls_temporal` | `J_T ⊗ (J_L − e0 e0ᵀ)`, diagonal kept open |

How the masks are applied, so that no dense float `T·L × T·L` mask is built per layer or batch element:
the mask of each `(type, T, L, device, dtype)` is built once, kept in `kronecker_mask_cache`, and shared by every
layer and batch element. It is split into *chunks* (query range, key range, residual mask) that skip key ranges
the mask blocks entirely: KMCTA runs one chunk per frame against the keys of that frame and the earlier ones
(about half of the work of full attention), `spatial` one chunk per frame against its own frame; the others run
one chunk. `eager` and `sdpa` receive the residual masks as additive float masks in the query dtype: eager adds
the mask to the scores, and torch's SDPA, although it takes booleans, turns a boolean mask into exactly such a
float mask on every call (measured: about 150 MiB and 55-110 ms per call at 32 frames of ViT-B/16 on CPU), so
caching the float form is both faster and smaller at peak. `flex_attention` gets a cached `BlockMask` built from
the mask's `mask_mod`, a few hundred KiB at most. Other kernels (flash attention) cannot apply these masks and are
refused with an error.

What the cache holds per mask (float32; half in bfloat16 / float16), `L` = 197 at B/16 (224 px), 577 at
L/14@336 (`joint` and `spatial` need no mask):

| backbone | frames | `kmta`, `divided`, `cls_temporal` | `kmcta` | `BlockMask` (flex) |
|----------|-------:|----------------------------------:|--------:|-------------------:|
| B/16     | 8      | 9.5 MiB                           | 5.3 MiB | 3 KiB              |
| B/16     | 32     | 152 MiB                           | 78 MiB  | 40 KiB             |
| L/14@336 | 8      | 81 MiB                            | 46 MiB  | 22 KiB             |
| L/14@336 | 32     | 1.3 GiB                           | 671 MiB | 331 KiB            |

The cache is bounded by bytes (`kronecker_mask_cache.max_bytes`, 256 MiB by default, for all devices together),
evicting the least recently used masks; a mask larger than the budget is kept alone until another is built.

Inside `torch.compile` and `torch.export` the cache is bypassed: the masks are computed in the graph from index
arithmetic, and with a symbolic (dynamic) frame count as one chunk, since the number of per-frame chunks is then
unknown.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import torch
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.clip.modeling_clip import CLIPAttention, CLIPEncoderLayer, eager_attention_forward

from .._compat import attn_implementation

_V = TypeVar("_V")
KroneckerMaskType = Literal["kmta", "kmcta", "joint", "spatial", "divided", "cls_temporal"]


# Each rule says which keys a query may attend to, from flat frame-major indices; they work on broadcast
# index tensors (dense masks) and inside FlexAttention's `mask_mod` alike.
def _kmta(q: torch.Tensor, k: torch.Tensor, L: int) -> torch.Tensor:
    return (q // L != k // L) | (q == k)


def _kmcta(q: torch.Tensor, k: torch.Tensor, L: int) -> torch.Tensor:
    return (k // L < q // L) | (q == k)


def _joint(q: torch.Tensor, k: torch.Tensor, L: int) -> torch.Tensor:
    return (q >= 0) | (k >= 0)


def _spatial(q: torch.Tensor, k: torch.Tensor, L: int) -> torch.Tensor:
    return q // L == k // L


def _divided(q: torch.Tensor, k: torch.Tensor, L: int) -> torch.Tensor:
    return q % L == k % L


def _cls_temporal(q: torch.Tensor, k: torch.Tensor, L: int) -> torch.Tensor:
    return ((q % L == 0) & (k % L == 0)) | (q == k)


_ALLOWED_RULES: dict[str, Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]] = {
    "kmta": _kmta,
    "kmcta": _kmcta,
    "joint": _joint,
    "spatial": _spatial,
    "divided": _divided,
    "cls_temporal": _cls_temporal,
}
KRONECKER_MASK_TYPES: tuple[str, ...] = tuple(_ALLOWED_RULES)


# The kernels that take what these layers pass: additive float masks (`eager`, `sdpa`) or a `BlockMask`
# (`flex_attention`). Flash attention takes no arbitrary mask, and other registered kernels may silently ignore it.
KRONECKER_ATTN_IMPLEMENTATIONS: tuple[str, ...] = ("eager", "sdpa", "flex_attention")


def check_kronecker_attn_implementation(
    implementation: str | None, owner: str = "KroneckerMaskAttention", hint: str = ""
) -> None:
    """Raise a `ValueError` naming `implementation` and `owner` (followed by `hint`) unless Kronecker mask layers can
    run on it; `None`, transformers' default, means `sdpa`."""
    if implementation is not None and implementation not in KRONECKER_ATTN_IMPLEMENTATIONS:
        supported = ", ".join(repr(name) for name in KRONECKER_ATTN_IMPLEMENTATIONS)
        raise ValueError(
            f"{owner} cannot use attn_implementation={implementation!r}: its Kronecker mask attention layers need a "
            f"kernel that applies their 4-D attention masks, one of {supported}.{hint}"
        )


def _check(mask_type: str, num_frames: int, tokens_per_frame: int) -> None:
    if mask_type not in _ALLOWED_RULES:
        raise ValueError(
            f"Unknown Kronecker mask type {mask_type!r}; expected one of {KRONECKER_MASK_TYPES}."
        )
    if num_frames < 1 or tokens_per_frame < 1:
        raise ValueError(
            f"A Kronecker mask needs num_frames >= 1 and tokens_per_frame >= 1, got {num_frames} and "
            f"{tokens_per_frame}."
        )


def kronecker_mask_mod(mask_type: KroneckerMaskType, tokens_per_frame: int) -> Callable:
    """FlexAttention `mask_mod(batch, head, q_idx, kv_idx) -> allowed` for `tokens_per_frame` tokens per frame."""
    _check(mask_type, 1, tokens_per_frame)
    rule = _ALLOWED_RULES[mask_type]

    def mask_mod(batch_idx, head_idx, q_idx, kv_idx):
        return rule(q_idx, kv_idx, tokens_per_frame)

    return mask_mod


def kronecker_allowed_mask(
    mask_type: KroneckerMaskType,
    num_frames: int,
    tokens_per_frame: int,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Boolean `(T·L, T·L)` matrix, `True` where a query (row) may attend to a key (column).

    This is the complement of the blocked set (the Kronecker formulas in the module docstring, docs/kronecker-masks.md).
    """
    _check(mask_type, num_frames, tokens_per_frame)
    idx = torch.arange(num_frames * tokens_per_frame, device=device)
    return _ALLOWED_RULES[mask_type](idx[:, None], idx[None, :], tokens_per_frame)


@dataclass(frozen=True)
class AttentionChunk:
    """A block of queries and the contiguous key range they may see, with what the mask still blocks inside.

    `allowed` is a `(num_queries, num_keys)` mask of what stays blocked inside the range (boolean, `True` =
    allowed, or additive float), or `None` when every key of the range is allowed.
    """

    queries: slice
    keys: slice
    allowed: torch.Tensor | None


class KroneckerMaskCache:
    """Least-recently-used cache of attention masks, bounded by their size in bytes.

    Keys are `(kind, mask type, frames, tokens per frame, device, dtype)`, so a mask built for one device or dtype
    is never returned for another. When an insertion takes the total over `max_bytes`, the least recently used
    entries are evicted until it fits; the entry just built is always kept, even alone above the budget, because
    every KMT layer of the forward pass that asked for it asks again (rebuilding it per layer costs more than
    holding it). Lowering `max_bytes` evicts at once; `clear()` empties the cache.
    """

    def __init__(self, max_bytes: int):
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()
        self.max_bytes = max_bytes

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, value: int) -> None:
        if value < 0:
            raise ValueError(f"The mask cache budget must be a number of bytes >= 0, got {value}.")
        with self._lock:
            self._max_bytes = value
            self._evict(keep=None)

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached masks (on whatever devices they live)."""
        return self._nbytes

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[Hashable]:
        """Cached keys, least recently used first."""
        return list(self._entries)

    def get(self, key: Hashable, build: Callable[[], _V], nbytes: Callable[[_V], int]) -> _V:
        """The value cached under `key`, or `build()` cached at the cost of `nbytes(value)` bytes."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key][0]
            value = build()
            size = nbytes(value)
            self._entries[key] = (value, size)
            self._nbytes += size
            self._evict(keep=key)
            return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._nbytes = 0

    def _evict(self, keep: Hashable | None) -> None:
        while self._nbytes > self._max_bytes and self._entries:
            oldest = next(iter(self._entries))
            if oldest == keep:
                break
            self._nbytes -= self._entries.pop(oldest)[1]


def _tensor_bytes(tensors: Iterable[object]) -> int:
    # Meta tensors (FLOP counting) hold no memory.
    return sum(t.nbytes for t in tensors if isinstance(t, torch.Tensor) and not t.is_meta)


# Shared by every Kronecker layer of the process. 256 MiB holds every mask of an 8-frame run at any CLIP size
# (see the module docstring for the size of each); a larger mask (KMTA at 32 frames of L/14@336: 1.3 GiB in
# float32) is held alone.
kronecker_mask_cache = KroneckerMaskCache(max_bytes=256 * 2**20)


def _chunk_ranges(mask_type: str, num_frames: int, tokens_per_frame: int) -> list[tuple[slice, slice]]:
    """`(queries, keys)` ranges: one per frame for the masks that block whole key ranges per frame, else one."""
    L, N = tokens_per_frame, num_frames * tokens_per_frame
    if mask_type == "kmcta":
        return [(slice(t * L, (t + 1) * L), slice(0, (t + 1) * L)) for t in range(num_frames)]
    if mask_type == "spatial":
        return [(slice(t * L, (t + 1) * L), slice(t * L, (t + 1) * L)) for t in range(num_frames)]
    return [(slice(0, N), slice(0, N))]


def _allowed_block(
    mask_type: str, tokens_per_frame: int, queries: slice, keys: slice, device: torch.device | str | None
) -> torch.Tensor:
    """Boolean `(num_queries, num_keys)` block of the allowed mask, from index arithmetic alone (no data-dependent
    control flow, so it traces with symbolic sizes)."""
    q = torch.arange(queries.start, queries.stop, device=device)
    k = torch.arange(keys.start, keys.stop, device=device)
    return _ALLOWED_RULES[mask_type](q[:, None], k[None, :], tokens_per_frame)


def _additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean mask -> additive float mask of `dtype`: 0 where allowed, the dtype's minimum where blocked."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(
        ~allowed, torch.finfo(dtype).min
    )


def kronecker_attention_chunks(
    mask_type: KroneckerMaskType,
    num_frames: int,
    tokens_per_frame: int,
    device: torch.device,
    dtype: torch.dtype | None = None,
) -> tuple[AttentionChunk, ...]:
    """Split a Kronecker mask into chunks that skip fully blocked key ranges, cached in `kronecker_mask_cache`.

    Residual masks are boolean (`True` = allowed), or with `dtype` additive float masks of that dtype (0 where
    allowed, the dtype's minimum where blocked), the form attention kernels add to the scores.
    """
    _check(mask_type, num_frames, tokens_per_frame)
    device = torch.device(device)
    return kronecker_mask_cache.get(
        ("chunks", mask_type, num_frames, tokens_per_frame, device, dtype),
        lambda: _build_chunks(mask_type, num_frames, tokens_per_frame, device, dtype),
        lambda chunks: _tensor_bytes(chunk.allowed for chunk in chunks),
    )


def _build_chunks(
    mask_type: str, num_frames: int, tokens_per_frame: int, device: torch.device, dtype: torch.dtype | None
) -> tuple[AttentionChunk, ...]:
    # Built on the CPU, where deciding which chunks need no mask is cheap and works for any target device
    # (including "meta", used for FLOP counting), then moved once.
    chunks = []
    for queries, keys in _chunk_ranges(mask_type, num_frames, tokens_per_frame):
        block = _allowed_block(mask_type, tokens_per_frame, queries, keys, device="cpu")
        if bool(block.all()):
            block = None
        else:
            block = (block if dtype is None else _additive(block, dtype)).to(device)
        chunks.append(AttentionChunk(queries, keys, block))
    return tuple(chunks)


def _traced_chunks(
    mask_type: str, num_frames: int, tokens_per_frame: int, device: torch.device, dtype: torch.dtype
) -> tuple[AttentionChunk, ...]:
    """The chunks built inside a traced graph (`torch.compile`, `torch.export`), where the cache cannot serve:
    its keys must be concrete and hashable, and tensors built while tracing are graph values, not masks to keep.

    A symbolic frame count (dynamic shapes) has no Python range of per-frame chunks, so the whole mask is then one
    chunk. Whether a block is all allowed would be decided from the data; here only `joint` goes without a mask.
    """
    if isinstance(num_frames, int):
        ranges = _chunk_ranges(mask_type, num_frames, tokens_per_frame)
    else:
        ranges = [(slice(0, num_frames * tokens_per_frame),) * 2]
    if mask_type == "joint":
        return tuple(AttentionChunk(queries, keys, None) for queries, keys in ranges)
    return tuple(
        AttentionChunk(
            queries,
            keys,
            _additive(_allowed_block(mask_type, tokens_per_frame, queries, keys, device), dtype),
        )
        for queries, keys in ranges
    )


def _flex_block_mask(mask_type: str, num_frames: int, tokens_per_frame: int, device: torch.device):
    from torch.nn.attention.flex_attention import create_block_mask

    def build():
        n = num_frames * tokens_per_frame
        mask_mod = kronecker_mask_mod(mask_type, tokens_per_frame)
        return create_block_mask(mask_mod, None, None, n, n, device=device)

    if torch.compiler.is_compiling():
        return build()
    return kronecker_mask_cache.get(
        ("flex", mask_type, num_frames, tokens_per_frame, device, None),
        build,
        lambda block_mask: _tensor_bytes(block_mask.as_tuple()),
    )


class KroneckerMaskAttention(CLIPAttention):
    """Multi-head self-attention over `T·L` frame-major tokens restricted by a Kronecker mask.

    Same parameters as [`~transformers.models.clip.modeling_clip.CLIPAttention`] (`q_proj`, `k_proj`,
    `v_proj`, `out_proj`), so CLIP weights and initialisation apply unchanged. The attention kernel comes
    from `config._attn_implementation` through transformers' attention interface: one of
    `KRONECKER_ATTN_IMPLEMENTATIONS` (`eager`, `sdpa`, `flex_attention`); others raise a `ValueError`.

    Args:
        config: any config with `hidden_size`, `num_attention_heads`, `attention_dropout`.
        mask_type: one of `KRONECKER_MASK_TYPES`; defaults to `config.kronecker_mask`.
    """

    def __init__(self, config, mask_type: KroneckerMaskType | None = None):
        super().__init__(config)
        self.mask_type = mask_type or config.kronecker_mask
        _check(self.mask_type, 1, 1)

    def forward(
        self,
        hidden_states: torch.Tensor,
        num_frames: int,
        attention_mask: None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        Args:
            hidden_states: `(batch, T·L, hidden_size)`, frame-major.
            num_frames: `T`; `L` is inferred as `seq_len // T`.

        Returns:
            `(attn_output (batch, T·L, hidden_size), attn_weights (batch, heads, T·L, T·L) or None)`;
            weights are returned by the `eager` implementation only.
        """
        if attention_mask is not None:
            raise ValueError(
                "KroneckerMaskAttention builds its own mask; pass `num_frames`, not `attention_mask`."
            )
        batch_size, seq_len, _ = hidden_states.shape
        if num_frames < 1 or seq_len % num_frames != 0:
            raise ValueError(
                f"hidden_states has {seq_len} tokens, which is not num_frames={num_frames} frames of equal length."
            )
        tokens_per_frame = seq_len // num_frames
        shape = (batch_size, seq_len, -1, self.head_dim)
        queries = self.q_proj(hidden_states).view(shape).transpose(1, 2)
        keys = self.k_proj(hidden_states).view(shape).transpose(1, 2)
        values = self.v_proj(hidden_states).view(shape).transpose(1, 2)

        implementation = attn_implementation(self.config) or "eager"
        check_kronecker_attn_implementation(implementation, type(self).__name__)
        attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        dropout = self.dropout if self.training else 0.0
        kwargs.pop("is_causal", None)

        if implementation == "flex_attention":
            block_mask = _flex_block_mask(self.mask_type, num_frames, tokens_per_frame, queries.device)
            attn_output, attn_weights = attention_interface(
                self, queries, keys, values, block_mask, scaling=self.scale, dropout=dropout, **kwargs
            )
        else:
            attn_output, attn_weights = self._chunked_attention(
                attention_interface, queries, keys, values, num_frames, tokens_per_frame, dropout, **kwargs
            )

        attn_output = attn_output.reshape(batch_size, seq_len, -1).contiguous()
        return self.out_proj(attn_output), attn_weights

    def _chunked_attention(
        self,
        attention_interface: Callable,
        queries: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        num_frames: int,
        tokens_per_frame: int,
        dropout: float,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the attention interface once per chunk; `(B, H, T·L, d)` inputs -> `(B, T·L, H, d)` output."""
        build = _traced_chunks if torch.compiler.is_compiling() else kronecker_attention_chunks
        chunks = build(self.mask_type, num_frames, tokens_per_frame, queries.device, queries.dtype)
        outputs, weights = [], []
        for chunk in chunks:
            mask = None if chunk.allowed is None else chunk.allowed[None, None]
            out, w = attention_interface(
                self,
                queries[:, :, chunk.queries],
                keys[:, :, chunk.keys],
                values[:, :, chunk.keys],
                mask,
                scaling=self.scale,
                dropout=dropout,
                **kwargs,
            )
            outputs.append(out)
            weights.append(w)
        attn_output = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)
        if weights[0] is None:
            return attn_output, None
        if len(chunks) == 1:
            return attn_output, weights[0]
        # Blocked keys outside a chunk's key range have probability exactly zero.
        seq_len = num_frames * tokens_per_frame
        full = weights[0].new_zeros(*weights[0].shape[:2], seq_len, seq_len)
        for chunk, w in zip(chunks, weights, strict=True):
            full[:, :, chunk.queries, chunk.keys] = w
        return attn_output, full


class KroneckerEncoderLayer(CLIPEncoderLayer):
    """A pre-LN transformer block (CLIP's) whose self-attention is [`KroneckerMaskAttention`].

    `x = x + Attn(LN1(x), mask=M)`, `x = x + MLP(LN2(x))`; inputs and outputs are `(batch, T·L, hidden_size)`.
    Supports gradient checkpointing like every `GradientCheckpointingLayer`.
    """

    def __init__(self, config, mask_type: KroneckerMaskType | None = None):
        super().__init__(config)
        self.self_attn = KroneckerMaskAttention(config, mask_type)

    def forward(self, hidden_states: torch.Tensor, num_frames: int, **kwargs) -> torch.Tensor:
        return super().forward(hidden_states, attention_mask=None, num_frames=num_frames, **kwargs)


__all__ = [
    "KRONECKER_ATTN_IMPLEMENTATIONS",
    "KRONECKER_MASK_TYPES",
    "AttentionChunk",
    "KroneckerMaskCache",
    "KroneckerEncoderLayer",
    "KroneckerMaskAttention",
    "check_kronecker_attn_implementation",
    "kronecker_allowed_mask",
    "kronecker_attention_chunks",
    "kronecker_mask_cache",
    "kronecker_mask_mod",
]
