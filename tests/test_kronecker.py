import pytest
import torch
from transformers import CLIPVisionConfig

from claver_hf.configuration.configuration_claver import KRONECKER_MASK_TYPES as CONFIG_MASK_TYPES
from claver_hf.modeling.kronecker import (
    KRONECKER_MASK_TYPES,
    KroneckerEncoderLayer,
    KroneckerMaskAttention,
    KroneckerMaskCache,
    kronecker_allowed_mask,
    kronecker_attention_chunks,
    kronecker_mask_cache,
    kronecker_mask_mod,
)

SHAPES = [(1, 1), (1, 5), (2, 3), (3, 4), (4, 5), (8, 2)]


def spec_blocked(mask_type: str, T: int, L: int) -> torch.Tensor:
    """The blocked sets of docs/kronecker-masks.md, written literally with Kronecker products (1 = blocked)."""
    I_T, J_T, I_L, J_L = torch.eye(T), torch.ones(T, T), torch.eye(L), torch.ones(L, L)
    U_T = torch.triu(J_T, diagonal=1)
    e0 = torch.zeros(L, L)
    e0[0, 0] = 1
    blocked = {
        "kmta": torch.kron(I_T, J_L - I_L),
        "kmcta": torch.kron(I_T, J_L - I_L) + torch.kron(U_T, J_L),
        "joint": torch.zeros(T * L, T * L),
        "spatial": torch.kron(J_T - I_T, J_L),
        "divided": torch.kron(J_T, J_L - I_L),
        # Patch rows keep their diagonal so that no row is empty (docs/kronecker-masks.md).
        "cls_temporal": torch.kron(J_T, J_L - e0) * (1 - torch.eye(T * L)),
    }[mask_type]
    return blocked.bool()


def layer_config(impl: str = "sdpa", hidden: int = 32, heads: int = 4) -> CLIPVisionConfig:
    config = CLIPVisionConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_attention_heads=heads)
    config._attn_implementation = impl
    return config


def test_mask_types_agree_with_config():
    assert KRONECKER_MASK_TYPES == CONFIG_MASK_TYPES


@pytest.mark.parametrize("mask_type", KRONECKER_MASK_TYPES)
@pytest.mark.parametrize("T,L", SHAPES)
def test_builder_equals_spec_kronecker_formula(mask_type, T, L):
    allowed = kronecker_allowed_mask(mask_type, T, L)
    assert allowed.shape == (T * L, T * L) and allowed.dtype == torch.bool
    assert torch.equal(~allowed, spec_blocked(mask_type, T, L))
    # The FlexAttention mask_mod encodes the same rule.
    idx = torch.arange(T * L)
    mod = kronecker_mask_mod(mask_type, L)(0, 0, idx[:, None], idx[None, :])
    assert torch.equal(mod, allowed)


@pytest.mark.parametrize("mask_type", KRONECKER_MASK_TYPES)
@pytest.mark.parametrize("T,L", SHAPES)
def test_chunks_cover_exactly_the_allowed_set(mask_type, T, L):
    rebuilt = torch.zeros(T * L, T * L, dtype=torch.bool)
    covered = torch.zeros(T * L, dtype=torch.long)
    for chunk in kronecker_attention_chunks(mask_type, T, L, torch.device("cpu")):
        block = torch.ones(
            chunk.queries.stop - chunk.queries.start, chunk.keys.stop - chunk.keys.start
        ).bool()
        rebuilt[chunk.queries, chunk.keys] = block if chunk.allowed is None else chunk.allowed
        covered[chunk.queries] += 1
    assert torch.equal(covered, torch.ones_like(covered))  # every query in exactly one chunk
    assert torch.equal(rebuilt, kronecker_allowed_mask(mask_type, T, L))


def test_kmcta_skips_about_half_the_keys():
    T, L = 8, 10
    chunks = kronecker_attention_chunks("kmcta", T, L, torch.device("cpu"))
    work = sum((c.queries.stop - c.queries.start) * (c.keys.stop - c.keys.start) for c in chunks)
    assert work == L * L * T * (T + 1) // 2


