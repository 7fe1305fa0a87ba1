"""Test-only re-implementation of the reference CLAVER forward pass, written against its state dict.

It follows OpenAI CLIP's code (`clip/model.py`) and docs/video-encoder.md and docs/kronecker-masks.md with plain torch ops on the reference key
names, sharing nothing with `claver_hf`: sequence-first transformer blocks through
`F.multi_head_attention_forward` (what `nn.MultiheadAttention` runs, with the stacked `in_proj` weights),
QuickGELU MLPs, additive `-inf` masks built from Kronecker products.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

StateDict = dict[str, torch.Tensor]


def random_reference_state_dict(
    *,
    vision_width: int = 32,
    vision_layers: int = 3,
    kmt_layers: int = 1,
    patch_size: int = 16,
    image_size: int = 32,
    num_frames: int = 4,
    text_width: int = 32,
    text_layers: int = 2,
    context_length: int = 16,
    vocab_size: int = 64,
    projection_dim: int = 16,
    seed: int = 0,
) -> StateDict:
    """A reference-format state dict with random weights (temporal parts included when `kmt_layers` or
    `num_frames` are non-zero; `num_frames=0, kmt_layers=0` gives an OpenAI CLIP state dict)."""
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int, std: float = 0.1, mean: float = 0.0) -> torch.Tensor:
        return mean + std * torch.randn(*shape, generator=generator)

    def block(prefix: str, width: int, name: str = "") -> StateDict:
        return {
            f"{prefix}.{name}attn.in_proj_weight": randn(3 * width, width, std=width**-0.5),
            f"{prefix}.{name}attn.in_proj_bias": randn(3 * width),
            f"{prefix}.{name}attn.out_proj.weight": randn(width, width, std=width**-0.5),
            f"{prefix}.{name}attn.out_proj.bias": randn(width),
            f"{prefix}.{name}ln_1.weight": randn(width, mean=1.0),
            f"{prefix}.{name}ln_1.bias": randn(width),
            f"{prefix}.{name}mlp.c_fc.weight": randn(4 * width, width, std=width**-0.5),
            f"{prefix}.{name}mlp.c_fc.bias": randn(4 * width),
            f"{prefix}.{name}mlp.c_proj.weight": randn(width, 4 * width, std=(4 * width) ** -0.5),
            f"{prefix}.{name}mlp.c_proj.bias": randn(width),
            f"{prefix}.{name}ln_2.weight": randn(width, mean=1.0),
            f"{prefix}.{name}ln_2.bias": randn(width),
        }

    def layer_norm(prefix: str, width: int) -> StateDict:
        return {f"{prefix}.weight": randn(width, mean=1.0), f"{prefix}.bias": randn(width)}

    tokens_per_frame = (image_size // patch_size) ** 2 + 1
    sd: StateDict = {
        "visual.conv1.weight": randn(vision_width, 3, patch_size, patch_size, std=0.05),
        "visual.class_embedding": randn(vision_width),
        "visual.positional_embedding": randn(tokens_per_frame, vision_width),
        **layer_norm("visual.ln_pre", vision_width),
        **layer_norm("visual.ln_post", vision_width),
        "visual.proj": randn(vision_width, projection_dim, std=vision_width**-0.5),
        "token_embedding.weight": randn(vocab_size, text_width),
        "positional_embedding": randn(context_length, text_width),
        **layer_norm("ln_final", text_width),
        "text_projection": randn(text_width, projection_dim, std=text_width**-0.5),
        "logit_scale": torch.tensor(4.6052),
    }
    for i in range(vision_layers):
        sd.update(block(f"visual.transformer.resblocks.{i}", vision_width))
    for i in range(text_layers):
        sd.update(block(f"transformer.resblocks.{i}", text_width))
    if num_frames:
        sd["visual.temporal_embedding"] = randn(1, num_frames, vision_width)
    for j in range(kmt_layers):
        sd.update(block(f"visual.transformer_t.resblocks.{j}", vision_width, name="temporal_"))
    return sd


def _layer_norm(x: torch.Tensor, sd: StateDict, prefix: str) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], eps=1e-5)


def _residual_block(
    x: torch.Tensor, sd: StateDict, prefix: str, heads: int, attn_mask: torch.Tensor | None
) -> torch.Tensor:
    """OpenAI's `ResidualAttentionBlock` on `x` `(tokens, batch, width)`; `prefix` ends with `.` or `.temporal_`."""
    width = x.shape[-1]
    h = _layer_norm(x, sd, f"{prefix}ln_1")
    attn = F.multi_head_attention_forward(
        h,
        h,
        h,
        width,
        heads,
        sd[f"{prefix}attn.in_proj_weight"],
        sd[f"{prefix}attn.in_proj_bias"],
        None,
        None,
        False,
        0.0,
        sd[f"{prefix}attn.out_proj.weight"],
        sd[f"{prefix}attn.out_proj.bias"],
        training=False,
        need_weights=False,
        attn_mask=attn_mask,
    )[0]
    x = x + attn
    h = F.linear(
        _layer_norm(x, sd, f"{prefix}ln_2"), sd[f"{prefix}mlp.c_fc.weight"], sd[f"{prefix}mlp.c_fc.bias"]
    )
    h = h * torch.sigmoid(1.702 * h)  # QuickGELU
    return x + F.linear(h, sd[f"{prefix}mlp.c_proj.weight"], sd[f"{prefix}mlp.c_proj.bias"])