def test_kmta_row_counts():
    T, L = 4, 5
    allowed = kronecker_allowed_mask("kmta", T, L)
    assert torch.equal(allowed.sum(1), torch.full((T * L,), 1 + (T - 1) * L))


def test_masks_are_cached_per_shape_and_device():
    a = kronecker_attention_chunks("kmta", 3, 4, torch.device("cpu"))
    assert kronecker_attention_chunks("kmta", 3, 4, torch.device("cpu")) is a
    assert kronecker_attention_chunks("kmta", 4, 4, torch.device("cpu")) is not a


@pytest.fixture
def empty_mask_cache():
    """The shared mask cache, emptied, with its budget restored afterwards."""
    budget = kronecker_mask_cache.max_bytes
    kronecker_mask_cache.clear()
    yield kronecker_mask_cache
    kronecker_mask_cache.max_bytes = budget
    kronecker_mask_cache.clear()


def test_masks_are_cached_per_dtype_and_device(empty_mask_cache):
    cpu, meta = torch.device("cpu"), torch.device("meta")
    as_float = kronecker_attention_chunks("kmta", 3, 4, cpu, torch.float32)
    as_half = kronecker_attention_chunks("kmta", 3, 4, cpu, torch.float16)
    as_bool = kronecker_attention_chunks("kmta", 3, 4, cpu)
    on_meta = kronecker_attention_chunks("kmta", 3, 4, meta, torch.float32)
    assert as_float[0].allowed.dtype == torch.float32 and as_half[0].allowed.dtype == torch.float16
    assert as_bool[0].allowed.dtype == torch.bool
    assert as_float[0].allowed.device == cpu and on_meta[0].allowed.is_meta
    assert len(empty_mask_cache) == 4
    # A device given as a string is the same key as the torch.device.
    assert kronecker_attention_chunks("kmta", 3, 4, "cpu", torch.float32) is as_float
    assert len(empty_mask_cache) == 4


def test_mask_cache_counts_the_bytes_of_its_masks(empty_mask_cache):
    T, L = 4, 5
    kronecker_attention_chunks("kmta", T, L, torch.device("cpu"), torch.float32)
    assert empty_mask_cache.nbytes == (T * L) ** 2 * 4  # one dense float32 mask
    kronecker_attention_chunks("kmcta", T, L, torch.device("cpu"), torch.bfloat16)
    # One (L, (t + 1)·L) mask per frame: about half of a dense one.
    assert empty_mask_cache.nbytes == (T * L) ** 2 * 4 + L * L * T * (T + 1) // 2 * 2
    kronecker_attention_chunks("joint", T, L, torch.device("cpu"), torch.float32)
    kronecker_attention_chunks("kmta", T, L, torch.device("meta"), torch.float32)  # holds no memory
    assert empty_mask_cache.nbytes == (T * L) ** 2 * 4 + L * L * T * (T + 1) // 2 * 2


def test_mask_cache_evicts_least_recently_used_beyond_its_budget(empty_mask_cache):
    cpu = torch.device("cpu")
    one_mask = (3 * 4) ** 2 * 4  # kmta, 3 frames of 4 tokens, float32
    empty_mask_cache.max_bytes = 2 * one_mask
    first = kronecker_attention_chunks("kmta", 3, 4, cpu, torch.float32)
    kronecker_attention_chunks("divided", 3, 4, cpu, torch.float32)
    assert kronecker_attention_chunks("kmta", 3, 4, cpu, torch.float32) is first  # now the most recent
    kronecker_attention_chunks("cls_temporal", 3, 4, cpu, torch.float32)  # evicts `divided`
    assert empty_mask_cache.nbytes == 2 * one_mask
    assert [key[1] for key in empty_mask_cache.keys()] == ["kmta", "cls_temporal"]
    # A mask above the whole budget is kept alone, so that the layers of a forward pass share it.
    big = kronecker_attention_chunks("kmta", 6, 4, cpu, torch.float32)
    assert [key[1:3] for key in empty_mask_cache.keys()] == [("kmta", 6)]
    assert kronecker_attention_chunks("kmta", 6, 4, cpu, torch.float32) is big
    # Lowering the budget evicts at once; even at 0 bytes the mask in use is kept until the next one.
    empty_mask_cache.max_bytes = one_mask
    assert len(empty_mask_cache) == 0 and empty_mask_cache.nbytes == 0
    empty_mask_cache.max_bytes = 0
    kronecker_attention_chunks("kmta", 3, 4, cpu, torch.float32)
    kronecker_attention_chunks("kmcta", 3, 4, cpu, torch.float32)
    assert [key[1:3] for key in empty_mask_cache.keys()] == [("kmcta", 3)]