def _num_blocks(sd: StateDict, prefix: str) -> int:
    return len({key[len(prefix) :].split(".")[0] for key in sd if key.startswith(prefix)})


def kronecker_additive_mask(mask_type: str, num_frames: int, tokens_per_frame: int) -> torch.Tensor:
    """The blocked sets of docs/kronecker-masks.md as an additive `(T·L, T·L)` mask: `-inf` where blocked, 0 elsewhere."""
    eye_t, ones_l, eye_l = (
        torch.eye(num_frames),
        torch.ones(tokens_per_frame, tokens_per_frame),
        torch.eye(tokens_per_frame),
    )
    blocked = torch.kron(eye_t, ones_l - eye_l)  # KMTA: I_T ⊗ (J_L − I_L)
    if mask_type == "kmcta":
        blocked = blocked + torch.kron(
            torch.triu(torch.ones(num_frames, num_frames), 1), ones_l
        )  # + U_T ⊗ J_L
    elif mask_type != "kmta":
        raise ValueError(f"The reference re-implementation covers kmta and kmcta, not {mask_type!r}.")
    return torch.zeros(blocked.shape).masked_fill(blocked.bool(), float("-inf"))


def encode_video(
    sd: StateDict, video: torch.Tensor, heads: int, mask_type: str = "kmta"
) -> tuple[torch.Tensor, torch.Tensor]:
    """`video` `(B, T, 3, H, W)` -> (video embeddings `(B, E)`, normalised frame embeddings `(B, T, E)`)."""
    batch, frames = video.shape[:2]
    patch = sd["visual.conv1.weight"].shape[-1]
    x = F.conv2d(video.flatten(0, 1), sd["visual.conv1.weight"], stride=patch)  # (B·T, D, g, g)
    x = x.flatten(2).transpose(1, 2)  # (B·T, g², D)
    width = x.shape[-1]
    cls = sd["visual.class_embedding"] + torch.zeros(x.shape[0], 1, width)
    x = torch.cat([cls, x], dim=1) + sd["visual.positional_embedding"]
    x = _layer_norm(x, sd, "visual.ln_pre").permute(1, 0, 2)  # (L, B·T, D)
    for i in range(_num_blocks(sd, "visual.transformer.resblocks.")):
        x = _residual_block(x, sd, f"visual.transformer.resblocks.{i}.", heads, None)
    x = x.permute(1, 0, 2)
    tokens = x.shape[1]
    x = x.reshape(batch, frames, tokens, width) + sd["visual.temporal_embedding"][:, :, None]
    x = x.reshape(batch, frames * tokens, width).permute(1, 0, 2)  # (T·L, B, D), frame-major
    mask = kronecker_additive_mask(mask_type, frames, tokens)
    for j in range(_num_blocks(sd, "visual.transformer_t.resblocks.")):
        x = _residual_block(x, sd, f"visual.transformer_t.resblocks.{j}.temporal_", heads, mask)
    cls_tokens = x.permute(1, 0, 2).reshape(batch, frames, tokens, width)[:, :, 0]
    frame_embeds = _layer_norm(cls_tokens, sd, "visual.ln_post") @ sd["visual.proj"]
    frame_embeds = frame_embeds / frame_embeds.norm(dim=-1, keepdim=True)
    return frame_embeds.mean(dim=1), frame_embeds


def encode_text(sd: StateDict, input_ids: torch.Tensor, heads: int) -> torch.Tensor:
    """`input_ids` `(K, S)` (end token = highest id) -> projected, unnormalised text embeddings `(K, E)`."""
    length = input_ids.shape[1]
    x = sd["token_embedding.weight"][input_ids] + sd["positional_embedding"][:length]
    causal = torch.full((length, length), float("-inf")).triu(1)
    x = x.permute(1, 0, 2)
    for i in range(_num_blocks(sd, "transformer.resblocks.")):
        x = _residual_block(x, sd, f"transformer.resblocks.{i}.", heads, causal)
    x = _layer_norm(x.permute(1, 0, 2), sd, "ln_final")
    return x[torch.arange(x.shape[0]), input_ids.argmax(dim=-1)] @ sd["text_projection"]