def test_flex_block_masks_share_the_bounded_cache(empty_mask_cache):
    pytest.importorskip("torch.nn.attention.flex_attention")
    from claver_hf.modeling.kronecker import _flex_block_mask

    block_mask = _flex_block_mask("kmta", 3, 5, torch.device("cpu"))
    assert _flex_block_mask("kmta", 3, 5, torch.device("cpu")) is block_mask
    assert empty_mask_cache.keys() == [("flex", "kmta", 3, 5, torch.device("cpu"), None)]
    assert 0 < empty_mask_cache.nbytes < 1024  # block indices, not a dense mask


def test_mask_cache_rejects_a_negative_budget():
    with pytest.raises(ValueError, match="bytes >= 0"):
        KroneckerMaskCache(max_bytes=-1)


def test_layer_masks_go_through_the_bounded_cache(empty_mask_cache):
    layer = KroneckerEncoderLayer(layer_config("sdpa"), "kmta").eval()
    x = torch.randn(1, 3 * 5, 32)
    expected = layer(x, num_frames=3)
    layer.double()
    torch.testing.assert_close(layer(x.double(), num_frames=3).float(), expected, atol=1e-5, rtol=0)
    assert empty_mask_cache.keys() == [
        ("chunks", "kmta", 3, 5, torch.device("cpu"), torch.float32),
        ("chunks", "kmta", 3, 5, torch.device("cpu"), torch.float64),
    ]


def test_unknown_mask_type_is_rejected():
    with pytest.raises(ValueError, match="Unknown Kronecker mask type 'bogus'"):
        kronecker_allowed_mask("bogus", 2, 2)
    with pytest.raises(ValueError, match="Unknown Kronecker mask type"):
        KroneckerMaskAttention(layer_config(), mask_type="bogus")


def test_sequence_not_divisible_by_frames_is_rejected():
    attn = KroneckerMaskAttention(layer_config(), mask_type="kmta")
    with pytest.raises(ValueError, match="not num_frames=3 frames"):
        attn(torch.randn(1, 10, 32), num_frames=3)


@pytest.mark.parametrize("mask_type", KRONECKER_MASK_TYPES)
def test_eager_equals_sdpa(mask_type):
    layer = KroneckerEncoderLayer(layer_config("sdpa"), mask_type).eval()
    x = torch.randn(2, 4 * 5, 32)
    out_sdpa = layer(x, num_frames=4)
    layer.self_attn.config._attn_implementation = "eager"
    out_eager = layer(x, num_frames=4)
    torch.testing.assert_close(out_eager, out_sdpa, atol=1e-5, rtol=0)


@pytest.mark.parametrize("mask_type", KRONECKER_MASK_TYPES)
def test_eager_weights_respect_the_mask(mask_type):
    T, L = 3, 5
    attn = KroneckerMaskAttention(layer_config("eager"), mask_type).eval()
    _, weights = attn(torch.randn(2, T * L, 32), num_frames=T)
    assert weights.shape == (2, 4, T * L, T * L)
    blocked = ~kronecker_allowed_mask(mask_type, T, L)
    assert torch.all(weights[..., blocked] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, T * L))


def test_eager_matches_dense_masked_softmax():
    """The layer computes softmax(QKᵀ/√d + mask)V with the dense mask, written out by hand."""
    T, L, D, H = 3, 4, 32, 4
    attn = KroneckerMaskAttention(layer_config("sdpa"), "kmcta").eval()
    x = torch.randn(1, T * L, D)
    q = attn.q_proj(x).view(1, T * L, H, -1).transpose(1, 2)
    k = attn.k_proj(x).view(1, T * L, H, -1).transpose(1, 2)
    v = attn.v_proj(x).view(1, T * L, H, -1).transpose(1, 2)
    scores = (q @ k.transpose(-1, -2)) * attn.scale
    scores = scores.masked_fill(~kronecker_allowed_mask("kmcta", T, L), float("-inf"))
    expected = attn.out_proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(1, T * L, D))
    torch.testing.assert_close(attn(x, num_frames=T)[0], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_kmcta_is_causal_over_frames(impl):
    T, L = 5, 3
    layer = KroneckerEncoderLayer(layer_config(impl), "kmcta").eval()
    x = torch.randn(1, T * L, 32)
    base = layer(x, num_frames=T)
    for t in range(T - 1):
        changed = x.clone()
        changed[:, (t + 1) * L :] = torch.randn_like(changed[:, (t + 1) * L :])
        out = layer(changed, num_frames=T)
        torch.testing.assert_close(out[:, : (t + 1) * L], base[:, : (t + 1) * L], atol=1e-6, rtol=0)
        assert not torch.allclose(out[:, (t + 1) * L :], base[:, (t + 1) * L :])
    # Frame 0 attends only to itself: every frame-0 token ignores the rest of frame 0 too.
    changed = x.clone()
    changed[:, 1:L] += 1.0
    torch.testing.assert_close(layer(changed, num_frames=T)[:, 0], base[:, 0], atol=1e-6, rtol=0)


def test_kmta_is_equivariant_to_frame_permutation():
    T, L = 4, 3
    layer = KroneckerEncoderLayer(layer_config(), "kmta").eval()
    x = torch.randn(2, T, L, 32)
    perm = torch.tensor([2, 0, 3, 1])
    out = layer(x.flatten(1, 2), num_frames=T).view(2, T, L, 32)
    out_perm = layer(x[:, perm].flatten(1, 2), num_frames=T).view(2, T, L, 32)
    torch.testing.assert_close(out_perm, out[:, perm], atol=1e-5, rtol=0)
    # ...and so is its mean over frames, while KMCTA sees the order.
    causal = KroneckerEncoderLayer(layer_config(), "kmcta").eval()
    a = causal(x.flatten(1, 2), num_frames=T).view(2, T, L, 32).mean(1)
    b = causal(x[:, perm].flatten(1, 2), num_frames=T).view(2, T, L, 32).mean(1)
    assert not torch.allclose(a, b, atol=1e-4)


def test_layer_accepts_any_frame_count_and_resolution():
    layer = KroneckerEncoderLayer(layer_config(), "kmta").eval()
    for T, L in [(1, 7), (2, 7), (6, 50)]:
        assert layer(torch.randn(1, T * L, 32), num_frames=T).shape == (1, T * L, 32)


def test_gradients_flow_through_chunked_attention():
    layer = KroneckerEncoderLayer(layer_config(), "kmcta")
    x = torch.randn(2, 4 * 3, 32, requires_grad=True)
    layer(x, num_frames=4).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in layer.parameters())


def test_documented_standalone_example():
    import doctest

    import claver_hf.modeling.kronecker as module

    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("mask_type", ["kmta", "kmcta"])
def test_flex_attention_equals_sdpa(mask_type):
    """FlexAttention (compiled by transformers' integration; about 15 s on CPU the first time)."""
    pytest.importorskip("torch.nn.attention.flex_attention")
    config = layer_config("sdpa")
    layer = KroneckerEncoderLayer(config, mask_type).eval()
    x = torch.randn(2, 4 * 5, 32)
    with torch.no_grad():
        expected = layer(x, num_frames=4)
        config._attn_implementation = "flex_attention"
        out = layer(x, num_frames=4)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
